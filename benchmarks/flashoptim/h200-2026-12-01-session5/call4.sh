#!/bin/bash
# session 5, call 4: the whole GPU test suite on the final commit (the launch-plan tests included)
O=$OUT; R=$PWD
rm -rf /tmp/k && mkdir -p /tmp/k && tar -xzf .device/s5/k.tgz -C /tmp/k && ln -s $R/.whl /tmp/k/.whl
cd /tmp/k && source scripts/gpu_env.sh || exit 1
cat COMMIT > $O/commit.txt
timeout 200 python3 -m pytest tests/flashoptim -m gpu -q -n 12 -p no:cacheprovider -rfE > $O/test-gpu.log 2>&1; echo "tests rc=$?"; tail -15 $O/test-gpu.log

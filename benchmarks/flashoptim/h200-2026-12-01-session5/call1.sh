#!/bin/bash
# session 5, call 1: unpack the kernel branch, quick check, GPU tests, step bench, e2e 7B flash arms
O=$OUT; R=$PWD
rm -rf /tmp/k && mkdir -p /tmp/k && tar -xzf .device/s5/k.tgz -C /tmp/k && ln -s $R/.whl /tmp/k/.whl
cd /tmp/k && source scripts/gpu_env.sh || exit 1
export PYTHONUNBUFFERED=1
cat COMMIT > $O/commit.txt
T0=$(date +%s); t() { echo "== $1 at $(( $(date +%s) - T0 )) s"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader | tee $O/smi.txt
t quick
timeout 60 python3 flashoptim/bench_worker.py flash_adamw24 /tmp/q.json 20 > $O/quick.txt 2>&1; tail -c 600 $O/quick.txt; echo
t tests
timeout 210 python3 -m pytest tests/flashoptim -m gpu -q -n 12 -p no:cacheprovider > $O/test-gpu.log 2>&1; echo "tests rc=$?"; tail -3 $O/test-gpu.log
t bench
timeout 150 python3 -m flashoptim.bench --arms flash_adamw24,flash_adamw32,flash_adamw_none,published_adamw24,torch_adamw_fused_fp32 --steps 50 --out $O/bench.json > $O/bench.txt 2>&1; tail -8 $O/bench.txt
t e2e7
timeout 190 python3 -m flashoptim.bench e2e --models llama7b --arms ours24,ours24_gr,published24,published24_gr --steps 8 --out $O/e2e_7b.json > $O/e2e_7b.txt 2>&1; tail -6 $O/e2e_7b.txt
t done

#!/bin/bash
# session 5, call 2: the published e2e import (diagnosis + fixed env), e2e 7B (all arms) and 13B (flash arms), small tensors, step bench again
O=$OUT; R=$PWD
rm -rf /tmp/k && mkdir -p /tmp/k && tar -xzf .device/s5/k.tgz -C /tmp/k && ln -s $R/.whl /tmp/k/.whl
cd /tmp/k && source scripts/gpu_env.sh || exit 1
export PYTHONUNBUFFERED=1
cat COMMIT > $O/commit.txt
T0=$(date +%s); t() { echo "== $1 at $(( $(date +%s) - T0 )) s"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader | tee $O/smi.txt
t diag
mkdir -p /tmp/pubd && cd /tmp/pubd && python3 -c "import zipfile; zipfile.ZipFile('/tmp/k/.whl/published/flashoptim-0.1.4-py3-none-any.whl').extractall('/tmp/pubd/root')"
( echo "image PYTHONPATH before gpu_env: see env"; env | grep -i pythonpath
  PYTHONPATH=/tmp/pubd/root:/tmp/site timeout 60 python3 -c "
import sys, traceback; sys.path.insert(0, '/tmp/k/flashoptim'); print(sys.path)
try:
    from transformers import LlamaConfig; print('old-style env: ok')
except Exception:
    traceback.print_exc()" ) > $O/diag.txt 2>&1
cd /tmp/k; tail -c 1500 $O/diag.txt; echo
t e2e7
timeout 200 python3 -m flashoptim.bench e2e --models llama7b --arms ours24,ours24_gr,published24,published24_gr --steps 8 --out $O/e2e_7b.json > $O/e2e_7b.txt 2>&1; tail -6 $O/e2e_7b.txt
t e2e13
timeout 250 python3 -m flashoptim.bench e2e --models llama13b --arms ours24,ours24_gr,published24,published24_gr --steps 8 --out $O/e2e_13b.json > $O/e2e_13b.txt 2>&1; tail -6 $O/e2e_13b.txt
t e2e7b
timeout 90 python3 -m flashoptim.bench e2e --models llama7b --arms torch_adamw_fused,bnb_adamw8bit --steps 8 --out $O/e2e_7b_base.json > $O/e2e_7b_base.txt 2>&1; tail -4 $O/e2e_7b_base.txt
t done

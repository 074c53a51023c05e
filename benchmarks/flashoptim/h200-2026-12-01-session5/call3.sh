#!/bin/bash
# session 5, call 3: e2e 7B and 13B with the published arms, step bench (second run), small tensors
O=$OUT; R=$PWD
rm -rf /tmp/k && mkdir -p /tmp/k && tar -xzf .device/s5/k.tgz -C /tmp/k && ln -s $R/.whl /tmp/k/.whl
cd /tmp/k && source scripts/gpu_env.sh || exit 1
export PYTHONUNBUFFERED=1
cat COMMIT > $O/commit.txt
T0=$(date +%s); t() { echo "== $1 at $(( $(date +%s) - T0 )) s"; }
t e2e7
timeout 200 python3 -m flashoptim.bench e2e --models llama7b --arms ours24,ours24_gr,published24,published24_gr --steps 8 --out $O/e2e_7b.json > $O/e2e_7b.txt 2>&1; tail -6 $O/e2e_7b.txt
t e2e13
timeout 240 python3 -m flashoptim.bench e2e --models llama13b --arms ours24,ours24_gr,published24,published24_gr --steps 8 --out $O/e2e_13b.json > $O/e2e_13b.txt 2>&1; tail -6 $O/e2e_13b.txt
t bench
timeout 90 python3 -m flashoptim.bench --arms flash_adamw24,flash_adamw32,flash_adamw_none,published_adamw24,torch_adamw_fused_fp32 --steps 50 --out $O/bench.json > $O/bench.txt 2>&1; tail -7 $O/bench.txt
t small
timeout 50 python3 -m flashoptim.bench --workload small_tensors --arms flash_adamw24,published_adamw24,torch_adamw_fused_fp32 --steps 10 --out $O/bench_small.json > $O/bench_small.txt 2>&1; tail -4 $O/bench_small.txt
t done

#!/bin/bash
# session 6, call B (issue 15), from a `git archive` of commit $C with .whl carried:
# the reserved-memory tests; e2e 7B every arm and 13B flash arms with the first step's cache release.
O=$OUT
source scripts/gpu_env.sh > $O/B_out.txt 2>&1 || { cat $O/B_out.txt; exit 1; }
exec > >(tee -a $O/B_out.txt) 2>&1
T0=$(date +%s); t() { echo "== $1 at $(( $(date +%s) - T0 )) s"; }
{ echo "commit $C"; date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; } > $O/B_meta.txt 2>&1; cat $O/B_meta.txt
E2E="python3 -m flashoptim.bench e2e --steps 8"
t test
timeout 60 python3 -m pytest tests/flashoptim/test_gpu_cast_memory.py -m gpu -q -p no:cacheprovider -rfE > $O/B_test.log 2>&1; echo "test rc=$?"; tail -5 $O/B_test.log
t e2e7
timeout 190 $E2E --models llama7b --arms ours24,ours24_gr,published24,published24_gr,torch_adamw_fused,bnb_adamw8bit --out $O/B_e2e_7b.json 2>&1 | grep -v '^E2E'
t e2e13
timeout 150 $E2E --models llama13b --arms ours24,ours24_gr,published24,published24_gr --out $O/B_e2e_13b.json 2>&1 | grep -v '^E2E'
t done

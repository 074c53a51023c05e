#!/bin/bash
# session 6, call A (issue 15), run from a `git archive` of the commit in $C with .whl carried:
# the cast_model memory test; e2e 7B every arm, 7B gradient-release arms with the build cache kept
# (the old condition), 13B, 1B; Nsight Compute key figures of the step kernel.
O=$OUT; D=benchmarks/flashoptim/h200-2026-12-02
source scripts/gpu_env.sh > $O/A_out.txt 2>&1 || { cat $O/A_out.txt; exit 1; }
exec > >(tee -a $O/A_out.txt) 2>&1
command -v ncu >/dev/null || export PATH=$PATH:$(ls -d /opt/nvidia/nsight-compute/*/ | head -1)
T0=$(date +%s); t() { echo "== $1 at $(( $(date +%s) - T0 )) s"; }
{ echo "commit $C"; date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader; python3 -c 'import torch,triton,transformers;print(torch.__version__,triton.__version__,transformers.__version__)'; } > $O/A_meta.txt 2>&1; cat $O/A_meta.txt
E2E="python3 -m flashoptim.bench e2e --steps 8"
ALL=ours24,ours24_gr,published24,published24_gr,torch_adamw_fused,bnb_adamw8bit
t test
timeout 90 python3 -m pytest tests/flashoptim/test_gpu_cast_memory.py -m gpu -q -p no:cacheprovider -rfE > $O/A_test.log 2>&1; echo "test rc=$?"; tail -5 $O/A_test.log
t e2e7
timeout 200 $E2E --models llama7b --arms $ALL --out $O/A_e2e_7b.json 2>&1 | grep -v '^E2E'
t e2e7keep
timeout 70 $E2E --models llama7b --arms ours24_gr,published24_gr --build-cache keep --out $O/A_e2e_7b_keep.json 2>&1 | grep -v '^E2E'
t e2e13
timeout 200 $E2E --models llama13b --arms ours24,ours24_gr,published24,published24_gr,bnb_adamw8bit,torch_adamw_fused --out $O/A_e2e_13b.json 2>&1 | grep -v '^E2E'
t e2e1
timeout 100 $E2E --models llama1b --arms $ALL --out $O/A_e2e_1b.json 2>&1 | grep -v '^E2E'
t ncu
timeout 90 ncu --clock-control none --kernel-name flash_step_kernel --launch-skip 8 --launch-count 1 --set full -f -o /tmp/ncu_cur \
  python3 flashoptim/bench_worker.py flash_adamw24 /tmp/p.json 2 profile > /tmp/ncu.log 2>&1; echo "ncu rc=$?"; tail -3 /tmp/ncu.log
ncu -i /tmp/ncu_cur.ncu-rep --page details --csv > /tmp/ncu_cur_details.csv 2>/dev/null
cp /tmp/ncu.log /tmp/ncu_run.log; tar czf $O/A_ncu.tgz -C /tmp ncu_cur_details.csv ncu_run.log
python3 $D/ncu_keys.py /tmp/ncu_cur_details.csv
t done

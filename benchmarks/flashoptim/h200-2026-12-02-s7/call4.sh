#!/bin/bash
# session 7, call 4: the merged main on the H200 — every GPU test (make test-gpu's selection), then the
# step bench (ours at 24/32 bits and without correction, the published package, torch fused AdamW) on the final code.
O=/tmp/w; mkdir -p $O; trap 'tar czf $OUT/call4.tgz -C /tmp w; cp $O/call4.log $OUT/' EXIT
source scripts/gpu_env.sh > $O/env.txt 2>&1 || { cat $O/env.txt; exit 1; }
exec > >(tee -a $O/call4.log) 2>&1
T0=$(date +%s); t() { echo "== $1 at $(( $(date +%s) - T0 )) s"; }
{ git log --oneline -1 2>/dev/null || cat common/code_version.txt; git status --short | head; date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } > $O/meta.txt 2>&1; cat $O/meta.txt
t gpu-tests
timeout 330 python3 -m pytest -q -m gpu tests/flashoptim tests/experiments -n 8 -p no:cacheprovider --continue-on-collection-errors 2>&1 | tail -15
t step-bench
timeout $(( 570 - $(date +%s) + T0 )) python3 -m flashoptim.bench --arms flash_adamw24,flash_adamw32,flash_adamw_none,published_adamw24,torch_adamw_fused_fp32 --steps 50 --out $O/step_bench.json 2>&1 | tail -12
t done

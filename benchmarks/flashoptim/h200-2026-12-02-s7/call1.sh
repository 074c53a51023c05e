#!/bin/bash
# session 7, call 1 (issue 15): gradient release vs plain at 7B, twice on one machine (orders swapped),
# then the harness table at 7B with every arm (AdamW included) on the 141 GB card.
# Carried: .whl (bitsandbytes, hydra, omegaconf, the published wheel) and results/datasets/fb69aebdb397 (v6 smoke).
O=$OUT
source scripts/gpu_env.sh > $O/env.txt 2>&1 || { cat $O/env.txt; exit 1; }
exec > >(tee -a $O/call1.log) 2>&1
T0=$(date +%s); t() { echo "== $1 at $(( $(date +%s) - T0 )) s"; }
{ git log --oneline -1 2>/dev/null || cat common/code_version.txt; date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; ls results/datasets; } > $O/meta.txt 2>&1; cat $O/meta.txt
t e2e_a
timeout 150 python3 -m flashoptim.bench e2e --steps 10 --models llama7b --arms ours24,ours24_gr --out $O/e2e_7b_a.json 2>&1 | tail -6
t e2e_b
timeout 150 python3 -m flashoptim.bench e2e --steps 10 --models llama7b --arms ours24_gr,ours24 --out $O/e2e_7b_b.json 2>&1 | tail -6
t harness7
timeout $(( 585 - $(date +%s) + T0 )) python3 -m scripts.gpu_table --model llama2-7b --arms adamw,adam8bit,flashoptim,flashoptim_gr --steps 6 --timing-warmup 2 --data smoke --out $O baselines.learned=[] 2>&1 | tail -12
t done

#!/bin/bash
# session 6, call H (issue 15), from a `git archive` of commit $C with .whl and the pilot dataset carried:
# the harness table (python3 -m scripts.gpu_table) at 7B, every arm (AdamW included), then 13B while time lasts.
O=$OUT
source scripts/gpu_env.sh > $O/H_out.txt 2>&1 || { cat $O/H_out.txt; exit 1; }
exec > >(tee -a $O/H_out.txt) 2>&1
T0=$(date +%s); t() { echo "== $1 at $(( $(date +%s) - T0 )) s"; }
{ echo "commit $C"; date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; ls results/datasets; } > $O/H_meta.txt 2>&1; cat $O/H_meta.txt
t harness7
timeout ${H7_S:-330} python3 -m scripts.gpu_table --model llama2-7b --steps 6 --timing-warmup 2 --data pilot --out $O baselines.learned=[] baselines.cache_dir=results/baselines-harness 2>&1 | tail -12
t harness13
timeout $(( ${H_TOTAL_S:-560} - $(date +%s) + T0 )) python3 -m scripts.gpu_table --model llama2-13b --arms ${H13_ARMS:-flashoptim,flashoptim_gr,adam8bit,adamw} --steps 6 --timing-warmup 2 --data pilot --out $O baselines.learned=[] baselines.cache_dir=results/baselines-harness 2>&1 | tail -12
t done

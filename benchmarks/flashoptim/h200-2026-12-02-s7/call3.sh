#!/bin/bash
# session 7, call 3 (issue 15): the harness at 7B with reentrant activation checkpointing (new default):
# flashoptim vs flashoptim_gr, three seeds, 12 steps each; one seed with the old non-reentrant kind as
# the same-machine contrast; then the 13B harness table (every arm; AdamW is expected to end as oom).
O=/tmp/w; mkdir -p $O; trap 'tar czf $OUT/call3.tgz -C /tmp w; cp $O/call3.log $OUT/' EXIT
source scripts/gpu_env.sh > $O/env.txt 2>&1 || { cat $O/env.txt; exit 1; }
exec > >(tee -a $O/call3.log) 2>&1
T0=$(date +%s); t() { echo "== $1 at $(( $(date +%s) - T0 )) s"; }
{ git log --oneline -1 2>/dev/null || cat common/code_version.txt; git status --short; date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } > $O/meta.txt 2>&1; cat $O/meta.txt
G="--model llama2-7b --arms flashoptim,flashoptim_gr --steps 12 --timing-warmup 2 --data smoke"
for s in 0 1 2; do
  t "7b seed $s"; mkdir -p $O/r7b-s$s
  timeout 120 python3 -m scripts.gpu_table $G --seed $s --sweep-id gr-r --out $O/r7b-s$s baselines.learned=[] 2>&1 | grep "^| flash"
done
t "7b non-reentrant seed 0"; mkdir -p $O/n7b-s0
timeout 120 python3 -m scripts.gpu_table $G --seed 0 --sweep-id gr-n --out $O/n7b-s0 baselines.learned=[] model.checkpoint_reentrant=false 2>&1 | grep "^| flash"
for sw in gr-r gr-n; do for d in results/sweeps/$sw/runs/*/; do cp $d/metrics.jsonl $O/$sw-$(basename $d)-metrics.jsonl; cp $d/summary.json $O/$sw-$(basename $d)-summary.json; done; done
t harness13
timeout $(( 580 - $(date +%s) + T0 )) python3 -m scripts.gpu_table --model llama2-13b --arms flashoptim,flashoptim_gr,adam8bit,adamw --steps 6 --timing-warmup 2 --data smoke --out $O baselines.learned=[] 2>&1 | tail -10
t done

#!/bin/bash
# session 7, call 2 (issue 15): why the harness's flashoptim_gr arm is slower than flashoptim at 7B
# (call 1: 0.317 vs 0.273 s) when the e2e bench shows parity. (1) one-process probe over autocast x
# reentrant checkpointing x release; (2) the harness arms, 12 steps, with their per-step metrics, as
# configured and with optimizer.autocast_dtype=null.
O=$OUT
source scripts/gpu_env.sh > $O/env.txt 2>&1 || { cat $O/env.txt; exit 1; }
exec > >(tee -a $O/call2.log) 2>&1
T0=$(date +%s); t() { echo "== $1 at $(( $(date +%s) - T0 )) s"; }
{ git log --oneline -1 2>/dev/null || cat common/code_version.txt; date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; } > $O/meta.txt 2>&1; cat $O/meta.txt
t probe
timeout 200 python3 scripts/probes/gr_probe.py $O/gr_probe.json --steps 10
for v in default noautocast; do
  t harness_$v
  mkdir -p $O/$v; X=(); [ $v = noautocast ] && X=(optimizer.autocast_dtype=null)
  timeout 150 python3 -m scripts.gpu_table --model llama2-7b --arms flashoptim,flashoptim_gr --steps 12 --timing-warmup 2 --data smoke --sweep-id gr-$v --out $O/$v baselines.learned=[] "${X[@]}" 2>&1 | tail -8
  for d in results/sweeps/gr-$v/runs/*/; do cp $d/metrics.jsonl $O/$v-$(basename $d)-metrics.jsonl 2>/dev/null; done
done
t done

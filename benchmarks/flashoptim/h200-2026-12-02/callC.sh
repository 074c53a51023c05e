#!/bin/bash
# session 6, call C (issue 14 probe), from a `git archive` of commit $C with .whl and the pilot dataset
# (with its baselines.json) carried: scripts/probes/pilot_share.py.
O=$OUT
source scripts/gpu_env.sh > $O/C_out.txt 2>&1 || { cat $O/C_out.txt; exit 1; }
exec > >(tee -a $O/C_out.txt) 2>&1
T0=$(date +%s); t() { echo "== $1 at $(( $(date +%s) - T0 )) s"; }
{ echo "commit $C"; date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; nproc; ls -la results/datasets/*/baselines.json; command -v nvidia-cuda-mps-control; } > $O/C_meta.txt 2>&1; cat $O/C_meta.txt
mkdir -p /tmp/probe
t probe
timeout ${PROBE_S:-520} python3 scripts/probes/pilot_share.py /tmp/probe/share.json $PROBE_ARGS
echo "probe rc=$?"; echo quit | nvidia-cuda-mps-control 2>/dev/null
cp /tmp/probe/share.json $O/C_share.json; tar czf $O/C_probe.tgz -C /tmp/probe .
t done

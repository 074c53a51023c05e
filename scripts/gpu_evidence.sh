#!/usr/bin/env bash
# The GPU evidence of issues 3, 5 and 6 on one lent GPU, in parts that each fit one 10-minute call.
# Needs: .whl/ (scripts/fetch_wheels.sh, WITH_WANDB=0) and the datasets under results/datasets/
# carried along (the GPU box has no FEniCSx: data is generated on CPU and carried).
#   scripts/gpu_evidence.sh kernels   flashoptim GPU agreement tests + 1B memory/throughput table
#   scripts/gpu_evidence.sh 7b        7B table (AdamW must end as a recorded oom)
#   scripts/gpu_evidence.sh pilot     make mvt SCALE=pilot (resumable: call again to continue)
set -uo pipefail
part=${1:?part: kernels | 7b | pilot}
out=${OUT:-results/gpu_evidence}
mkdir -p "$out"
source scripts/gpu_env.sh || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device-$part.txt"
case "$part" in
  kernels)
    python3 -m pytest tests/flashoptim -m gpu -q -p no:cacheprovider 2>&1 | tee "$out/flashoptim-gpu-tests.log" | tail -15
    python3 -m scripts.gpu_table --model llama-1b --steps 50 --timing-warmup 5 --micro-batch 4 --out "$out" 2>&1 | tail -12
    ;;
  7b)
    python3 -m scripts.gpu_table --model llama2-7b --steps 6 --timing-warmup 2 --micro-batch 1 --out "$out" 2>&1 | tail -12
    ;;
  pilot)
    export WANDB_MODE=disabled   # wandb is not carried to the GPU box (transfer limit)
    timeout "${PILOT_TIMEOUT_S:-540}" python3 -m experiments.sweep sweep=mvt scale=pilot "${@:2}" 2>&1 | tee -a "$out/pilot.log" | tail -40
    ;;
esac

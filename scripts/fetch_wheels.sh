#!/usr/bin/env bash
# Download the wheels a GPU box without internet needs beyond its own image (torch, triton,
# transformers, numpy, pandas, scipy, matplotlib, rich ... are assumed present there), into .whl/.
# Usage: [WITH_WANDB=0] scripts/fetch_wheels.sh [DEST]   (needs registry access; ~45 MB, ~70 with wandb)
# Then on the GPU box: source scripts/gpu_env.sh   (installs them into /tmp/site, no network).
set -euo pipefail
dest=${1:-.whl}
mkdir -p "$dest"
py=${PYTHON:-python3}
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
# Pinned to the versions in uv.lock (the joblib launcher: scripts/gpu_pilot.py shares one GPU between runs). Versions of the pure-Python wandb dependencies are chosen to
# match what the image lacks (the image has protobuf, click, pyyaml, requests, typing-extensions).
pkgs=(hydra-core==1.3.2 omegaconf==2.3.0 hydra-joblib-launcher==1.2.0 joblib==1.6.0)
# wandb and its needs add ~25 MB; leave them out (WITH_WANDB=0) where a carry limit binds, and run
# with wandb.mode=disabled there (metrics.jsonl stays the source of truth either way).
if [ "${WITH_WANDB:-1}" = 1 ]; then
  pkgs+=(wandb==0.31.0 gitpython gitdb smmap sentry-sdk platformdirs pydantic pydantic-core annotated-types typing-inspection)
fi
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${plat[@]}" -d "$dest" "${pkgs[@]}"
# bitsandbytes ships a native library per CUDA/ROCm/XPU version (43 MB): the full wheel goes to
# $dest/full/, and $dest gets a copy with only the CPU library and the CUDA 13.x ones the GPU image's
# torch (2.11+cu130) loads (7 MB), so that a device call fits its 64 MiB carry with the working tree
# and a dataset (scripts/slim_wheel.py; set BNB_KEEP to keep other libraries).
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${plat[@]}" -d "$dest/full" bitsandbytes==0.50.2
keep=()
for lib in ${BNB_KEEP:-cpu cuda130 cuda132}; do keep+=(--keep "bitsandbytes/libbitsandbytes_${lib}.so"); done
"$py" scripts/slim_wheel.py "$dest"/full/bitsandbytes-0.50.2-*.whl "$dest" \
  --drop 'bitsandbytes/libbitsandbytes_*.so' "${keep[@]}"
# antlr4-python3-runtime (omegaconf's parser) ships only as an sdist: build a wheel here.
"$py" -m pip wheel -q --no-deps -w "$dest" antlr4-python3-runtime==4.9.3
# The published FlashOptim package, only to measure ours against it (loaded in a separate process).
if [ "${WITH_PUBLISHED_FLASHOPTIM:-1}" = 1 ]; then
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plat[@]}" -d "$dest/published" flashoptim==0.1.4 || echo "published flashoptim not fetched"
fi
du -sh "$dest"

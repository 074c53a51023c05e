# Source this on a GPU box with no internet, from the repository root:  source scripts/gpu_env.sh
# Installs the carried wheels (.whl/, see scripts/fetch_wheels.sh) into /tmp/site and puts that and
# the repository on PYTHONPATH. The box's own torch/triton/transformers are used as they are.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "gpu_env: installing carried wheels failed" >&2; return 1; }
export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 WANDB_MODE=${WANDB_MODE:-offline}
python3 -c 'import torch, bitsandbytes, hydra; print("gpu_env:", torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no cuda", "bitsandbytes", bitsandbytes.__version__)'

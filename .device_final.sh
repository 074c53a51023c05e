O=$OUT
source scripts/gpu_env.sh || exit 1
export PYTHONUNBUFFERED=1
git rev-parse --short HEAD > $O/commit.txt 2>/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $O/smi.txt
T0=$(date +%s); t() { echo "== $1 at $(( $(date +%s) - T0 )) s"; }
t tests
timeout 200 python3 -m pytest tests/flashoptim -m gpu -q -n 16 -p no:cacheprovider > $O/test-gpu.log 2>&1; echo "tests rc=$?"; tail -3 $O/test-gpu.log
t bench
timeout 100 python3 -m flashoptim.bench --arms flash_adamw24,flash_adamw32,flash_adamw_none,published_adamw24,torch_adamw_fused_fp32 --steps 20 --out $O/bench.json 2>&1 | tail -8
t e2e7
timeout 120 python3 -m flashoptim.bench e2e --models llama7b --arms ours24,ours24_gr,published24,published24_gr --out $O/e2e_7b.json 2>&1 | tail -6
t done

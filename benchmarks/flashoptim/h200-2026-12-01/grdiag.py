"""GR diagnosis at 7B: python grdiag.py MODE (plain | gr | gr_nostep)."""
import statistics, sys, time, json
import torch
sys.path.insert(0, "flashoptim")
from bench_e2e_worker import _build
import flashoptim
mode = sys.argv[1]
model, cfg = _build(sys.argv[2] if len(sys.argv) > 2 else "llama7b")
flashoptim.cast_model(model, dtype=torch.bfloat16)
opt = flashoptim.FlashAdamW(model.parameters(), lr=1e-5, master_weight_bits=24)
hook_s = [0.0]
if mode == "gr":
    orig = opt.step_param
    def timed(p):
        t = time.perf_counter(); orig(p); hook_s[0] += time.perf_counter() - t
    opt.step_param = timed
    flashoptim.enable_gradient_release(model, opt)
elif mode == "gr_nostep":
    for p in model.parameters():
        p.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", None))
ids = torch.randint(0, cfg.vocab_size, (1, 2048), device="cuda")
times, hooks = [], []
def one():
    torch.cuda.synchronize(); t0 = time.perf_counter(); hook_s[0] = 0.0
    loss = model(input_ids=ids, labels=ids).loss
    tb = time.perf_counter(); loss.backward(); tb = time.perf_counter() - tb
    if mode == "plain":
        opt.step()
    opt.zero_grad(set_to_none=True)
    th = time.perf_counter(); torch.cuda.synchronize(); tsync = time.perf_counter() - th
    return time.perf_counter() - t0, hook_s[0], tb, tsync
res = [one() for _ in range(5)]
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    r = one()
gpu_us = sum(e.self_device_time_total for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA)
steps = [x[0] for x in res[1:]]
print("GRDIAG", json.dumps(dict(mode=mode, step_s=statistics.median(steps), hook_s=statistics.median(x[1] for x in res[1:]),
      backward_call_s=statistics.median(x[2] for x in res[1:]), final_sync_s=statistics.median(x[3] for x in res[1:]),
      profiled_step_s=r[0], gpu_busy_s=gpu_us / 1e6)))

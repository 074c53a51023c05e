"""Gradient-release diagnosis at 7B (device call 2, 2026-12-01): ``python3 grdiag.py MODE [MODEL]``.

MODE ``plain`` (``optimizer.step()`` after backward), ``gr`` (our gradient release, with the host
time spent inside ``step_param`` summed per step) or ``gr_nostep`` (hooks that only free each
gradient: backward's cost without any optimizer).  Prints one ``GRDIAG`` JSON line: median step
time over steps 2-5, hook host time, time until ``backward()`` returns, the final sync, and the
GPU busy time of one more step under the torch profiler.  Run from the repository root; this is
the script of call 2 reformatted to the house lint (same statements).
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

import flashoptim
from flashoptim.bench_e2e_worker import _build

mode = sys.argv[1]
model, cfg = _build(sys.argv[2] if len(sys.argv) > 2 else "llama7b")
flashoptim.cast_model(model, dtype=torch.bfloat16)
opt = flashoptim.FlashAdamW(model.parameters(), lr=1e-5, master_weight_bits=24)
hook_s = [0.0]
if mode == "gr":
    orig = opt.step_param

    def timed(p: torch.Tensor) -> None:
        t = time.perf_counter()
        orig(p)
        hook_s[0] += time.perf_counter() - t

    opt.step_param = timed  # type: ignore[method-assign]
    flashoptim.enable_gradient_release(model, opt)
elif mode == "gr_nostep":
    for q in model.parameters():
        q.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", None))
ids = torch.randint(0, cfg.vocab_size, (1, 2048), device="cuda")


def one() -> tuple[float, float, float, float]:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    hook_s[0] = 0.0
    loss = model(input_ids=ids, labels=ids).loss
    tb = time.perf_counter()
    loss.backward()
    tb = time.perf_counter() - tb
    if mode == "plain":
        opt.step()
    opt.zero_grad(set_to_none=True)
    th = time.perf_counter()
    torch.cuda.synchronize()
    tsync = time.perf_counter() - th
    return time.perf_counter() - t0, hook_s[0], tb, tsync


res = [one() for _ in range(5)]
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    r = one()
cuda = torch.autograd.DeviceType.CUDA
gpu_us = sum(e.self_device_time_total for e in prof.key_averages() if e.device_type == cuda)
print(
    "GRDIAG",
    json.dumps(
        dict(
            mode=mode,
            step_s=statistics.median(x[0] for x in res[1:]),
            hook_s=statistics.median(x[1] for x in res[1:]),
            backward_call_s=statistics.median(x[2] for x in res[1:]),
            final_sync_s=statistics.median(x[3] for x in res[1:]),
            profiled_step_s=r[0],
            gpu_busy_s=gpu_us / 1e6,
        )
    ),
)

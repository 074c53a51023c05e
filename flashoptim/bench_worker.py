"""One benchmark arm in its own process: ``python bench_worker.py ARM OUT_JSON [STEPS [WORKLOAD]]``.

Kept free of any import of this package at module level, so that the parent can run it with the
*published* ``flashoptim`` first on ``sys.path`` (arms ``published_*``) while ours owns the name in
every other arm.  Measures one optimizer step over ~1.01B parameters shaped like five Llama-2-7B
decoder layers (``WORKLOAD`` ``llama7b_layers``, the default) or many small tensors
(``small_tensors``: 1,024 norm-like vectors of 4,096 and 1,024 bias-like ones of 11,008, 15.5M
params, where launches rather than bytes set the time): median of CUDA-event timings, and resident
bytes/param (allocated after the first steps minus before the params, so params + grads + optimizer
state).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections.abc import Callable
from typing import Any

import torch

# Bytes one step must move per param (read + write) for each arm; group scales counted where the
# arm has them (2 B per 32 values, read and written, per 8-bit state).
SCALE_BYTES = 2 * 2 / 32
MIN_BYTES_PER_PARAM: dict[str, float] = {
    "torch_adamw_fused_fp32": 28.0,
    "bnb_adamw8bit_bf16": 10.0,
    "flash_adamw24": 12.0 + 2 * SCALE_BYTES,
    "flash_adamw32": 14.0 + 2 * SCALE_BYTES,
    "flash_adamw_none": 10.0 + 2 * SCALE_BYTES,
    "flash_adamw24_torch": 12.0 + 2 * SCALE_BYTES,
    "published_adamw24": 12.0 + 2 * SCALE_BYTES,
    "published_adamw32": 14.0 + 2 * SCALE_BYTES,
    "published_adamw_none": 10.0 + 2 * SCALE_BYTES,
}


def llama7b_layer_shapes(
    hidden: int = 4096, intermediate: int = 11008, layers: int = 5
) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    for _ in range(layers):
        shapes += [(hidden, hidden)] * 4 + [(intermediate, hidden)] * 2 + [(hidden, intermediate)]
        shapes += [(hidden,), (hidden,)]
    return shapes


def small_tensor_shapes(count: int = 1024) -> list[tuple[int, ...]]:
    norms: list[tuple[int, ...]] = [(4096,)] * count
    return norms + [(11008,)] * count


def profile_shapes() -> list[tuple[int, ...]]:
    """Four MLP matrices of Llama-2-7B (180M params): a short run for Nsight Compute to sample."""
    return [(11008, 4096)] * 4


WORKLOADS: dict[str, Callable[[], list[tuple[int, ...]]]] = {
    "llama7b_layers": llama7b_layer_shapes,
    "small_tensors": small_tensor_shapes,
    "profile": profile_shapes,
}


def make_optimizer(arm: str, params: list[torch.nn.Parameter]) -> Any:
    if arm == "torch_adamw_fused_fp32":
        return torch.optim.AdamW(params, lr=1e-4, fused=True)
    if arm == "bnb_adamw8bit_bf16":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=1e-4)  # type: ignore[attr-defined,no-untyped-call]
    import flashoptim  # ours, or the published package when the parent put it first on the path

    _check_origin(flashoptim)

    bits = {"adamw24": 24, "adamw32": 32, "adamw_none": None}[arm.split("_", 1)[1].removesuffix("_torch")]
    kwargs: dict[str, Any] = {}
    if arm.endswith("_torch"):
        kwargs["backend"] = "torch"
    return flashoptim.FlashAdamW(params, lr=1e-4, master_weight_bits=bits, **kwargs)


def copy_bandwidth_samples_GBps(n_bytes: int = 2 * 1024**3, reps: int = 20) -> list[float]:
    """Device-to-device copies of ``n_bytes`` (33x the H200's L2), timed one by one with CUDA events;
    bandwidth counts bytes read plus bytes written."""
    a = torch.empty(n_bytes // 4, device="cuda", dtype=torch.float32).uniform_()
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    out = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        start.record()
        b.copy_(a)
        end.record()
        torch.cuda.synchronize()
        out.append(2 * n_bytes / (start.elapsed_time(end) / 1e3) / 1e9)
    del a, b
    torch.cuda.empty_cache()
    return out


# GPU cycles of busy-wait queued before each timed step (``lead-in`` timing): about 1 ms at the H200's
# 1.98 GHz, so the host's work before the step's first launch overlaps it instead of showing as idle
# GPU time inside the timed region.
LEAD_IN_CYCLES = 2_000_000


def _time_steps(step: Callable[[], Any], steps: int, lead_in: bool) -> list[float]:
    times_ms = []
    for _ in range(steps):
        start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        if lead_in:
            torch.cuda._sleep(LEAD_IN_CYCLES)  # type: ignore[no-untyped-call]
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times_ms.append(start.elapsed_time(end))
    return times_ms


def run_arm(arm: str, steps: int, workload: str = "llama7b_layers") -> dict[str, Any]:
    """Time ``steps`` optimizer steps twice: ``lead_in`` (the GPU is kept busy until the step's
    launches are queued: the step's device time, what the kernels cost) and ``cold`` (the GPU idle at
    the start event: the host's time before the first launch included, as a training loop sees it).
    The copy bandwidth is measured in this process before and after the steps, so the step and its
    ceiling share one machine state; ``frac_of_copy_bw`` uses the median of both sets of copies."""
    dtype = torch.float32 if arm.endswith("fp32") else torch.bfloat16
    shapes = WORKLOADS[workload]()
    numel = sum(torch.Size(s).numel() for s in shapes)
    copy_before = copy_bandwidth_samples_GBps()
    torch.manual_seed(0)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    params = [torch.nn.Parameter(torch.randn(s, device="cuda", dtype=dtype) * 0.02) for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3  # never zeros: zeros can run faster than real data
    opt = make_optimizer(arm, params)
    for _ in range(3):
        opt.step()
    torch.cuda.synchronize()
    resident = torch.cuda.memory_allocated() - base
    times_ms = _time_steps(opt.step, steps, lead_in=True)
    cold_ms = _time_steps(opt.step, steps, lead_in=False)
    finite = all(bool(torch.isfinite(p).all()) for p in params)
    del opt, params
    torch.cuda.empty_cache()
    copy_after = copy_bandwidth_samples_GBps()
    copy_GBps = statistics.median(copy_before + copy_after)
    mod = sys.modules.get("flashoptim")
    step_ms = statistics.median(times_ms)
    min_bytes = MIN_BYTES_PER_PARAM[arm]
    achieved = min_bytes * numel / (step_ms / 1e3) / 1e9
    q1, _, q3 = statistics.quantiles(times_ms, n=4)
    return {
        "arm": arm,
        "workload": workload,
        "tensors": len(shapes),
        "numel": numel,
        "steps": steps,
        "step_ms_median": step_ms,
        "step_ms_q1": q1,
        "step_ms_q3": q3,
        "step_ms_min": min(times_ms),
        "step_ms_max": max(times_ms),
        "step_ms_cold_median": statistics.median(cold_ms),
        "resident_bytes_per_param": resident / numel,
        "min_bytes_moved_per_param": min_bytes,
        "achieved_GBps": achieved,
        "copy_GBps": copy_GBps,
        "copy_GBps_before": statistics.median(copy_before),
        "copy_GBps_after": statistics.median(copy_after),
        "frac_of_copy_bw": achieved / copy_GBps,
        "params_finite": finite,
        "flashoptim_module": getattr(mod, "__file__", None) if mod else None,
    }


def _check_origin(module: Any) -> None:
    """A published arm must run the published package: the parent names its directory."""
    root = os.environ.get("FLASHOPTIM_BENCH_PUBLISHED_ROOT")
    if root and not os.path.abspath(module.__file__).startswith(os.path.abspath(root) + os.sep):
        raise RuntimeError(f"published arm imported flashoptim from {module.__file__}, not from {root}")


def _drop_own_directory() -> None:
    """Take this script's directory (``flashoptim/``) off ``sys.path``, where Python put it first.

    Hazard: it holds a package named ``kernels``.  transformers probes for the hub's ``kernels``
    package with ``importlib.import_module("kernels")``; in a published arm that imported our
    ``flashoptim/kernels``, whose ``from flashoptim.companders import ...`` then failed against
    the published ``flashoptim``, and ``from transformers import LlamaConfig`` raised "Could not
    import module 'LlamaConfig'" (H200, 2026-12-01, every published e2e arm; traceback in
    benchmarks/flashoptim/h200-2026-12-01-session5/).  Nothing here imports a sibling module."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]


def main(argv: list[str]) -> int:
    _drop_own_directory()
    arm, out = argv[0], argv[1]
    steps = int(argv[2]) if len(argv) > 2 else 50
    workload = argv[3] if len(argv) > 3 else "llama7b_layers"
    try:
        result = run_arm(arm, steps, workload)
    except Exception as exc:  # recorded, so one failing arm does not hide the others
        result = {"arm": arm, "error": repr(exc)[:500]}
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, out)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Fused Triton kernels (CUDA; the CPU under ``TRITON_INTERPRET=1``) for the Flash optimizers.

The torch path in :mod:`flashoptim.optimizer` is the reference; these kernels compute the same
update in one pass, for every configuration the optimizers offer: bf16, fp16 and fp32 params, 24-
and 32-bit or no correction, 8-bit states under every compander (``linear``, ``paper``, ``log``,
``learned``) and fp32 states (``quantize_states=False``).  ``triton_unsupported_reason`` says why a
param must take the torch path (no triton, not on CUDA, an optimizer without a fused kernel: the
``auto`` backend then uses it silently; ``backend="triton"`` raises at construction).

The learned compander: each state tensor carries its compander ``(family, param)``; the kernel
takes the family as a constexpr (one compiled variant per family pair) and the parameter at run
time.  On a refit step (``(step - 1) % learned_refit_every == 0``) the kernel writes the updated
states in fp32 to scratch instead of codes, and the torch code fits the new compander on them and
quantises, exactly as the reference does (``FlashOptimizer._store_states``).  The scratch is
``4 · numel`` bytes per state of one param, alive during that param's step only.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import torch

from flashoptim.companders import Compander, default_compander

__all__ = [
    "GROUPS_PER_PROGRAM",
    "MULTI_MAX_NUMEL",
    "NUM_WARPS",
    "fused_step",
    "fused_step_many",
    "triton_unsupported_reason",
]

# Tile of one program: GROUPS_PER_PROGRAM × 32 values.  Tuned on an H100 (flashoptim/BENCHMARKS.md);
# overridable for tuning runs through the environment.
GROUPS_PER_PROGRAM = int(os.environ.get("FLASHOPTIM_GROUPS_PER_PROGRAM", "64"))
NUM_WARPS = int(os.environ.get("FLASHOPTIM_NUM_WARPS", "8"))
# approximate sqrt on the GPU (1-2 fp32 ULP); "0" selects the IEEE sequence, for agreement studies
FAST_MATH = os.environ.get("FLASHOPTIM_FAST_MATH", "1") == "1"
# Params of at most this many values share one launch of the multi-tensor kernel per configuration
# (kernels/triton_multi.py); larger ones keep their own launch, where the pointer arguments'
# alignment specialisation applies and the launch overhead is amortised.  Not yet timed on a GPU.
# Off by default (opt in with e.g. 262144): measured on an H100 (flashoptim/BENCHMARKS.md), the step of
# 1.01B params (45 tensors, 10 of them small) took 6.10 ms with it and 5.63 ms without.
MULTI_MAX_NUMEL = int(os.environ.get("FLASHOPTIM_MULTI_MAX_NUMEL", "0"))

_FUSED_DTYPES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}  # triton_step.P_DTYPE


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def triton_unsupported_reason(opt: Any, p: torch.Tensor) -> str | None:
    """None when the fused kernel can step ``p`` for ``opt``, else a one-line reason."""
    if not _triton_available():
        return "triton is not installed"
    if not (p.is_cuda or (_interpreting() and p.device.type == "cpu")):
        return "the fused kernel runs on CUDA (or on CPU under TRITON_INTERPRET=1)"
    if getattr(opt, "_fused_kind", None) is None:
        return f"{type(opt).__name__} has no fused kernel"
    if p.dtype not in _FUSED_DTYPES:
        return f"param dtype {p.dtype} runs on the torch path (fused: bfloat16, float16, float32)"
    return None


def compander_args(comp: Compander) -> tuple[int, float, float]:
    """``(FAM, a, aux)`` of the kernel for one compander (see triton_step._compand).

    ``aux`` is computed here in float64 and rounded to fp32 once, as torch rounds the same Python
    expression in :meth:`Compander.forward`/``inverse``.
    """
    from flashoptim.kernels.triton_step import FAM_LINEAR, FAM_MULAW, FAM_POWER, FAM_SOFTSIGN, FAM_SQRT

    a = float(comp.param)
    if comp.family == "linear":
        return FAM_LINEAR, 1.0, 1.0
    if comp.family == "softsign":
        return FAM_SOFTSIGN, a, 1.0 + a
    if comp.family == "power":
        # p = 1/2 is the reference's special case too (pow(., 0.5) is sqrt; the inverse squares)
        return (FAM_SQRT, a, 2.0) if a == 0.5 else (FAM_POWER, a, 1.0 / a)
    return FAM_MULAW, a, math.log1p(a)


@functools.lru_cache(maxsize=64)
def _fixed_compander_args(name: str, signed: bool) -> tuple[int, float, float]:
    return compander_args(default_compander(name, signed=signed))


def _state_compander_args(
    opt: Any, state: dict[str, Any], name: str, signed: bool
) -> tuple[int, float, float]:
    """Kernel args of one state's compander.  A fixed compander (every choice but ``learned``) is the
    optimizer's own (``_import_state`` re-quantises any other), so it comes from a cache: reading the
    state's compander tensor costs host time on every launch."""
    if opt.compander != "learned":
        return _fixed_compander_args(opt.compander, signed)
    return compander_args(Compander.from_tensor(state[f"{name}_compander"]))


def _scalars(opt: Any, group: dict[str, Any], step: int) -> dict[str, Any]:
    lr, wd = float(group["lr"]), float(group.get("weight_decay", 0.0))
    decoupled = getattr(opt, "_decoupled", True)
    out = dict(
        lr=lr,
        decay=1.0 - lr * wd if decoupled and wd != 0 else 1.0,
        l2=0.0 if decoupled else wd,
        beta1=0.0,
        beta2=0.0,
        eps=0.0,
        step_size=0.0,
        bc2_sqrt=1.0,
        one_minus_dampening=1.0,
        first_step=int(step == 1),
    )
    kind = opt._fused_kind
    if kind == "adam":
        beta1, beta2 = group["betas"]
        out.update(
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            step_size=lr / (1 - beta1**step),
            bc2_sqrt=math.sqrt(1 - beta2**step),
        )
    elif kind == "sgd":
        out.update(beta1=group["momentum"], one_minus_dampening=1.0 - group["dampening"])
    elif kind == "lion":
        out.update(beta1=group["betas"][0], beta2=group["betas"][1])
    out.update(one_minus_beta1=1.0 - out["beta1"], one_minus_beta2=1.0 - out["beta2"])
    return out


def fused_step(opt: Any, p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
    """Step one param in place with the fused kernel (``state["step"]`` already incremented)."""
    import triton

    from flashoptim.kernels.triton_step import ALGO_ADAM, ALGO_LION, ALGO_SGD, flash_step_kernel

    n = p.numel()
    if n == 0:
        return
    kind = opt._fused_kind
    algo = {"adam": ALGO_ADAM, "sgd": ALGO_SGD, "lion": ALGO_LION}[kind]
    specs = opt._state_specs(group)
    names = [name for name, _signed, _root in specs]
    step = state["step"]
    # Hazard: the kernel walks memory linearly; non-contiguous params and grads go through a
    # contiguous copy (state tensors are always contiguous in the param's row-major order).
    target = p.detach()
    work = target if target.is_contiguous() else target.contiguous()
    assert p.grad is not None  # the optimizer only steps params that have a gradient
    grad = p.grad.detach()
    grad = grad if grad.is_contiguous() else grad.contiguous()
    corr = state.get("correction")
    quantized = bool(opt.quantize_states)
    refit = (
        quantized and bool(names) and opt.compander == "learned" and (step - 1) % opt.learned_refit_every == 0
    )
    state_ptrs: list[torch.Tensor] = []  # (values or codes, scales, fp32 out) per state
    fam_args: list[tuple[int, float, float]] = []
    scratch: dict[str, torch.Tensor] = {}
    for name, signed, _root in specs:
        if quantized:
            codes, scales = state[f"{name}_codes"], state[f"{name}_scales"]
            out = work
            if refit:
                out = scratch[name] = torch.empty(n, dtype=torch.float32, device=p.device)
            state_ptrs += [codes, scales, out]
            fam_args.append(_state_compander_args(opt, state, name, signed))
        else:
            values = state[name]
            state_ptrs += [values, values, values]
            fam_args.append((0, 1.0, 1.0))
    while len(state_ptrs) < 6:  # unused pointer slots: any tensor of the device
        state_ptrs += state_ptrs[-3:] if state_ptrs else [work, work, work]
    while len(fam_args) < 2:
        fam_args.append((0, 1.0, 1.0))
    (s1, s1s, r1, s2, s2s, r2), ((fam1, a1, aux1), (fam2, a2, aux2)) = state_ptrs[:6], fam_args[:2]
    sc = _scalars(opt, group, step)
    grid = (triton.cdiv(n, GROUPS_PER_PROGRAM * 32),)
    flash_step_kernel[grid](
        work,
        corr if corr is not None else work,
        grad,
        s1,
        s1s,
        s2,
        s2s,
        r1,
        r2,
        n,
        sc["lr"],
        sc["decay"],
        sc["l2"],
        sc["beta1"],
        sc["beta2"],
        sc["one_minus_beta1"],
        sc["one_minus_beta2"],
        sc["eps"],
        sc["step_size"],
        sc["bc2_sqrt"],
        sc["one_minus_dampening"],
        sc["first_step"],
        a1,
        aux1,
        a2,
        aux2,
        ALGO=algo,
        HAS_CORR=corr is not None,
        CORR_LEVELS=32767 if corr is not None and corr.dtype == torch.int16 else 127,
        HAS_STATE=bool(names),
        FAM1=fam1,
        FAM2=fam2,
        RAW_IN=not quantized,
        RAW_OUT=not quantized or refit,
        NESTEROV=bool(group.get("nesterov", False)),
        P_DTYPE=_FUSED_DTYPES[p.dtype],
        GROUPS=GROUPS_PER_PROGRAM,
        FAST=FAST_MATH,
        INTERPRET=_interpreting(),
        num_warps=NUM_WARPS,
    )
    if work is not target:
        target.copy_(work)
    if refit:
        # fit the new compander on the live fp32 states and quantise, as the reference path does
        opt._store_states(state, {k: v.view(p.shape) for k, v in scratch.items()}, group, step)


def _launch_inputs(
    opt: Any, p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]
) -> tuple[Any, ...] | None:
    """``(key, tensors, compander args)`` of ``p`` for the multi-tensor kernel, or None when ``p``
    needs its own launch (large, empty, non-contiguous, unaligned, a learned refit step, a grad of
    another dtype).  Params of equal key share a launch."""
    n = p.numel()
    grad = p.grad
    if n == 0 or n > MULTI_MAX_NUMEL or grad is None or grad.dtype != p.dtype:
        return None
    if not (p.is_contiguous() and grad.is_contiguous()):
        return None
    if type(p) not in (torch.Tensor, torch.nn.Parameter) or type(grad) is not torch.Tensor:
        return None  # tensor subclasses (DTensor shards under FSDP2): data_ptr is not their storage
    specs = opt._state_specs(group)
    step = state["step"]
    quantized = bool(opt.quantize_states)
    if quantized and specs and opt.compander == "learned" and (step - 1) % opt.learned_refit_every == 0:
        return None
    corr = state.get("correction")
    # columns: param, correction, grad, s1 codes, s1 scales, s2 codes, s2 scales, r1, r2
    cols: list[torch.Tensor] = [p.detach(), corr if corr is not None else p.detach(), grad]
    fams: list[int] = []
    comp: list[float] = []
    for name, signed, _root in specs:
        if quantized:
            codes, scales = state[f"{name}_codes"], state[f"{name}_scales"]
            cols += [codes, scales]
            fam, a, aux = _state_compander_args(opt, state, name, signed)
        else:
            values = state[name]
            cols += [values, values]
            fam, a, aux = 0, 1.0, 1.0
        fams.append(fam)
        comp += [a, aux]
    while len(cols) < 7:  # unused state columns repeat a tensor of the same column type
        cols += cols[-2:] if len(cols) > 3 else [cols[0], cols[0]]
    while len(fams) < 2:
        fams.append(0)
        comp += [1.0, 1.0]
    # r1, r2: the fp32 state outputs (quantize_states=False writes the states in place)
    cols += [cols[3], cols[5]]
    if any(t.data_ptr() % 16 for t in cols):
        return None  # the kernel declares 16-byte aligned tensors (vectorised access)
    key = (p.dtype, None if corr is None else corr.dtype, tuple(fams), step)
    return key, cols, comp


def _to_device(rows: list[Any], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    host = torch.tensor(rows, dtype=dtype)
    if device.type != "cuda":
        return host
    # pinned + non_blocking: a pageable copy would wait for the work queued before it (the backward)
    return host.pin_memory().to(device, non_blocking=True)


def _launch_tables(
    items: list[tuple[torch.Tensor, dict[str, Any], list[torch.Tensor], list[float]]],
    numels: list[int],
    bases: list[torch.Tensor],
    tile: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Device tables of one multi-tensor launch: element offsets of every tensor from its column's
    base, numels, compander args, and each tile's tensor and index within it."""
    tiles = torch.tensor([-(-n // tile) for n in numels], dtype=torch.int64)
    tile_tensor = torch.repeat_interleave(torch.arange(len(items), dtype=torch.int64), tiles)
    starts = torch.cumsum(tiles, 0) - tiles
    tile_index = torch.arange(int(tiles.sum()), dtype=torch.int64) - starts[tile_tensor]
    # each tensor as an element offset from the first item's tensor of its column (exact: every
    # address is 16-byte aligned, so offsets are whole elements)
    offsets = [
        [(t.data_ptr() - b.data_ptr()) // b.element_size() for t, b in zip(cols, bases)]
        for _p, _s, cols, _c in items
    ]
    off = _to_device(offsets, torch.int64, device)
    numel = _to_device(numels, torch.int64, device)
    comp = _to_device([c for _p, _s, _a, c in items], torch.float32, device)
    tile_t = _to_device(tile_tensor.tolist(), torch.int32, device)
    tile_i = _to_device(tile_index.tolist(), torch.int32, device)
    return off, numel, comp, tile_t, tile_i, int(tiles.sum())


def _launch_many(
    opt: Any,
    fams: tuple[int, ...],
    items: list[tuple[torch.Tensor, dict[str, Any], list[torch.Tensor], list[float]]],
    group: dict[str, Any],
) -> None:
    """One launch of the multi-tensor kernel for ``items`` (same key; ``fams``: its families)."""
    from flashoptim.kernels.triton_multi import flash_step_multi_kernel
    from flashoptim.kernels.triton_step import ALGO_ADAM, ALGO_LION, ALGO_SGD

    p0, state0 = items[0][0], items[0][1]
    device = p0.device
    tile = GROUPS_PER_PROGRAM * 32
    numels = [p.numel() for p, _s, _a, _c in items]
    bases = items[0][2]
    # The launch tables depend only on addresses, sizes and compander args, which stay the same from
    # step to step: build and upload them once (host work per launch delays the GPU on small params).
    cache = opt.__dict__.setdefault("_multi_launch_tables", {})
    key = (
        fams,
        device,
        tuple((tuple(t.data_ptr() for t in cols), tuple(c)) for _p, _s, cols, c in items),
        tuple(numels),
    )
    if key not in cache:
        if len(cache) >= 64:
            cache.clear()
        cache[key] = _launch_tables(items, numels, bases, tile, device)
    off, numel, comp, tile_t, tile_i, n_tiles = cache[key]
    names = [name for name, _signed, _root in opt._state_specs(group)]
    corr = state0.get("correction")
    sc = _scalars(opt, group, state0["step"])
    flash_step_multi_kernel[(n_tiles,)](
        *bases,
        off,
        numel,
        comp,
        tile_t,
        tile_i,
        sc["lr"],
        sc["decay"],
        sc["l2"],
        sc["beta1"],
        sc["beta2"],
        sc["one_minus_beta1"],
        sc["one_minus_beta2"],
        sc["eps"],
        sc["step_size"],
        sc["bc2_sqrt"],
        sc["one_minus_dampening"],
        sc["first_step"],
        ALGO={"adam": ALGO_ADAM, "sgd": ALGO_SGD, "lion": ALGO_LION}[opt._fused_kind],
        HAS_CORR=corr is not None,
        CORR_LEVELS=32767 if corr is not None and corr.dtype == torch.int16 else 127,
        HAS_STATE=bool(names),
        FAM1=fams[0],
        FAM2=fams[1],
        RAW_IN=not opt.quantize_states,
        RAW_OUT=not opt.quantize_states,
        NESTEROV=bool(group.get("nesterov", False)),
        P_DTYPE=_FUSED_DTYPES[p0.dtype],
        GROUPS=GROUPS_PER_PROGRAM,
        FAST=FAST_MATH,
        INTERPRET=_interpreting(),
        num_warps=NUM_WARPS,
    )


def fused_step_many(
    opt: Any, params: list[torch.Tensor], states: list[dict[str, Any]], group: dict[str, Any]
) -> None:
    """Step several params of one group: small ones of equal configuration share one launch of the
    multi-tensor kernel, the rest get one launch each (launches are asynchronous)."""
    batches: dict[
        tuple[Any, ...], list[tuple[torch.Tensor, dict[str, Any], list[torch.Tensor], list[float]]]
    ] = {}
    alone = []
    for p, state in zip(params, states):
        inputs = _launch_inputs(opt, p, state, group) if MULTI_MAX_NUMEL > 0 else None
        if inputs is None:
            alone.append((p, state))
            continue
        key, cols, comp = inputs
        batches.setdefault((p.device, *key), []).append((p, state, cols, comp))
    for (_device, _dtype, _corr, fams, _step), items in batches.items():
        if len(items) == 1:
            alone.append(items[0][:2])
        else:
            _launch_many(opt, fams, items, group)
    for p, state in alone:
        fused_step(opt, p, state, group)

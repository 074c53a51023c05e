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
    "NUM_WARPS",
    "fused_step",
    "fused_step_many",
    "triton_unsupported_reason",
]

# Tile of one program: GROUPS_PER_PROGRAM × 32 values.  Tuned on an H100 (flashoptim/BENCHMARKS.md);
# overridable for tuning runs through the environment.
# Each thread should hold at least 4 values of the tile (GROUPS_PER_PROGRAM × 32 >= 4 × 32 ×
# NUM_WARPS): the code decoder (triton_step._decode8) works on four codes per register (smaller
# tiles were not tried with it).
GROUPS_PER_PROGRAM = int(os.environ.get("FLASHOPTIM_GROUPS_PER_PROGRAM", "64"))
NUM_WARPS = int(os.environ.get("FLASHOPTIM_NUM_WARPS", "8"))
# approximate sqrt on the GPU (1-2 fp32 ULP); "0" selects the IEEE sequence, for agreement studies
FAST_MATH = os.environ.get("FLASHOPTIM_FAST_MATH", "1") == "1"
# "1" (default): launch through the compiled kernel once it exists (``_launch``), skipping Triton's
# JIT entry (argument binding and specialisation), and keep a per-param launch plan (``_Plan``) so
# that a step of a param already stepped once rebuilds only the gradient and the step's scalars.
# Gradient release pays this host time inside backward for every param (flashoptim/BENCHMARKS.md);
# "0" selects Triton's JIT entry for every launch.
FAST_LAUNCH = os.environ.get("FLASHOPTIM_FAST_LAUNCH", "1") == "1"
# register cap per thread (0: the compiler's choice); a tuning knob, see flashoptim/BENCHMARKS.md
MAXNREG = int(os.environ.get("FLASHOPTIM_MAXNREG", "0"))

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
    # every scalar a Python float (an int, e.g. momentum=0, would change the kernel's signature)
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
        inv_bc2_sqrt=1.0,
        one_minus_dampening=1.0,
        first_step=int(step == 1),
    )
    kind = opt._fused_kind
    if kind == "adam":
        beta1, beta2 = float(group["betas"][0]), float(group["betas"][1])
        out.update(
            beta1=beta1,
            beta2=beta2,
            eps=float(group["eps"]),
            step_size=lr / (1 - beta1**step),
            bc2_sqrt=math.sqrt(1 - beta2**step),
            inv_bc2_sqrt=1.0 / math.sqrt(1 - beta2**step),
        )
    elif kind == "sgd":
        out.update(beta1=float(group["momentum"]), one_minus_dampening=1.0 - float(group["dampening"]))
    elif kind == "lion":
        out.update(beta1=float(group["betas"][0]), beta2=float(group["betas"][1]))
    out.update(one_minus_beta1=1.0 - out["beta1"], one_minus_beta2=1.0 - out["beta2"])
    return out


_SCALAR_ORDER = (
    "lr",
    "decay",
    "l2",
    "beta1",
    "beta2",
    "one_minus_beta1",
    "one_minus_beta2",
    "eps",
    "step_size",
    "bc2_sqrt",
    "inv_bc2_sqrt",
    "one_minus_dampening",
    "first_step",
)
# the group entries ``_scalars`` reads: a cached tuple is reused only while these are unchanged
_SCALAR_KEYS = ("lr", "weight_decay", "betas", "eps", "momentum", "dampening")


def _scalar_args(opt: Any, group: dict[str, Any], step: int) -> tuple[Any, ...]:
    """The kernel's run-time scalars in argument order, computed once per (group, step): every
    param of a group shares them, and gradient release asks once per param."""
    cache: dict[tuple[int, int], tuple[Any, ...]] = opt.__dict__.setdefault("_fused_scalars", {})
    sig = tuple(group.get(k) for k in _SCALAR_KEYS)
    hit = cache.get((id(group), step))
    if hit is not None and hit[0] == sig:
        return hit[1]  # type: ignore[no-any-return]
    sc = _scalars(opt, group, step)
    value = tuple(sc[k] for k in _SCALAR_ORDER)
    if len(cache) > 64:
        cache.clear()
    cache[(id(group), step)] = (sig, value)
    return value


# compiled kernels by everything Triton specialises a launch on (see ``_launch``)
_COMPILED: dict[tuple[Any, ...], Any] = {}
_N_TENSOR_ARGS = 9  # the kernel's pointer arguments come first


def _launch(kernel_fn: Any, grid0: int, args: tuple[Any, ...]) -> Any:
    """Launch ``kernel_fn`` over ``grid0`` programs with all its arguments ``args`` (constexprs too).

    The first launch of each specialisation goes through Triton's JIT entry, which compiles and
    returns the compiled kernel; later ones call that kernel's launcher directly.  The key holds
    everything the JIT would specialise on here: the pointer dtypes and their 16-byte alignment,
    the constexpr values, the device and the launch options; the int arguments (``n``,
    ``first_step``) are ``do_not_specialize`` and only their width (i32/i64) matters, and floats
    are never specialised.  Saves the JIT's argument binding, most of the host cost of a launch,
    which gradient release pays inside backward for every parameter.
    """
    options: dict[str, Any] = {"num_warps": NUM_WARPS}
    if MAXNREG:
        options["maxnreg"] = MAXNREG
    if not FAST_LAUNCH or _interpreting():
        kernel_fn[(grid0,)](*args, **options)
        return None
    ptrs = args[:_N_TENSOR_ARGS]
    device = ptrs[0].device.index
    key = (
        id(kernel_fn),
        device,
        tuple((t.dtype, t.data_ptr() % 16 == 0) for t in ptrs),
        args[_N_TENSOR_ARGS] >= 2**31,
        args[-len(_CONSTEXPR_NAMES) :],
        NUM_WARPS,
        MAXNREG,
    )
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = kernel_fn[(grid0,)](*args, **options)
        _COMPILED[key] = compiled
        return compiled
    stream = torch._C._cuda_getCurrentRawStream(device)
    compiled.run(grid0, 1, 1, stream, compiled.function, compiled.packed_metadata, None, None, None, *args)
    return compiled


class _Plan:
    """Everything of one param's launch that does not change between steps (``FAST_LAUNCH``).

    Valid while the param's storage, state dict and group are the ones it was built for; the
    gradient (a new tensor every step) and the scalars (``_scalar_args``) are filled in per launch.
    Only built for contiguous params with a fixed compander (a learned compander changes its
    parameters and refits on the host)."""

    __slots__ = ("compiled", "gdtype", "grid0", "group", "head", "mid", "nesterov", "p_ptr", "state", "tail")

    def __init__(
        self,
        state: dict[str, Any],
        p: torch.Tensor,
        group: dict[str, Any],
        args: tuple[Any, ...],
        grid0: int,
        compiled: Any,
    ) -> None:
        self.state, self.p_ptr, self.group = state, p.data_ptr(), group
        self.nesterov = bool(group.get("nesterov", False))
        self.head, self.mid, self.tail = args[:2], args[3:10], args[10 + len(_SCALAR_ORDER) :]
        self.gdtype, self.grid0, self.compiled = args[2].dtype, grid0, compiled

    def launch(self, opt: Any, p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> bool:
        """Launch for this step; False (nothing launched) when the plan does not apply."""
        grad = p.grad
        if (
            state is not self.state
            or group is not self.group
            or grad is None
            or grad.dtype is not self.gdtype
            or p.data_ptr() != self.p_ptr
            or bool(group.get("nesterov", False)) != self.nesterov
            or not grad.is_contiguous()
            or grad.data_ptr() % 16
        ):
            return False
        args = (*self.head, grad.detach(), *self.mid, *_scalar_args(opt, group, state["step"]), *self.tail)
        c = self.compiled
        stream = torch._C._cuda_getCurrentRawStream(grad.device.index)
        c.run(self.grid0, 1, 1, stream, c.function, c.packed_metadata, None, None, None, *args)
        return True


def _plans(opt: Any) -> dict[int, _Plan]:
    plans: dict[int, _Plan] = opt.__dict__.setdefault("_fused_plans", {})
    return plans


_CONSTEXPR_NAMES = (
    "ALGO",
    "HAS_CORR",
    "CORR_LEVELS",
    "HAS_STATE",
    "FAM1",
    "FAM2",
    "RAW_IN",
    "RAW_OUT",
    "NESTEROV",
    "P_DTYPE",
    "GROUPS",
    "EVEN",
    "FAST",
    "INTERPRET",
)


def fused_step(opt: Any, p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
    """Step one param in place with the fused kernel (``state["step"]`` already incremented)."""
    plan = _plans(opt).get(id(p)) if FAST_LAUNCH else None
    if plan is not None and plan.launch(opt, p, state, group):
        return
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
    tile = GROUPS_PER_PROGRAM * 32
    grid = (triton.cdiv(n, tile),)
    args = (
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
        *_scalar_args(opt, group, step),
        a1,
        aux1,
        a2,
        aux2,
        algo,  # the constexprs, in the kernel's order
        corr is not None,
        32767 if corr is not None and corr.dtype == torch.int16 else 127,
        bool(names),
        fam1,
        fam2,
        not quantized,
        not quantized or refit,
        bool(group.get("nesterov", False)),
        _FUSED_DTYPES[p.dtype],
        GROUPS_PER_PROGRAM,
        n % tile == 0,
        FAST_MATH,
        _interpreting(),
    )
    compiled = _launch(flash_step_kernel, grid[0], args)
    if compiled is not None and work is target and opt.compander != "learned":
        _plans(opt)[id(p)] = _Plan(state, p, group, args, grid[0], compiled)
    if work is not target:
        target.copy_(work)
    if refit:
        # fit the new compander on the live fp32 states and quantise, as the reference path does
        opt._store_states(state, {k: v.view(p.shape) for k, v in scratch.items()}, group, step)


def fused_step_many(
    opt: Any, params: list[torch.Tensor], states: list[dict[str, Any]], group: dict[str, Any]
) -> None:
    """Step several params of one group, one launch each (launches are asynchronous).

    A multi-tensor launch (small params sharing one launch through an address table) was built and
    measured in session 2 and removed: on an H100 the 1.01B-param step took 6.10 ms with it against
    5.63 ms without, and its corrections were not bit-identical to per-param launches on the GPU."""
    for p, state in zip(params, states):
        fused_step(opt, p, state, group)

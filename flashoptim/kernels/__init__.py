"""Fused Triton kernels (CUDA; the CPU under ``TRITON_INTERPRET=1``) for the Flash optimizers.

The torch path in :mod:`flashoptim.optimizer` is the reference; these kernels compute the same
update in one pass.  ``triton_unsupported_reason`` says why a param must take the torch path (the
``auto`` backend then uses it silently; ``backend="triton"`` raises at construction).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

__all__ = ["GROUPS_PER_PROGRAM", "NUM_WARPS", "fused_step", "fused_step_many", "triton_unsupported_reason"]

# Tile of one program: GROUPS_PER_PROGRAM × 32 values.  Tuned on an H100 (flashoptim/BENCHMARKS.md);
# overridable for tuning runs through the environment.
GROUPS_PER_PROGRAM = int(os.environ.get("FLASHOPTIM_GROUPS_PER_PROGRAM", "64"))
NUM_WARPS = int(os.environ.get("FLASHOPTIM_NUM_WARPS", "8"))
# approximate sqrt on the GPU (1-2 fp32 ULP); "0" selects the IEEE sequence, for agreement studies
FAST_MATH = os.environ.get("FLASHOPTIM_FAST_MATH", "1") == "1"

_FUSED_COMPANDERS = {"linear": 0, "paper": 1}


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
    if not opt.quantize_states:
        return "the fused kernel needs quantize_states=True"
    if opt.compander not in _FUSED_COMPANDERS:
        return f"compander={opt.compander!r} runs on the torch path (fused: {sorted(_FUSED_COMPANDERS)})"
    if p.dtype not in (torch.bfloat16, torch.float32):
        return f"param dtype {p.dtype} runs on the torch path (fused: bfloat16, float32)"
    return None


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
    names = [name for name, _signed, _root in opt._state_specs(group)]
    # Hazard: the kernel walks memory linearly; non-contiguous params and grads go through a
    # contiguous copy (state tensors are always contiguous in the param's row-major order).
    target = p.detach()
    work = target if target.is_contiguous() else target.contiguous()
    assert p.grad is not None  # the optimizer only steps params that have a gradient
    grad = p.grad.detach()
    grad = grad if grad.is_contiguous() else grad.contiguous()
    corr = state.get("correction")
    s1 = state[f"{names[0]}_codes"] if names else work
    s1s = state[f"{names[0]}_scales"] if names else work
    s2 = state[f"{names[1]}_codes"] if len(names) > 1 else s1
    s2s = state[f"{names[1]}_scales"] if len(names) > 1 else s1s
    sc = _scalars(opt, group, state["step"])
    grid = (triton.cdiv(n, GROUPS_PER_PROGRAM * 32),)
    flash_step_kernel[grid](
        work,
        corr if corr is not None else work,
        grad,
        s1,
        s1s,
        s2,
        s2s,
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
        ALGO=algo,
        HAS_CORR=corr is not None,
        CORR_LEVELS=32767 if corr is not None and corr.dtype == torch.int16 else 127,
        HAS_STATE=bool(names),
        COMPANDER=_FUSED_COMPANDERS[opt.compander],
        NESTEROV=bool(group.get("nesterov", False)),
        P_IS_BF16=p.dtype == torch.bfloat16,
        GROUPS=GROUPS_PER_PROGRAM,
        FAST=FAST_MATH,
        INTERPRET=_interpreting(),
        num_warps=NUM_WARPS,
    )
    if work is not target:
        target.copy_(work)


def fused_step_many(
    opt: Any, params: list[torch.Tensor], states: list[dict[str, Any]], group: dict[str, Any]
) -> None:
    """Step several params of one group (one launch each; launches are asynchronous)."""
    for p, state in zip(params, states):
        fused_step(opt, p, state, group)

"""FlashAdam and FlashAdamW: Adam with split master weights and companded 8-bit moments.

Update (fp32, identical to ``torch.optim.Adam``/``AdamW`` with ``amsgrad=False``)::

    AdamW: x ← x (1 - lr·wd)            Adam: g ← g + wd·x
    m ← β1 m + (1 - β1) g
    v ← β2 v + (1 - β2) g²
    x ← x - lr/(1 - β1ᵗ) · m / (sqrt(v / (1 - β2ᵗ)) + eps)

Savings: 24-bit master (default) with bf16 grads, resident 2 (param) + 1 (correction) + 2 (grad)
+ 2 × 1.0625 (moments) = 7.125 bytes/param, against 16 for fp32 AdamW; 5.125 with gradient release.
Caveats: moments carry one 8-bit quantisation level of error per step (see
:mod:`flashoptim.quantization`); ``amsgrad``, ``maximize``, ``capturable`` and sparse grads are not
supported (the first is refused, not ignored).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from flashoptim.optimizer import FlashOptimizer, StateSpec, _check_range

__all__ = ["FlashAdam", "FlashAdamW"]


class _FlashAdamBase(FlashOptimizer):
    _decoupled = True
    _fused_kind = "adam"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        amsgrad: bool = False,
        master_weight_bits: int | None = 24,
        quantize_states: bool = True,
        compander: str = "paper",
        learned_refit_every: int = 100,
        backend: str = "auto",
        compress_state_dict: bool = True,
    ) -> None:
        if amsgrad:
            raise ValueError("amsgrad=True is not supported by Flash Adam (an 8-bit running max is not kept)")
        _check_range("betas[0]", float(betas[0]), 0.0, 1.0, hi_open=True)
        _check_range("betas[1]", float(betas[1]), 0.0, 1.0, hi_open=True)
        _check_range("eps", float(eps), 0.0, math.inf, hi_open=True)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__(
            params,
            defaults,
            master_weight_bits=master_weight_bits,
            quantize_states=quantize_states,
            compander=compander,
            learned_refit_every=learned_refit_every,
            backend=backend,
            compress_state_dict=compress_state_dict,
        )

    def _state_specs(self, group: dict[str, Any]) -> tuple[StateSpec, ...]:
        return (("exp_avg", True, 1), ("exp_avg_sq", False, 2))

    def _reference_update(
        self,
        master: torch.Tensor,
        grad: torch.Tensor,
        states: dict[str, torch.Tensor],
        group: dict[str, Any],
        step: int,
    ) -> None:
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        if wd != 0:
            if self._decoupled:
                master.mul_(1 - lr * wd)
            else:
                grad = grad.add(master, alpha=wd)
        m, v = states["exp_avg"], states["exp_avg_sq"]
        m.lerp_(grad, 1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = math.sqrt(1 - beta2**step)
        denom = v.sqrt().div_(bias_correction2_sqrt).add_(eps)
        master.addcdiv_(m, denom, value=-lr / bias_correction1)


class FlashAdamW(_FlashAdamBase):
    """AdamW (decoupled weight decay, ``x ← x(1 - lr·wd)``), torch's default ``weight_decay=0.01``."""

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        **kwargs: Any,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, **kwargs)


class FlashAdam(_FlashAdamBase):
    """Adam (L2 weight decay added to the gradient, ``g ← g + wd·x``), default ``weight_decay=0``."""

    _decoupled = False

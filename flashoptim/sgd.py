"""FlashSGD and FlashSGDW: SGD with momentum, split master weights and a companded 8-bit buffer.

Update (fp32, identical to ``torch.optim.SGD`` for ``FlashSGD``)::

    FlashSGD:  d ← g + wd·x               FlashSGDW: x ← x (1 - lr·wd);  d ← g
    b ← d                         (first step)
    b ← μ b + (1 - dampening) d   (later steps)
    d ← d + μ b (nesterov)  or  d ← b
    x ← x - lr · d

Savings: with momentum, 2 + 1 + 2 + 1.0625 = 6.125 bytes/param (4.125 with gradient release);
without momentum no state at all.  Caveats: the momentum buffer is 8-bit (one quantisation level of
error per step); ``nesterov`` needs ``momentum > 0`` and ``dampening = 0`` as in torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from flashoptim.optimizer import FlashOptimizer, StateSpec, _check_range

__all__ = ["FlashSGD", "FlashSGDW"]


class _FlashSGDBase(FlashOptimizer):
    _decoupled = False
    _fused_kind = "sgd"

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        master_weight_bits: int | None = 24,
        quantize_states: bool = True,
        compander: str = "paper",
        learned_refit_every: int = 100,
        backend: str = "auto",
        compress_state_dict: bool = True,
    ) -> None:
        _check_range("momentum", float(momentum), 0.0, 1.0, hi_open=True)
        _check_range("dampening", float(dampening), 0.0, 1.0)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening = 0")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
        }
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
        return (("momentum_buffer", True, 1),) if group["momentum"] != 0 else ()

    def _reference_update(
        self,
        master: torch.Tensor,
        grad: torch.Tensor,
        states: dict[str, torch.Tensor],
        group: dict[str, Any],
        step: int,
    ) -> None:
        lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
        d = grad
        if wd != 0:
            if self._decoupled:
                master.mul_(1 - lr * wd)
            else:
                d = d.add(master, alpha=wd)
        if mu != 0:
            buf = states["momentum_buffer"]
            if step == 1:
                buf.copy_(d)
            else:
                buf.mul_(mu).add_(d, alpha=1 - group["dampening"])
            d = d.add(buf, alpha=mu) if group["nesterov"] else buf
        master.add_(d, alpha=-lr)


class FlashSGD(_FlashSGDBase):
    """SGD with L2 weight decay in the gradient, as ``torch.optim.SGD``."""

    _decoupled = False


class FlashSGDW(_FlashSGDBase):
    """SGD with decoupled weight decay (``x ← x(1 - lr·wd)``)."""

    _decoupled = True

"""The torch (non-Triton) step of many parameters at once: the reference path, batched.

:meth:`FlashOptimizer._reference_step` steps one parameter with about a hundred small tensor ops
(reconstruct the master, decode two states, update, split, encode).  On a CPU model of small
tensors the fixed cost of each op dominates: a step of the smoke model's 21 tensors cost 16.7x
torch AdamW's (flashoptim/BENCHMARKS.md).  Every operation of the reference is elementwise or per
quantisation group of 32 values, so the same operations on the concatenation of many parameters
give the same bits, provided each parameter starts a new group: :func:`reference_step_many` pads
each parameter to a multiple of 32 values with zeros (exactly the padding
:func:`flashoptim.quantization.quantize_groups` applies to a lone tensor), runs the algorithm's
``_reference_update`` once over the concatenation and scatters the results back.

Parameters are batched when they share the step count, dtype, correction dtype, device and
companders; the ``learned`` compander (refitted per tensor) and tensor subclasses (DTensor) take the
per-parameter reference path.  Bit-identity with the per-parameter path is tested in
``tests/flashoptim/test_cpu_step.py``.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from flashoptim.companders import Compander
from flashoptim.master_weights import reconstruct_master, split_master
from flashoptim.quantization import GROUP_SIZE, dequantize_groups, num_groups, quantize_groups


class Stepper(Protocol):
    """What this module reads of :class:`flashoptim.optimizer.FlashOptimizer` (a protocol, so that
    the optimizer module, which imports this one, is not imported back)."""

    compander: str
    quantize_states: bool

    def _state_specs(self, group: dict[str, Any]) -> tuple[tuple[str, bool, int], ...]: ...

    def _reference_update(
        self,
        master: torch.Tensor,
        grad: torch.Tensor,
        states: dict[str, torch.Tensor],
        group: dict[str, Any],
        step: int,
    ) -> None: ...


__all__ = ["batch_key", "reference_step_many"]

_SIXTEEN_BIT = (torch.bfloat16, torch.float16)


def batch_key(opt: Stepper, p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> Any:
    """Parameters of equal key may be stepped together; None: this one takes the per-parameter path."""
    if type(p) not in (torch.Tensor, torch.nn.Parameter) or opt.compander == "learned":
        return None
    code = state.get("correction")
    comps: tuple[tuple[float, ...], ...] = ()
    if opt.quantize_states:
        comps = tuple(
            tuple(state[f"{name}_compander"].tolist()) for name, _signed, _root in opt._state_specs(group)
        )
    return (
        state["step"],
        p.dtype,
        None if code is None else code.dtype,
        p.device,
        comps,
    )


def _cat(pieces: list[torch.Tensor], pads: list[int]) -> torch.Tensor:
    """Flat concatenation of ``pieces`` with ``pads[i]`` zeros after piece ``i`` (always a new tensor)."""
    parts: list[torch.Tensor] = []
    for t, pad in zip(pieces, pads):
        parts.append(t.view(-1) if t.is_contiguous() else t.reshape(-1))
        if pad:
            parts.append(t.new_zeros(pad))
    return torch.cat(parts)


@torch.no_grad()
def reference_step_many(
    opt: Stepper, params: list[torch.Tensor], states: list[dict[str, Any]], group: dict[str, Any]
) -> None:
    """One reference step of ``params`` (equal :func:`batch_key`, steps already incremented)."""
    step = states[0]["step"]
    numels = [p.numel() for p in params]
    pads = [(-n) % GROUP_SIZE for n in numels]
    sizes = [n + pad for n, pad in zip(numels, pads)]
    ngroups = [num_groups(n) for n in numels]
    sixteen = params[0].dtype in _SIXTEEN_BIT
    codes = [s.get("correction") for s in states]
    flat_p = _cat([p.detach() for p in params], pads)
    if sixteen:
        flat_code = _cat([c for c in codes if c is not None], pads) if codes[0] is not None else None
        master = reconstruct_master(flat_p, flat_code)
    else:
        master = flat_p  # an fp32 param is its own master (flat_p is a copy)
    grads = [p.grad.detach() for p in params if p.grad is not None]
    assert len(grads) == len(params)
    grad = _cat(grads, pads)
    grad = grad.float() if grad.dtype != torch.float32 else grad
    specs = opt._state_specs(group)
    values: dict[str, torch.Tensor] = {}
    comps: dict[str, Compander] = {}
    for name, signed, root in specs:
        if opt.quantize_states:
            comps[name] = Compander.from_tensor(states[0][f"{name}_compander"])
            values[name] = dequantize_groups(
                _cat([s[f"{name}_codes"] for s in states], pads),
                torch.cat([s[f"{name}_scales"] for s in states]),
                comps[name],
                signed=signed,
                scale_root=root,
            )
        else:
            values[name] = _cat([s[name] for s in states], pads)
    opt._reference_update(master, grad, values, group, step)

    pad_slices = []
    offset = 0
    for n, size in zip(numels, sizes):
        if size > n:
            pad_slices.append(slice(offset + n, offset + size))
        offset += size
    if sixteen:
        new_p, new_code = split_master(master, params[0].dtype, None if codes[0] is None else codes[0].dtype)
        _scatter(new_p, sizes, numels, [p.detach() for p in params])
        if new_code is not None:
            _scatter(new_code, sizes, numels, [c for c in codes if c is not None])
    else:
        _scatter(master, sizes, numels, [p.detach() for p in params])
    for name, signed, root in specs:
        value = values[name]
        for sl in pad_slices:  # an update rule that moved the padding must not move a group's absmax
            value[sl] = 0.0
        if opt.quantize_states:
            q, scales = quantize_groups(value, comps[name], signed=signed, scale_root=root)
            _scatter(q, sizes, numels, [s[f"{name}_codes"] for s in states])
            _scatter(scales, ngroups, ngroups, [s[f"{name}_scales"] for s in states])
        else:
            _scatter(value, sizes, numels, [s[name] for s in states])


def _scatter(flat: torch.Tensor, sizes: list[int], numels: list[int], dests: list[torch.Tensor]) -> None:
    """Copy consecutive ``sizes[i]``-long pieces of ``flat`` (their first ``numels[i]`` values) into ``dests``."""
    split: list[int] = []
    for n, size in zip(numels, sizes):
        split += (n, size - n) if size > n else (n,)
    pieces = iter(torch.split(flat, split))
    for n, size, dest in zip(numels, sizes, dests):
        piece = next(pieces)
        if size > n:
            next(pieces)  # the padding
        if dest.is_contiguous():
            dest.view(-1).copy_(piece)
        else:
            dest.copy_(piece.view(dest.shape))

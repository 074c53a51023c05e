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

from dataclasses import dataclass
from typing import Any, Protocol

import torch

from flashoptim import cpu_fused
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


__all__ = ["CHUNK_NUMEL", "batch_key", "reference_step_many"]

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


# Values stepped per pass. Every pass allocates fp32 temporaries of the chunk's size: at 2^20 values
# (4 MiB) they come back from the allocator's free lists warm in cache, where a whole 21M-parameter
# group (84 MB temporaries, above glibc's 32 MiB mmap ceiling) was mapped, page-faulted in and
# unmapped again on every one of ~70 passes (flashoptim/BENCHMARKS.md, "CPU path").
CHUNK_NUMEL = 1 << 20


@dataclass
class _Piece:
    """One parameter, or a slice of it starting at a group boundary, and its state tensors alike."""

    p: torch.Tensor
    grad: torch.Tensor
    code: torch.Tensor | None
    states: dict[str, torch.Tensor]  # name -> fp32 values, or name_codes / name_scales
    numel: int


def _pieces(opt: Stepper, p: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> list[_Piece]:
    """``p`` whole, or cut into runs of at most :data:`CHUNK_NUMEL` values at multiples of the group
    size (each slice's scales are its own groups), when it is larger and everything is contiguous."""
    assert p.grad is not None
    pd, grad, code = p.detach(), p.grad.detach(), state.get("correction")
    keys = [k for name, _s, _r in opt._state_specs(group) for k in _state_keys(opt, name)]
    n = pd.numel()
    flat = [pd, grad, *([code] if code is not None else []), *(state[k] for k in keys)]
    if n <= CHUNK_NUMEL or not all(t.is_contiguous() for t in flat):
        return [_Piece(pd, grad, code, {k: state[k] for k in keys}, n)]
    step = CHUNK_NUMEL - CHUNK_NUMEL % GROUP_SIZE
    out = []
    for a in range(0, n, step):
        b = min(a + step, n)
        ga, gb = a // GROUP_SIZE, num_groups(b)
        sliced = {
            k: state[k].view(-1)[ga:gb] if k.endswith("_scales") else state[k].view(-1)[a:b] for k in keys
        }
        c = code.view(-1)[a:b] if code is not None else None
        out.append(_Piece(pd.view(-1)[a:b], grad.view(-1)[a:b], c, sliced, b - a))
    return out


def _state_keys(opt: Stepper, name: str) -> tuple[str, ...]:
    return (f"{name}_codes", f"{name}_scales") if opt.quantize_states else (name,)


@torch.no_grad()
def reference_step_many(
    opt: Stepper, params: list[torch.Tensor], states: list[dict[str, Any]], group: dict[str, Any]
) -> None:
    """One reference step of ``params`` (equal :func:`batch_key`, steps already incremented), in
    passes over at most :data:`CHUNK_NUMEL` values (plus one parameter's padding)."""
    step = states[0]["step"]
    comps: dict[str, Compander] = {}
    if opt.quantize_states:
        for name, _signed, _root in opt._state_specs(group):
            comps[name] = Compander.from_tensor(states[0][f"{name}_compander"])
    if cpu_fused.supported(opt, params, states, comps):  # one compiled loop per parameter, same bits
        fits = [cpu_fused.eligible(p, s) for p, s in zip(params, states)]
        if any(fits):
            pick = [(p, s) for p, s, ok in zip(params, states, fits) if ok]
            cpu_fused.fused_adamw_step(opt, [p for p, _ in pick], [s for _, s in pick], group, comps)
            params = [p for p, ok in zip(params, fits) if not ok]
            states = [s for s, ok in zip(states, fits) if not ok]
            if not params:
                return
    batch: list[_Piece] = []
    size = 0
    for p, state in zip(params, states):
        for piece in _pieces(opt, p, state, group):
            if batch and size + piece.numel > CHUNK_NUMEL:
                _step_pieces(opt, batch, comps, group, step)
                batch, size = [], 0
            batch.append(piece)
            size += piece.numel
    if batch:
        _step_pieces(opt, batch, comps, group, step)


def _step_pieces(
    opt: Stepper, pieces: list[_Piece], comps: dict[str, Compander], group: dict[str, Any], step: int
) -> None:
    """The reference step over the concatenation of ``pieces``, each padded to whole groups."""
    numels = [x.numel for x in pieces]
    pads = [(-n) % GROUP_SIZE for n in numels]
    sizes = [n + pad for n, pad in zip(numels, pads)]
    ngroups = [num_groups(n) for n in numels]
    dtype = pieces[0].p.dtype
    sixteen = dtype in _SIXTEEN_BIT
    codes = [x.code for x in pieces]
    flat_p = _cat([x.p for x in pieces], pads)
    if sixteen:
        flat_code = _cat([c for c in codes if c is not None], pads) if codes[0] is not None else None
        master = reconstruct_master(flat_p, flat_code)
    else:
        master = flat_p  # an fp32 param is its own master (flat_p is a copy)
    grad = _cat([x.grad for x in pieces], pads)
    grad = grad.float() if grad.dtype != torch.float32 else grad
    specs = opt._state_specs(group)
    values: dict[str, torch.Tensor] = {}
    for name, signed, root in specs:
        if opt.quantize_states:
            values[name] = dequantize_groups(
                _cat([x.states[f"{name}_codes"] for x in pieces], pads),
                torch.cat([x.states[f"{name}_scales"] for x in pieces]),
                comps[name],
                signed=signed,
                scale_root=root,
            )
        else:
            values[name] = _cat([x.states[name] for x in pieces], pads)
    opt._reference_update(master, grad, values, group, step)

    pad_slices = []
    offset = 0
    for n, size in zip(numels, sizes):
        if size > n:
            pad_slices.append(slice(offset + n, offset + size))
        offset += size
    if sixteen:
        new_p, new_code = split_master(master, dtype, None if codes[0] is None else codes[0].dtype)
        _scatter(new_p, sizes, numels, [x.p for x in pieces])
        if new_code is not None:
            _scatter(new_code, sizes, numels, [c for c in codes if c is not None])
    else:
        _scatter(master, sizes, numels, [x.p for x in pieces])
    for name, signed, root in specs:
        value = values[name]
        for sl in pad_slices:  # an update rule that moved the padding must not move a group's absmax
            value[sl] = 0.0
        if opt.quantize_states:
            q, scales = quantize_groups(value, comps[name], signed=signed, scale_root=root)
            _scatter(q, sizes, numels, [x.states[f"{name}_codes"] for x in pieces])
            _scatter(scales, ngroups, ngroups, [x.states[f"{name}_scales"] for x in pieces])
        else:
            _scatter(value, sizes, numels, [x.states[name] for x in pieces])


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

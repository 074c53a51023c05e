"""Group-wise 8-bit quantisation of optimizer states (32 values per group, one fp16 scale per group).

Layout of one quantised state of ``n`` values (``n`` = the parameter's numel, any shape):

* ``codes``:  ``(n,)`` int8 (signed state, ``Q = 127``) or uint8 (unsigned state, ``Q = 255``),
  flattened in the parameter's row-major order, no padding;
* ``scales``: ``(ceil(n / 32),)`` fp16, one per group of 32 consecutive values (the last group may be
  shorter).

Encode a group ``x``: ``s = absmax(x)``; ``y = clamp(x / s, -1, 1)``; ``q = round(f(y) · Q)`` with
compander ``f`` (see :mod:`flashoptim.companders`).  Decode: ``x̂ = f⁻¹(q / Q) · s``.  Resident cost:
``1 + 2/32 = 1.0625`` bytes per value.

Two hazards, handled here and in the fused kernel alike:

* fp16 range.  A second moment ``v`` is a squared gradient (often < 1e-8, under fp16's smallest
  subnormal 6e-8), so an unsigned state stores ``sqrt(absmax)`` as its fp16 scale and squares it
  back (``scale_root = 2``); a nonzero absmax whose fp16 scale would underflow is stored as the
  smallest fp16 subnormal instead of zero.  ``y`` is clamped, so a scale rounded down by fp16 costs
  at most one rounding of the largest value, never an overflowing code.
* A positive second moment never gets code 0: Adam divides by ``sqrt(v̂) + eps``, and a small
  ``v`` rounded to zero next to a nonzero ``m`` would make an update of ``m / eps``.  Positive values
  in the lowest bin take code 1 (an overestimate of ``v``: a smaller, safe step).

Error bound (per value, before the compander's distortion): ``|q/Q - f(y)| <= 1/(2Q)``, one half
quantisation level in the companded domain; the value error is that times ``s · max|(f⁻¹)'|``.
"""

from __future__ import annotations

import torch

from flashoptim.companders import Compander

__all__ = [
    "GROUP_SIZE",
    "dequantize_groups",
    "num_groups",
    "quantize_groups",
    "rel_l2_error",
]

GROUP_SIZE = 32
FP16_TINY = 2.0**-24  # smallest positive fp16 subnormal


def num_groups(numel: int) -> int:
    return (numel + GROUP_SIZE - 1) // GROUP_SIZE


def _grouped(x: torch.Tensor) -> torch.Tensor:
    """Flatten to fp32 and zero-pad to whole groups: ``(groups, 32)``."""
    flat = x.reshape(-1).float()
    pad = (-flat.numel()) % GROUP_SIZE
    if pad:
        flat = torch.nn.functional.pad(flat, (0, pad))
    return flat.view(-1, GROUP_SIZE)


def quantize_groups(
    x: torch.Tensor, compander: Compander, *, signed: bool, scale_root: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode ``x`` (any shape, any float dtype) into ``(codes, scales)`` as laid out above."""
    n = x.numel()
    if n == 0:
        return (
            torch.empty(0, dtype=torch.int8 if signed else torch.uint8, device=x.device),
            torch.empty(0, dtype=torch.float16, device=x.device),
        )
    xg = _grouped(x)  # may be ``x`` itself: not modified below
    # max |x| per group as max(max x, -min x): two reductions, no |x| temporary (half the CPU time
    # of abs().amax(); torch.aminmax is slower than both on CPU). The final abs_ (on the groups, 1/32
    # of the values) makes an all-zero group's absmax +0.0, as amax(|x|) is; NaN propagates alike.
    absmax = torch.maximum(xg.amax(dim=1), xg.amin(dim=1).neg_()).abs_()
    stored = absmax.sqrt() if scale_root == 2 else absmax
    scales = stored.to(torch.float16)
    scales = torch.where((absmax > 0) & (scales == 0), torch.full_like(scales, FP16_TINY), scales)
    eff = scales.float()
    if scale_root == 2:
        eff = eff * eff
    safe = torch.where(eff > 0, eff, torch.ones_like(eff))
    lo = -1.0 if signed else 0.0
    y = (xg / safe[:, None]).clamp_(lo, 1.0)
    qmax = 127.0 if signed else 255.0
    q = (
        compander.forward_(y, nonnegative=not signed).mul_(qmax).round_()
    )  # y is a temporary: companded in place
    if not signed:  # see module docstring: v > 0 never decodes to 0
        # max(q, sign(x)): q >= 1 where x > 0; where x <= 0, q is 0 and stays 0 (NaN stays NaN)
        q = torch.maximum(q, xg.sign(), out=q)
    codes = q.to(torch.int8 if signed else torch.uint8).reshape(-1)[:n]
    return codes, scales


def dequantize_groups(
    codes: torch.Tensor,
    scales: torch.Tensor,
    compander: Compander,
    *,
    signed: bool,
    scale_root: int = 1,
    shape: torch.Size | tuple[int, ...] | None = None,
) -> torch.Tensor:
    """Decode ``(codes, scales)`` back to fp32 of ``shape`` (default: flat)."""
    n = codes.numel()
    out_shape = tuple(shape) if shape is not None else (n,)
    if n == 0:
        return torch.zeros(out_shape, dtype=torch.float32, device=codes.device)
    qg = _grouped(codes)
    qmax = 127.0 if signed else 255.0
    eff = scales.float()
    if scale_root == 2:
        eff = eff * eff
    z = qg.div_(qmax) if codes.dtype != torch.float32 else qg / qmax  # in place on _grouped's copy
    x = compander.inverse_(z, nonnegative=not signed).mul_(eff[:, None])
    return x.reshape(-1)[:n].reshape(out_shape)


def rel_l2_error(approx: torch.Tensor, exact: torch.Tensor) -> float:
    """``||approx - exact||_2 / ||exact||_2`` in float64 (0 when both are zero)."""
    a = approx.double().reshape(-1)
    e = exact.double().reshape(-1)
    denom = torch.linalg.vector_norm(e)
    num = torch.linalg.vector_norm(a - e)
    if float(denom) == 0.0:
        return 0.0 if float(num) == 0.0 else float("inf")
    return float(num / denom)

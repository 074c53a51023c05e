"""Master weight splitting: an fp32 master value kept as a 16-bit parameter plus an integer correction.

Let ``x`` be the fp32 master value and ``p = rne16(x)`` its round-to-nearest-even bf16 (or fp16) copy,
the tensor the model computes with.  The rounding error ``e = x - p`` satisfies ``|e| <= ULP(p)/2``,
where ``ULP(p)`` is the spacing of the 16-bit format in ``p``'s binade (``2^(E-7)`` for a bf16 of
exponent ``E``; the subnormal spacing for zero and subnormal ``p``).  The correction stores ``e`` as a
signed fraction of that half-ULP::

    code = round(e / (ULP(p)/2) · Q),   Q = 127 (int8, "24-bit" master)  or  32767 (int16, "32-bit")
    x̂    = p + code / Q · ULP(p)/2

Error bound (proved by the rounding of ``code`` to the nearest integer, plus one fp32 rounding of
the reconstruction (the last three terms); tested with hypothesis in ``tests/flashoptim/test_master_weights.py``)::

    |x̂ - x| <= ULP(p) / (4 Q) · (1 + 2^-12)  +  ULP(p) · 2^-22  +  2^-24 |x|  +  2^-149

i.e. for bf16 params, about ``2^-16 |x|`` with int8 (16 significant bits, versus bf16's 8) and fp32
precision with int16.  Because ``p`` is ``x`` rounded to nearest, an update smaller than half a
bf16 ULP still moves ``x̂`` and is not lost, which is the point of the method.

Non-finite values: an inf or nan ``x`` gives ``p = x`` (as ``x.to(bfloat16)`` does) and code 0, and
reconstructs to ``p``; a finite ``x`` beyond the 16-bit range rounds to ``±inf`` as torch's cast does.
"""

from __future__ import annotations

import torch

__all__ = [
    "CORRECTION_DTYPES",
    "correction_levels",
    "reconstruct_master",
    "reconstruction_error_bound",
    "split_master",
    "ulp16",
]

CORRECTION_DTYPES = {24: torch.int8, 32: torch.int16}
_LEVELS = {torch.int8: 127.0, torch.int16: 32767.0}
# (exponent mask, mantissa bits, exponent bias) of the 16-bit formats
_FORMATS = {torch.bfloat16: (0x7F80, 7, 127), torch.float16: (0x7C00, 10, 15)}


def correction_levels(dtype: torch.dtype) -> float:
    """``Q``: the code of a correction equal to +ULP/2."""
    return _LEVELS[dtype]


def _ulp16_times(p: torch.Tensor, factor: float) -> torch.Tensor:
    """``ULP(p) * factor`` in fp32 (a new tensor), rounded once as ``ulp16(p) * factor`` is.

    The 16-bit exponent field, clamped to the normal range, is moved into an fp32 exponent: that is
    ``2^(E - bias)`` exactly; ``ULP = 2^(E - bias) * 2^-mant_bits`` and ``factor`` are folded into
    one constant (a power of two times ``factor`` rounds to fp32 as ``factor`` does), so the one
    multiplication rounds the same real number as ``(exact ULP) * factor``.  Five passes instead of
    the dozen the bit-by-bit construction took: the CPU path calls this twice per step.
    """
    mask, mant_bits, bias = _FORMATS[p.dtype]
    unit = 1 << mant_bits
    bits = p.view(torch.int16).to(torch.int32).bitwise_and_(mask).clamp_(unit, mask - unit)
    if bias != 127:
        bits.add_((127 - bias) * unit)
    bits.bitwise_left_shift_(23 - mant_bits)
    return bits.view(torch.float32).mul_(2.0**-mant_bits * factor)


def ulp16(p: torch.Tensor) -> torch.Tensor:
    """``ULP(p)`` in fp32: the 16-bit format's spacing in the binade of ``p`` (exact powers of two).

    Zero and subnormal ``p`` get the subnormal spacing; inf/nan get the spacing of the top binade
    (finite, so a zero code times it stays zero).  Subnormal fp32 results (bf16 binades below
    ``2^-119``) need gradual underflow: ``torch.set_flush_denormal(True)`` is not supported.
    """
    return _ulp16_times(p, 1.0)


def split_master(
    x: torch.Tensor, param_dtype: torch.dtype, correction_dtype: torch.dtype | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split fp32 ``x`` into ``(p, code)``: ``p`` in ``param_dtype``, ``code`` in ``correction_dtype``."""
    x = x.float()
    p = x.to(param_dtype)
    if correction_dtype is None:
        return p, None
    levels = _LEVELS[correction_dtype]
    # err = x - p, exact: x and p share a binade (or p is the nearer power of two); -p + x rounds alike
    ratio = p.float().neg_().add_(x).div_(_ulp16_times(p, 0.5))
    code = ratio.mul_(levels).round_().clamp_(-levels, levels)
    code.nan_to_num_(nan=0.0)  # inf - inf; after the clamp NaN is the only non-finite value left
    return p, code.to(correction_dtype)


def reconstruct_master(p: torch.Tensor, code: torch.Tensor | None) -> torch.Tensor:
    """``x̂ = p + code / Q · ULP(p)/2`` in fp32 (``p.float()`` when there is no correction)."""
    pf = p.float()
    if code is None:
        return pf
    levels = _LEVELS[code.dtype]
    return code.float().mul_(_ulp16_times(p, 0.5 / levels)).add_(pf)


def reconstruction_error_bound(
    p: torch.Tensor, correction_dtype: torch.dtype, x: torch.Tensor
) -> torch.Tensor:
    """The docstring's bound on ``|x̂ - x|``, elementwise in fp64."""
    levels = _LEVELS[correction_dtype]
    ulp = ulp16(p).double()
    return ulp / (4 * levels) * (1 + 2.0**-12) + ulp * 2.0**-22 + 2.0**-24 * x.double().abs() + 2.0**-149

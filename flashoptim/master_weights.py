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


def ulp16(p: torch.Tensor) -> torch.Tensor:
    """``ULP(p)`` in fp32: the 16-bit format's spacing in the binade of ``p`` (exact powers of two).

    Zero and subnormal ``p`` get the subnormal spacing; inf/nan get the spacing of the top binade
    (finite, so a zero code times it stays zero).
    """
    mask, mant_bits, bias = _FORMATS[p.dtype]
    shift = mant_bits
    exp_field = (p.view(torch.int16).to(torch.int32) & mask) >> shift
    max_field = mask >> shift
    exp_field = exp_field.clamp(1, max_field - 1)
    # ULP = 2^(E - bias - mant_bits); built from fp32 bits so it is exact, subnormal results included
    e2 = exp_field - bias - mant_bits
    normal_bits = (e2 + 127) << 23
    sub_bits = torch.ones_like(e2) << (e2 + 149).clamp(0, 30)
    bits = torch.where(e2 >= -126, normal_bits, sub_bits)
    return bits.view(torch.float32)


def split_master(
    x: torch.Tensor, param_dtype: torch.dtype, correction_dtype: torch.dtype | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split fp32 ``x`` into ``(p, code)``: ``p`` in ``param_dtype``, ``code`` in ``correction_dtype``."""
    x = x.float()
    p = x.to(param_dtype)
    if correction_dtype is None:
        return p, None
    levels = _LEVELS[correction_dtype]
    err = x - p.float()  # exact: x and p share a binade (or p is the nearer power of two)
    half_ulp = ulp16(p) * 0.5
    ratio = err / half_ulp
    code = torch.round(ratio * levels).clamp(-levels, levels)
    code = torch.where(torch.isfinite(code), code, torch.zeros_like(code))
    return p, code.to(correction_dtype)


def reconstruct_master(p: torch.Tensor, code: torch.Tensor | None) -> torch.Tensor:
    """``x̂ = p + code / Q · ULP(p)/2`` in fp32 (``p.float()`` when there is no correction)."""
    pf = p.float()
    if code is None:
        return pf
    levels = _LEVELS[code.dtype]
    return pf + code.float() * (ulp16(p) * (0.5 / levels))


def reconstruction_error_bound(
    p: torch.Tensor, correction_dtype: torch.dtype, x: torch.Tensor
) -> torch.Tensor:
    """The docstring's bound on ``|x̂ - x|``, elementwise in fp64."""
    levels = _LEVELS[correction_dtype]
    ulp = ulp16(p).double()
    return ulp / (4 * levels) * (1 + 2.0**-12) + ulp * 2.0**-22 + 2.0**-24 * x.double().abs() + 2.0**-149

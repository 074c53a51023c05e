# mypy: disable-error-code="no-untyped-def,untyped-decorator"
"""One fused Triton kernel for the Flash optimizer updates (Adam/AdamW, SGD/SGDW, Lion).

One pass over a parameter: read the 16-bit param, its correction, the grad, the 8-bit state codes
and their fp16 group scales; write the param, correction, codes and scales back.  Every value is
read once and written once (12 bytes/param for 24-bit AdamW with bf16 grads, scales included:
2+1+2+1+1 read, 2+1+1+1 written, plus 4×2/32 for scales).

A program handles ``GROUPS`` quantisation groups of 32 as a ``(GROUPS, 32)`` tile: the group absmax
is a row reduction in registers, so no second pass over the state is needed.  The maths mirrors the
torch reference line for line (see :mod:`flashoptim.master_weights`, :mod:`flashoptim.quantization`,
:mod:`flashoptim.adam`); differences are rounding only (FMA contraction, approximate division and
sqrt), which is why backend agreement is specified as "off by one code / one level / one bf16 ULP"
above an fp32 floor (tests/flashoptim/test_gpu_agreement.py).
"""

from __future__ import annotations

import triton
import triton.language as tl

ALGO_ADAM, ALGO_SGD, ALGO_LION = 0, 1, 2
COMPANDER_LINEAR, COMPANDER_PAPER = 0, 1


@triton.jit
def _biased_round(x):
    """``x + 1.5·2^23``: a float whose low mantissa bits hold ``rint(x)`` (|x| < 2^22, two's complement).

    Truncating its bits to int8/int16 yields the rounded code with no float-to-int conversion
    (conversions run at 1/8 of the FP32 rate on Hopper and this kernel does several per value).
    """
    return x + 12582912.0


@triton.jit
def _code_to_float(q):
    """Exact int8/uint8/int16 -> fp32 by the same bias, with no int-to-float conversion."""
    return (q.to(tl.int32) + 0x4B400000).to(tl.float32, bitcast=True) - 12582912.0


@triton.jit
def _to_bf16_rne(x):
    """fp32 -> bf16, round to nearest even, by integer ops (nan -> canonical quiet nan).

    Same bits as torch's cast and the GPU's cvt.rn.bf16.f32; written out because the interpreter's
    own cast truncates, which would make the CPU logic tests compare a different rounding.
    """
    u = x.to(tl.uint32, bitcast=True)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    r = tl.where(x != x, 0x7FC0, r)
    return r.to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def _ulp_bf16(p):
    """ULP of bf16 ``p`` as an exact fp32 power of two (see master_weights.ulp16)."""
    e = (p.to(tl.int16, bitcast=True).to(tl.int32) & 0x7F80) >> 7
    e = tl.minimum(tl.maximum(e, 1), 254)
    e2 = e - 134
    normal = (e2 + 127) << 23
    sub = 1 << tl.minimum(tl.maximum(e2 + 149, 0), 30)
    return tl.where(e2 >= -126, normal, sub).to(tl.float32, bitcast=True)


@triton.jit
def _sqrt(x, FAST: tl.constexpr):
    if FAST:
        return tl.sqrt(x)  # sqrt.approx: within 1-2 fp32 ULP, far cheaper than the IEEE sequence
    else:
        return tl.sqrt_rn(x)


@triton.jit
def _decode_signed(q_ptr, s_ptr, offs, gidx, mask, gmask, COMPANDER: tl.constexpr):
    q = _code_to_float(tl.load(q_ptr + offs, mask=mask, other=0))
    s = tl.load(s_ptr + gidx, mask=gmask, other=0.0).to(tl.float32)
    z = q * (1.0 / 127.0)
    if COMPANDER == 1:
        z = z / (2.0 - tl.abs(z))  # inverse softsign
    return z * s[:, None]


@triton.jit
def _encode_signed(x, q_ptr, s_ptr, offs, gidx, mask, gmask, COMPANDER: tl.constexpr):
    absmax = tl.max(tl.abs(x), axis=1)
    s16 = absmax.to(tl.float16)
    s16 = tl.where((absmax > 0) & (s16 == 0), 5.960464477539063e-08, s16.to(tl.float32)).to(tl.float16)
    eff = s16.to(tl.float32)
    inv = 1.0 / tl.where(eff > 0, eff, 1.0)  # one division per group of 32
    y = x * inv[:, None]
    y = tl.minimum(tl.maximum(y, -1.0), 1.0)
    if COMPANDER == 1:
        y = 2.0 * y / (1.0 + tl.abs(y))  # softsign
    q = _biased_round(y * 127.0)
    tl.store(q_ptr + offs, q.to(tl.int32, bitcast=True).to(tl.int8), mask=mask)
    tl.store(s_ptr + gidx, s16, mask=gmask)


@triton.jit
def _decode_unsigned(q_ptr, s_ptr, offs, gidx, mask, gmask, COMPANDER: tl.constexpr):
    q = _code_to_float(tl.load(q_ptr + offs, mask=mask, other=0))
    s = tl.load(s_ptr + gidx, mask=gmask, other=0.0).to(tl.float32)
    z = q * (1.0 / 255.0)
    if COMPANDER == 1:
        z = z * z  # inverse sqrt
    return z * (s * s)[:, None]


@triton.jit
def _encode_unsigned(x, q_ptr, s_ptr, offs, gidx, mask, gmask, COMPANDER: tl.constexpr, FAST: tl.constexpr):
    absmax = tl.max(x, axis=1)  # x >= 0
    s16 = tl.sqrt_rn(absmax).to(tl.float16)
    s16 = tl.where((absmax > 0) & (s16 == 0), 5.960464477539063e-08, s16.to(tl.float32)).to(tl.float16)
    eff = s16.to(tl.float32)
    eff = eff * eff
    inv = 1.0 / tl.where(eff > 0, eff, 1.0)
    y = x * inv[:, None]
    y = tl.minimum(tl.maximum(y, 0.0), 1.0)
    if COMPANDER == 1:
        y = _sqrt(y, FAST)
    q = _biased_round(y * 255.0)
    q = tl.where(x > 0, tl.maximum(q, 12582913.0), q)  # v > 0 never gets code 0 (see quantization.py)
    tl.store(q_ptr + offs, q.to(tl.int32, bitcast=True).to(tl.uint8), mask=mask)
    tl.store(s_ptr + gidx, s16, mask=gmask)


@triton.jit
def flash_step_kernel(
    p_ptr,
    c_ptr,
    g_ptr,
    s1_ptr,
    s1s_ptr,
    s2_ptr,
    s2s_ptr,
    n,
    lr,
    decay,
    l2,
    beta1,
    beta2,
    one_minus_beta1,
    one_minus_beta2,
    eps,
    step_size,
    bc2_sqrt,
    one_minus_dampening,
    first_step,
    ALGO: tl.constexpr,
    HAS_CORR: tl.constexpr,
    CORR_LEVELS: tl.constexpr,
    HAS_STATE: tl.constexpr,
    COMPANDER: tl.constexpr,
    NESTEROV: tl.constexpr,
    P_IS_BF16: tl.constexpr,
    GROUPS: tl.constexpr,
    FAST: tl.constexpr = True,
    INTERPRET: tl.constexpr = False,
):
    """``one_minus_*`` come from the host in float64: ``1 - fp32(0.999)`` in fp32 is 1.3e-5 off
    ``0.001``, a bias of the second moment that made fused and reference steps differ visibly.
    ``decay`` = 1 - lr·wd (decoupled), ``l2`` = wd (coupled); Adam: ``step_size`` = lr/(1-β1ᵗ),
    ``bc2_sqrt`` = sqrt(1-β2ᵗ); SGD: ``beta1`` = momentum; Lion: ``beta1``, ``beta2`` as in Lion."""
    # 64-bit only in the per-program base; per-element offsets stay 32-bit (index maths is a real
    # share of this kernel's instructions)
    pid = tl.program_id(0).to(tl.int64)
    base = pid * (GROUPS * 32)
    p_ptr += base
    g_ptr += base
    if HAS_CORR:
        c_ptr += base
    if HAS_STATE:
        s1_ptr += base
        s1s_ptr += pid * GROUPS
    if ALGO == 0:
        s2_ptr += base
        s2s_ptr += pid * GROUPS
    remaining = tl.minimum(n - base, GROUPS * 32).to(tl.int32)
    gidx = tl.arange(0, GROUPS)
    offs = gidx[:, None] * 32 + tl.arange(0, 32)[None, :]
    mask = offs < remaining
    gmask = gidx * 32 < remaining

    p_raw = tl.load(p_ptr + offs, mask=mask, other=0.0)
    x = p_raw.to(tl.float32)
    if HAS_CORR:
        c = _code_to_float(tl.load(c_ptr + offs, mask=mask, other=0))
        x = x + c * (_ulp_bf16(p_raw) * (0.5 / CORR_LEVELS))
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)

    if ALGO == 0:  # Adam / AdamW
        m = _decode_signed(s1_ptr, s1s_ptr, offs, gidx, mask, gmask, COMPANDER)
        v = _decode_unsigned(s2_ptr, s2s_ptr, offs, gidx, mask, gmask, COMPANDER)
        x = x * decay
        if l2 != 0.0:
            g = g + l2 * x
        m = m + one_minus_beta1 * (g - m)
        v = v * beta2 + one_minus_beta2 * (g * g)
        denom = _sqrt(v, FAST) / bc2_sqrt + eps
        x = x - step_size * (m / denom)
        _encode_signed(m, s1_ptr, s1s_ptr, offs, gidx, mask, gmask, COMPANDER)
        _encode_unsigned(v, s2_ptr, s2s_ptr, offs, gidx, mask, gmask, COMPANDER, FAST)
    elif ALGO == 1:  # SGD / SGDW
        x = x * decay
        d = g
        if l2 != 0.0:
            d = g + l2 * x
        if HAS_STATE:
            b = _decode_signed(s1_ptr, s1s_ptr, offs, gidx, mask, gmask, COMPANDER)
            b = tl.where(first_step != 0, d, b * beta1 + one_minus_dampening * d)
            if NESTEROV:
                d = d + beta1 * b
            else:
                d = b
            _encode_signed(b, s1_ptr, s1s_ptr, offs, gidx, mask, gmask, COMPANDER)
        x = x - lr * d
    else:  # Lion
        m = _decode_signed(s1_ptr, s1s_ptr, offs, gidx, mask, gmask, COMPANDER)
        x = x * decay
        u = m * beta1 + one_minus_beta1 * g
        direction = tl.where(u > 0, 1.0, tl.where(u < 0, -1.0, 0.0))
        x = x - lr * direction
        m = m + one_minus_beta2 * (g - m)
        _encode_signed(m, s1_ptr, s1s_ptr, offs, gidx, mask, gmask, COMPANDER)

    if P_IS_BF16:
        if INTERPRET:
            p_new = _to_bf16_rne(x)  # the interpreter's own cast truncates
        else:
            p_new = x.to(tl.bfloat16)  # cvt.rn.bf16.f32: round to nearest even, as torch
        tl.store(p_ptr + offs, p_new, mask=mask)
        if HAS_CORR:
            err = x - p_new.to(tl.float32)
            ratio = err / (_ulp_bf16(p_new) * 0.5)
            ratio = tl.minimum(tl.maximum(ratio * CORR_LEVELS, -CORR_LEVELS), CORR_LEVELS)
            code = tl.where(ratio == ratio, _biased_round(ratio), 12582912.0)  # nan (inf/nan x) -> 0
            code = code.to(tl.int32, bitcast=True)
            if CORR_LEVELS == 127:
                tl.store(c_ptr + offs, code.to(tl.int8), mask=mask)
            else:
                tl.store(c_ptr + offs, code.to(tl.int16), mask=mask)
    else:
        tl.store(p_ptr + offs, x, mask=mask)

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
from triton.language.extra import libdevice

ALGO_ADAM, ALGO_SGD, ALGO_LION = 0, 1, 2
# Compander families as kernel constexprs: the ids of flashoptim.companders.FAMILY_IDS, plus SQRT,
# the power family at p = 1/2 (the paper's second-moment compander), which gets sqrt and a square
# instead of exp2/log2 because it is the default and must stay cheap.
FAM_LINEAR, FAM_SOFTSIGN, FAM_POWER, FAM_MULAW, FAM_SQRT = 0, 1, 2, 3, 4
# Param formats (constexpr P_DTYPE)
P_FP32, P_BF16, P_FP16 = 0, 1, 2


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
def _decode8(q, INTERPRET: tl.constexpr):
    """int8/uint8 codes -> exact fp32 values, four per register on the GPU (same values as
    ``_code_to_float``).

    The compiler's sequence is three instructions per value (sign-extending byte extract, the bias
    add, the float subtract).  Here one ``prmt`` writes the code byte under the bias's upper bytes
    (``0x4B4000cc``: the float ``1.5·2^23 + cc``), so a value costs the ``prmt`` and the subtract;
    a signed code is first offset by 128 with one ``xor`` per four codes (``cc = q + 128``).
    Other code widths (int16 corrections) and the interpreter take ``_code_to_float``."""
    if INTERPRET:
        return _code_to_float(q)
    elif q.dtype == tl.int8:
        return tl.inline_asm_elementwise(
            asm="""{
            .reg .b32 t, k;
            xor.b32 t, $4, 0x80808080;
            mov.b32 k, 0x4B400000;
            prmt.b32 $0, t, k, 0x7640;
            prmt.b32 $1, t, k, 0x7641;
            prmt.b32 $2, t, k, 0x7642;
            prmt.b32 $3, t, k, 0x7643;
            sub.f32 $0, $0, 0f4B400080;
            sub.f32 $1, $1, 0f4B400080;
            sub.f32 $2, $2, 0f4B400080;
            sub.f32 $3, $3, 0f4B400080;
            }""",
            constraints="=r,=r,=r,=r,r",
            args=[q],
            dtype=tl.float32,
            is_pure=True,
            pack=4,
        )
    elif q.dtype == tl.uint8:
        return tl.inline_asm_elementwise(
            asm="""{
            .reg .b32 k;
            mov.b32 k, 0x4B400000;
            prmt.b32 $0, $4, k, 0x7640;
            prmt.b32 $1, $4, k, 0x7641;
            prmt.b32 $2, $4, k, 0x7642;
            prmt.b32 $3, $4, k, 0x7643;
            sub.f32 $0, $0, 0f4B400000;
            sub.f32 $1, $1, 0f4B400000;
            sub.f32 $2, $2, 0f4B400000;
            sub.f32 $3, $3, 0f4B400000;
            }""",
            constraints="=r,=r,=r,=r,r",
            args=[q],
            dtype=tl.float32,
            is_pure=True,
            pack=4,
        )
    else:
        return _code_to_float(q)


@triton.jit
def _widen(x, INTERPRET: tl.constexpr):
    """A bf16 tile as fp32 (exact), two per register on the GPU: ``shl`` for the low half and one
    ``and`` for the high half (the compiler spends a ``prmt`` and a shift on the high half).
    Other dtypes: the plain cast."""
    if INTERPRET:
        return x.to(tl.float32)
    elif x.dtype == tl.bfloat16:
        return tl.inline_asm_elementwise(
            asm="""{
            shl.b32 $0, $2, 16;
            and.b32 $1, $2, 0xFFFF0000;
            }""",
            constraints="=r,=r,r",
            args=[x],
            dtype=tl.float32,
            is_pure=True,
            pack=2,
        )
    else:
        return x.to(tl.float32)


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
def _ulp16(p, P_DTYPE: tl.constexpr):
    """ULP of a bf16 or fp16 ``p`` as an exact fp32 power of two (see master_weights.ulp16).

    Zero and subnormal ``p`` get the subnormal spacing, inf/nan the top binade's (finite).
    """
    bits = p.to(tl.int16, bitcast=True).to(tl.int32)
    if P_DTYPE == 1:  # bf16: 8 exponent bits, 7 mantissa bits, bias 127
        e = tl.minimum(tl.maximum((bits & 0x7F80) >> 7, 1), 254)
        e2 = e - 134
        normal = (e2 + 127) << 23
        sub = 1 << tl.minimum(tl.maximum(e2 + 149, 0), 30)
        return tl.where(e2 >= -126, normal, sub).to(tl.float32, bitcast=True)
    else:  # fp16: 5 exponent bits, 10 mantissa bits, bias 15; its ULPs (>= 2^-24) are fp32 normals
        e = tl.minimum(tl.maximum((bits & 0x7C00) >> 10, 1), 30)
        return ((e - 25 + 127) << 23).to(tl.float32, bitcast=True)


@triton.jit
def _sqrt(x, FAST: tl.constexpr):
    if FAST:
        return tl.sqrt(x)  # sqrt.approx: within 1-2 fp32 ULP, far cheaper than the IEEE sequence
    else:
        return tl.sqrt_rn(x)


@triton.jit
def _div(a, b, FAST: tl.constexpr, INTERPRET: tl.constexpr):
    """``a / b``: on the GPU with FAST, ``div.approx`` (one reciprocal and one multiply, 2 ULP for
    ``|b|`` in [2^-126, 2^126]); Triton's ``/`` is ``div.full``, which adds a range check and two
    predicated scalings (about 6 instructions, the kernel's largest share once loads were vectorised).
    Every divisor here is in that range: ``1 + a|y|``, ``aux - a|z|``, ``sqrt(v)/bc2 + eps``, a group
    scale."""
    if FAST and not INTERPRET:
        return libdevice.fast_dividef(a, b)
    else:
        return a / b


@triton.jit
def _bf16_binade(pf):
    """``2^(E'-127)`` as fp32 bits for a bf16 value ``pf`` (given as fp32), ``E'`` its exponent field
    clamped to [1, 254] as :func:`flashoptim.master_weights.ulp16` clamps it: ``ULP(p) = 2^(E'-134)``.
    Three integer ops (the general ``_ulp16`` needs about twelve)."""
    eb = pf.to(tl.int32, bitcast=True) & 0x7F800000
    return tl.minimum(tl.maximum(eb, 0x00800000), 0x7F000000)


@triton.jit
def _log1p(t):
    """``log(1 + t)`` for ``t >= 0`` to a few fp32 ULP (Kahan's trick: no log1p in triton.language)."""
    u = 1.0 + t
    d = u - 1.0
    return tl.where(d == 0.0, t, tl.log(u) * (t / tl.where(d == 0.0, 1.0, d)))


@triton.jit
def _expm1(x):
    """``exp(x) - 1`` for ``x >= 0`` to a few fp32 ULP (Kahan's trick, the inverse of ``_log1p``)."""
    u = tl.exp(x)
    lu = tl.log(u)
    return tl.where(lu == 0.0, x, (u - 1.0) * (x / tl.where(lu == 0.0, 1.0, lu)))


@triton.jit
def _compand(y, FAM: tl.constexpr, a, aux, FAST: tl.constexpr, INTERPRET: tl.constexpr):
    """``z = f(y)`` of flashoptim.companders.Compander.forward, ``y`` in [-1, 1].

    Runtime ``a`` is the family's parameter and ``aux`` a host-computed constant of it, rounded to
    fp32 as torch rounds the same Python float: softsign ``1 + a``; mulaw ``log1p(a)``; power ``1/a``.
    """
    if FAM == 1:  # softsign
        return _div(aux * y, 1.0 + a * tl.abs(y), FAST, INTERPRET)
    elif FAM == 4:  # sqrt
        r = _sqrt(tl.abs(y), FAST)
        return tl.where(y < 0, -r, r)
    elif FAM == 2:  # power |y|^a, as exp2(a log2|y|)
        ay = tl.abs(y)
        r = tl.where(ay > 0, tl.exp2(a * tl.log2(tl.where(ay > 0, ay, 1.0))), 0.0)
        return tl.where(y < 0, -r, r)
    elif FAM == 3:  # mu-law
        r = _log1p(a * tl.abs(y)) / aux
        return tl.where(y < 0, -r, r)
    else:  # linear
        return y


@triton.jit
def _expand(z, FAM: tl.constexpr, a, aux, FAST: tl.constexpr, INTERPRET: tl.constexpr):
    """``y = f⁻¹(z)`` of flashoptim.companders.Compander.inverse (see ``_compand`` for ``aux``)."""
    if FAM == 1:  # softsign
        return _div(z, aux - a * tl.abs(z), FAST, INTERPRET)
    elif FAM == 4:  # sqrt: square, keeping the sign
        return z * tl.abs(z)
    elif FAM == 2:  # power: |z|^(1/a)
        az = tl.abs(z)
        r = tl.where(az > 0, tl.exp2(aux * tl.log2(tl.where(az > 0, az, 1.0))), 0.0)
        return tl.where(z < 0, -r, r)
    elif FAM == 3:  # mu-law
        r = _expm1(tl.abs(z) * aux) / a
        return tl.where(z < 0, -r, r)
    else:
        return z


@triton.jit
def _ld(ptr, offs, mask, other, EVEN: tl.constexpr):
    """Load a tile; ``EVEN`` (the param's size is a multiple of the tile): no mask, so the loads are
    16-byte (bf16) and 8-byte (int8) vectors; a masked load of a run-time bound is one scalar load
    per value (seen in the PTX: 42 ``ld.global.b8/b16`` per thread for 8 values)."""
    if EVEN:
        return tl.load(ptr + offs)
    else:
        return tl.load(ptr + offs, mask=mask, other=other)


@triton.jit
def _st(ptr, offs, value, mask, EVEN: tl.constexpr):
    if EVEN:
        tl.store(ptr + offs, value)
    else:
        tl.store(ptr + offs, value, mask=mask)


@triton.jit
def _load_signed(
    q_ptr,
    s_ptr,
    offs,
    gidx,
    mask,
    gmask,
    FAM: tl.constexpr,
    a,
    aux,
    RAW: tl.constexpr,
    EVEN: tl.constexpr,
    FAST: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    """A signed state: fp32 values (``RAW``, quantize_states=False) or decoded int8 codes."""
    if RAW:
        x = _ld(q_ptr, offs, mask, 0.0, EVEN)
    else:
        q = _decode8(_ld(q_ptr, offs, mask, 0, EVEN), INTERPRET)
        s = _ld(s_ptr, gidx, gmask, 0.0, EVEN).to(tl.float32)
        z = q * (1.0 / 127.0)
        x = _expand(z, FAM, a, aux, FAST, INTERPRET) * s[:, None]
    return x


@triton.jit
def _store_signed(
    x,
    q_ptr,
    s_ptr,
    r_ptr,
    offs,
    gidx,
    mask,
    gmask,
    FAM: tl.constexpr,
    a,
    aux,
    RAW: tl.constexpr,
    FAST: tl.constexpr,
    EVEN: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    """Write a signed state: fp32 to ``r_ptr`` (``RAW``: fp32 states, or a refit step of the learned
    compander, which the host then fits and quantises) or int8 codes and fp16 group scales."""
    if RAW:
        _st(r_ptr, offs, x, mask, EVEN)
    else:
        absmax = tl.max(tl.abs(x), axis=1)
        s16 = absmax.to(tl.float16)
        s16 = tl.where((absmax > 0) & (s16 == 0), 5.960464477539063e-08, s16.to(tl.float32)).to(tl.float16)
        eff = s16.to(tl.float32)
        inv = _div(1.0, tl.where(eff > 0, eff, 1.0), FAST, INTERPRET)  # one division per group of 32
        # Hazard: the clamp is needed.  An fp16 scale in the subnormal range (absmax < 6.1e-5, common
        # for first moments) can round down by up to half, so |y| reaches ~2: without the clamp its
        # code overflows int8 (removing it failed 4 GPU agreement tests on 2026-12-01).
        y = x * inv[:, None]
        y = tl.minimum(tl.maximum(y, -1.0), 1.0)
        q = _biased_round(_compand(y, FAM, a, aux, FAST, INTERPRET) * 127.0)
        _st(q_ptr, offs, q.to(tl.int32, bitcast=True).to(tl.int8), mask, EVEN)
        _st(s_ptr, gidx, s16, gmask, EVEN)


@triton.jit
def _load_unsigned(
    q_ptr,
    s_ptr,
    offs,
    gidx,
    mask,
    gmask,
    FAM: tl.constexpr,
    a,
    aux,
    RAW: tl.constexpr,
    EVEN: tl.constexpr,
    FAST: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    if RAW:
        x = _ld(q_ptr, offs, mask, 0.0, EVEN)
    else:
        q = _decode8(_ld(q_ptr, offs, mask, 0, EVEN), INTERPRET)
        s = _ld(s_ptr, gidx, gmask, 0.0, EVEN).to(tl.float32)
        z = q * (1.0 / 255.0)
        x = _expand(z, FAM, a, aux, FAST, INTERPRET) * (s * s)[:, None]
    return x


@triton.jit
def _store_unsigned(
    x,
    q_ptr,
    s_ptr,
    r_ptr,
    offs,
    gidx,
    mask,
    gmask,
    FAM: tl.constexpr,
    a,
    aux,
    RAW: tl.constexpr,
    FAST: tl.constexpr,
    EVEN: tl.constexpr,
    INTERPRET: tl.constexpr,
):
    if RAW:
        _st(r_ptr, offs, x, mask, EVEN)
    else:
        absmax = tl.max(x, axis=1)  # x >= 0
        s16 = tl.sqrt_rn(absmax).to(tl.float16)
        s16 = tl.where((absmax > 0) & (s16 == 0), 5.960464477539063e-08, s16.to(tl.float32)).to(tl.float16)
        eff = s16.to(tl.float32)
        eff = eff * eff
        inv = _div(1.0, tl.where(eff > 0, eff, 1.0), FAST, INTERPRET)
        y = x * inv[:, None]
        y = tl.minimum(tl.maximum(y, 0.0), 1.0)  # needed: see the hazard in _store_signed
        if FAM == 4:  # the paper's sqrt; y >= 0, so no sign to restore
            q = _biased_round(_sqrt(y, FAST) * 255.0)
        else:
            q = _biased_round(_compand(y, FAM, a, aux, FAST, INTERPRET) * 255.0)
        q = tl.where(x > 0, tl.maximum(q, 12582913.0), q)  # v > 0 never gets code 0 (see quantization.py)
        _st(q_ptr, offs, q.to(tl.int32, bitcast=True).to(tl.uint8), mask, EVEN)
        _st(s_ptr, gidx, s16, gmask, EVEN)


@triton.jit(do_not_specialize=["n", "first_step"])
def flash_step_kernel(
    p_ptr,
    c_ptr,
    g_ptr,
    s1_ptr,
    s1s_ptr,
    s2_ptr,
    s2s_ptr,
    r1_ptr,
    r2_ptr,
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
    inv_bc2_sqrt,
    one_minus_dampening,
    first_step,
    a1,
    aux1,
    a2,
    aux2,
    ALGO: tl.constexpr,
    HAS_CORR: tl.constexpr,
    CORR_LEVELS: tl.constexpr,
    HAS_STATE: tl.constexpr,
    FAM1: tl.constexpr,
    FAM2: tl.constexpr,
    RAW_IN: tl.constexpr,
    RAW_OUT: tl.constexpr,
    NESTEROV: tl.constexpr,
    P_DTYPE: tl.constexpr,
    GROUPS: tl.constexpr,
    EVEN: tl.constexpr = False,
    FAST: tl.constexpr = True,
    INTERPRET: tl.constexpr = False,
):
    """``one_minus_*`` come from the host in float64: ``1 - fp32(0.999)`` in fp32 is 1.3e-5 off
    ``0.001``, a bias of the second moment that made fused and reference steps differ visibly.
    ``decay`` = 1 - lr·wd (decoupled), ``l2`` = wd (coupled); Adam: ``step_size`` = lr/(1-β1ᵗ),
    ``bc2_sqrt`` = sqrt(1-β2ᵗ) and ``inv_bc2_sqrt`` its reciprocal (FAST multiplies by it, one FMA
    instead of a division); SGD: ``beta1`` = momentum; Lion: ``beta1``, ``beta2`` as in Lion.

    States: ``s1`` is the signed state (Adam's m, SGD's buffer, Lion's m) and ``s2`` Adam's
    unsigned v, with compander family ``FAM1``/``FAM2`` and runtime parameters ``a1, aux1`` /
    ``a2, aux2`` (per tensor: the learned compander changes them).  ``RAW_IN``: the states are fp32
    tensors at ``s1_ptr``/``s2_ptr`` (quantize_states=False), else codes and scales.  ``RAW_OUT``:
    the updated states are written as fp32 to ``r1_ptr``/``r2_ptr`` (the fp32 states themselves, or
    scratch on a refit step of the learned compander), else as codes and scales.
    ``P_DTYPE``: 0 fp32 param (no correction), 1 bf16, 2 fp16.  ``EVEN``: ``n`` is a multiple of
    the tile, so no program needs a mask (vector loads and stores)."""
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
        r1_ptr += base
    if ALGO == 0:
        s2_ptr += base
        s2s_ptr += pid * GROUPS
        r2_ptr += base
    gidx = tl.arange(0, GROUPS)
    offs = gidx[:, None] * 32 + tl.arange(0, 32)[None, :]
    if EVEN:
        mask = None
        gmask = None
    else:
        remaining = tl.minimum(n - base, GROUPS * 32).to(tl.int32)
        mask = offs < remaining
        gmask = gidx * 32 < remaining

    p_raw = _ld(p_ptr, offs, mask, 0.0, EVEN)
    x = _widen(p_raw, INTERPRET)
    if HAS_CORR:
        c = _decode8(_ld(c_ptr, offs, mask, 0, EVEN), INTERPRET)
        if P_DTYPE == 1:
            # ULP(p)·(0.5/Q) = 2^(E'-127) · (2^-7·0.5/Q): the same fp32 product as the reference's
            # ulp16(p) * (0.5/Q) (a power-of-two factor moved between exact operands)
            half_q = _bf16_binade(x).to(tl.float32, bitcast=True) * (0.0078125 * 0.5 / CORR_LEVELS)
            x = x + c * half_q
        else:
            x = x + c * (_ulp16(p_raw, P_DTYPE) * (0.5 / CORR_LEVELS))
    g = _widen(_ld(g_ptr, offs, mask, 0.0, EVEN), INTERPRET)

    if ALGO == 0:  # Adam / AdamW
        m = _load_signed(
            s1_ptr, s1s_ptr, offs, gidx, mask, gmask, FAM1, a1, aux1, RAW_IN, EVEN, FAST, INTERPRET
        )
        v = _load_unsigned(
            s2_ptr, s2s_ptr, offs, gidx, mask, gmask, FAM2, a2, aux2, RAW_IN, EVEN, FAST, INTERPRET
        )
        x = x * decay
        if l2 != 0.0:
            g = g + l2 * x
        m = m + one_minus_beta1 * (g - m)
        v = v * beta2 + one_minus_beta2 * (g * g)
        if FAST and not INTERPRET:
            denom = _sqrt(v, FAST) * inv_bc2_sqrt + eps
        else:
            denom = _sqrt(v, FAST) / bc2_sqrt + eps
        x = x - step_size * _div(m, denom, FAST, INTERPRET)
        _store_signed(
            m,
            s1_ptr,
            s1s_ptr,
            r1_ptr,
            offs,
            gidx,
            mask,
            gmask,
            FAM1,
            a1,
            aux1,
            RAW_OUT,
            FAST,
            EVEN,
            INTERPRET,
        )
        _store_unsigned(
            v,
            s2_ptr,
            s2s_ptr,
            r2_ptr,
            offs,
            gidx,
            mask,
            gmask,
            FAM2,
            a2,
            aux2,
            RAW_OUT,
            FAST,
            EVEN,
            INTERPRET,
        )
    elif ALGO == 1:  # SGD / SGDW
        x = x * decay
        d = g
        if l2 != 0.0:
            d = g + l2 * x
        if HAS_STATE:
            b = _load_signed(
                s1_ptr, s1s_ptr, offs, gidx, mask, gmask, FAM1, a1, aux1, RAW_IN, EVEN, FAST, INTERPRET
            )
            b = tl.where(first_step != 0, d, b * beta1 + one_minus_dampening * d)
            if NESTEROV:
                d = d + beta1 * b
            else:
                d = b
            _store_signed(
                b,
                s1_ptr,
                s1s_ptr,
                r1_ptr,
                offs,
                gidx,
                mask,
                gmask,
                FAM1,
                a1,
                aux1,
                RAW_OUT,
                FAST,
                EVEN,
                INTERPRET,
            )
        x = x - lr * d
    else:  # Lion
        m = _load_signed(
            s1_ptr, s1s_ptr, offs, gidx, mask, gmask, FAM1, a1, aux1, RAW_IN, EVEN, FAST, INTERPRET
        )
        x = x * decay
        u = m * beta1 + one_minus_beta1 * g
        direction = tl.where(u > 0, 1.0, tl.where(u < 0, -1.0, 0.0))
        x = x - lr * direction
        m = m + one_minus_beta2 * (g - m)
        _store_signed(
            m,
            s1_ptr,
            s1s_ptr,
            r1_ptr,
            offs,
            gidx,
            mask,
            gmask,
            FAM1,
            a1,
            aux1,
            RAW_OUT,
            FAST,
            EVEN,
            INTERPRET,
        )

    if P_DTYPE == 0:
        _st(p_ptr, offs, x, mask, EVEN)
    else:
        if P_DTYPE == 1:
            if INTERPRET:
                p_new = _to_bf16_rne(x)  # the interpreter's own cast truncates
            else:
                p_new = x.to(tl.bfloat16)  # cvt.rn.bf16.f32: round to nearest even, as torch
        else:
            # cvt.rn.f16.f32 on the GPU; the interpreter casts with numpy's astype, which also rounds
            # to nearest even (subnormals and overflow to inf included), so no integer version is needed
            p_new = x.to(tl.float16)
        _st(p_ptr, offs, p_new, mask, EVEN)
        if HAS_CORR:
            pn = _widen(p_new, INTERPRET)
            err = x - pn
            if P_DTYPE == 1:
                # err / (ULP(p_new)/2) = err · 2^(128-E') · 2^7 with 2^(128-E') a normal fp32 for every
                # E' in [1, 254] (bits (255 - E') << 23) and err · 2^(128-E') exact (|err| <= ULP/2
                # and err a multiple of x's fp32 ULP): the reference's exact division, then one
                # rounding of the product with Q as in ``ratio * levels``
                scale = (0x7F800000 - _bf16_binade(pn)).to(tl.float32, bitcast=True)
                ratio = (err * scale) * (128.0 * CORR_LEVELS)
            else:
                ratio = err / (_ulp16(p_new, P_DTYPE) * 0.5) * CORR_LEVELS
            ratio = tl.minimum(tl.maximum(ratio, -CORR_LEVELS), CORR_LEVELS)
            code = tl.where(err == err, _biased_round(ratio), 12582912.0)  # nan (inf/nan x) -> 0
            code = code.to(tl.int32, bitcast=True)
            if CORR_LEVELS == 127:
                _st(c_ptr, offs, code.to(tl.int8), mask, EVEN)
            else:
                _st(c_ptr, offs, code.to(tl.int16), mask, EVEN)

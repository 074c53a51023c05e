# mypy: disable-error-code="no-untyped-def,untyped-decorator"
"""The multi-tensor form of the fused step: one launch for many (small) params of one configuration.

Each launch costs host time (Python argument handling and the driver call) whatever the tensor's
size, so for small tensors it dominates the step; ``fused_step_many`` gathers params of at most
``MULTI_MAX_NUMEL`` values into one launch of this kernel.  Each program looks up its tensor and
tile in host-built tables, the tensor's element offsets from the first param's tensors and its
compander parameters, and runs the same tile code
(:func:`flashoptim.kernels.triton_step._step_tile`) as the one-param kernel, so both compute
identical bits.  Not yet timed on a GPU.
"""

from __future__ import annotations

import triton
import triton.language as tl

from flashoptim.kernels.triton_step import _step_tile


@triton.jit
def _column(base_ptr, off_row, col: tl.constexpr):
    """``base_ptr`` plus the element offset in column ``col`` of a table row.

    The offset is a whole number of 16-byte units (every tensor is 16-byte aligned: checked on the
    host); saying so lets the compiler keep the vectorised accesses of the one-param kernel, which
    an address loaded from memory and cast to a pointer would lose.
    """
    off = tl.load(off_row + col)
    return base_ptr + tl.multiple_of(off, 128 // base_ptr.dtype.element_ty.primitive_bitwidth)


@triton.jit
def flash_step_multi_kernel(
    p_base,
    c_base,
    g_base,
    s1_base,
    s1s_base,
    s2_base,
    s2s_base,
    r1_base,
    r2_base,
    off_ptr,
    numel_ptr,
    comp_ptr,
    tile_tensor_ptr,
    tile_index_ptr,
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
    FAM1: tl.constexpr,
    FAM2: tl.constexpr,
    RAW_IN: tl.constexpr,
    RAW_OUT: tl.constexpr,
    NESTEROV: tl.constexpr,
    P_DTYPE: tl.constexpr,
    GROUPS: tl.constexpr,
    FAST: tl.constexpr = True,
    INTERPRET: tl.constexpr = False,
):
    """Many params of one configuration in one launch (``flash_step_kernel`` per tile otherwise).

    ``*_base``: the first param's tensors (param, correction, grad, s1 codes, s1 scales, s2 codes,
    s2 scales, r1, r2; unused columns repeat a tensor of the same type).  Tables (host-built each
    step, since gradients move): ``off`` int64 ``(T, 9)``, each tensor's element offset from its
    column's base; ``numel`` int64 ``(T,)``; ``comp`` fp32 ``(T, 4)`` = ``a1, aux1, a2, aux2`` (per
    tensor: learned companders); ``tile_tensor``/``tile_index`` int32, one entry per program: which
    tensor and which of its tiles.  Scalars and constexprs as in ``flash_step_kernel``, shared by
    all the tensors of the launch (same group, same step count).
    """
    pid = tl.program_id(0)
    t = tl.load(tile_tensor_ptr + pid).to(tl.int64)
    tile = tl.load(tile_index_ptr + pid).to(tl.int64)
    n = tl.load(numel_ptr + t)
    base = tile * (GROUPS * 32)
    row = off_ptr + t * 9
    p_ptr = _column(p_base, row, 0) + base
    c_ptr = _column(c_base, row, 1) + base
    g_ptr = _column(g_base, row, 2) + base
    s1_ptr = _column(s1_base, row, 3) + base
    s1s_ptr = _column(s1s_base, row, 4) + tile * GROUPS
    s2_ptr = _column(s2_base, row, 5) + base
    s2s_ptr = _column(s2s_base, row, 6) + tile * GROUPS
    r1_ptr = _column(r1_base, row, 7) + base
    r2_ptr = _column(r2_base, row, 8) + base
    a1 = tl.load(comp_ptr + t * 4)
    aux1 = tl.load(comp_ptr + t * 4 + 1)
    a2 = tl.load(comp_ptr + t * 4 + 2)
    aux2 = tl.load(comp_ptr + t * 4 + 3)
    remaining = tl.minimum(n - base, GROUPS * 32).to(tl.int32)
    # Hazard: numel comes from a table, so the compiler cannot prove a tile's mask uniform and
    # would access memory element by element; full tiles (all but each tensor's last) take a copy
    # of the tile code with a constant extent, which it vectorises like the one-param kernel's.
    if remaining == GROUPS * 32:
        _step_tile(
            p_ptr,
            c_ptr,
            g_ptr,
            s1_ptr,
            s1s_ptr,
            s2_ptr,
            s2s_ptr,
            r1_ptr,
            r2_ptr,
            GROUPS * 32,
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
            a1,
            aux1,
            a2,
            aux2,
            ALGO=ALGO,
            HAS_CORR=HAS_CORR,
            CORR_LEVELS=CORR_LEVELS,
            HAS_STATE=HAS_STATE,
            FAM1=FAM1,
            FAM2=FAM2,
            RAW_IN=RAW_IN,
            RAW_OUT=RAW_OUT,
            NESTEROV=NESTEROV,
            P_DTYPE=P_DTYPE,
            GROUPS=GROUPS,
            FAST=FAST,
            INTERPRET=INTERPRET,
        )
    else:
        _step_tile(
            p_ptr,
            c_ptr,
            g_ptr,
            s1_ptr,
            s1s_ptr,
            s2_ptr,
            s2s_ptr,
            r1_ptr,
            r2_ptr,
            remaining,
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
            a1,
            aux1,
            a2,
            aux2,
            ALGO=ALGO,
            HAS_CORR=HAS_CORR,
            CORR_LEVELS=CORR_LEVELS,
            HAS_STATE=HAS_STATE,
            FAM1=FAM1,
            FAM2=FAM2,
            RAW_IN=RAW_IN,
            RAW_OUT=RAW_OUT,
            NESTEROV=NESTEROV,
            P_DTYPE=P_DTYPE,
            GROUPS=GROUPS,
            FAST=FAST,
            INTERPRET=INTERPRET,
        )

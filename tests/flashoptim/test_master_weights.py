"""Master weight splitting: the reconstruction error bound (hypothesis), non-finite inputs."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from flashoptim.master_weights import (
    CORRECTION_DTYPES,
    reconstruct_master,
    reconstruction_error_bound,
    split_master,
    ulp16,
)

# fp32 values from subnormal (1e-45) to large (2^127), both signs and zeros
fp32_values = st.floats(
    width=32, allow_nan=False, allow_infinity=False, min_value=-(2.0**127), max_value=2.0**127
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(fp32_values, min_size=1, max_size=64))
@pytest.mark.parametrize("bits", [24, 32])
@pytest.mark.parametrize("param_dtype", [torch.bfloat16, torch.float16])
def test_reconstruction_within_bound(values, bits, param_dtype) -> None:
    x = torch.tensor(values, dtype=torch.float32)
    if param_dtype == torch.float16:
        x = x.clamp(-65000.0, 65000.0)  # beyond fp16's range the cast overflows to inf (tested below)
    p, code = split_master(x, param_dtype, CORRECTION_DTYPES[bits])
    x_hat = reconstruct_master(p, code)
    err = (x_hat.double() - x.double()).abs()
    bound = reconstruction_error_bound(p, CORRECTION_DTYPES[bits], x)
    assert bool((err <= bound).all()), (x[err > bound], err[err > bound], bound[err > bound])


def test_bound_is_tight_and_beats_bf16() -> None:
    """The 24-bit error uses most of its bound and is ~127x smaller than bf16 rounding alone."""
    torch.manual_seed(0)
    x = torch.randn(200_000) * torch.exp(torch.randn(200_000) * 5)
    p, code = split_master(x, torch.bfloat16, torch.int8)
    err = (reconstruct_master(p, code).double() - x.double()).abs()
    bound = reconstruction_error_bound(p, torch.int8, x)
    assert float((err / bound).max()) > 0.9
    bf16_err = (p.double() - x.double()).abs()
    assert float(err.mean()) < float(bf16_err.mean()) / 100


def test_ulp_is_the_bf16_spacing() -> None:
    p = torch.tensor([1.0, -3.0, 1e-3, 1e30, 0.0, 1e-40], dtype=torch.bfloat16)
    nxt = torch.nextafter(p.abs(), torch.full_like(p, math.inf)).float() - p.abs().float()
    assert torch.equal(ulp16(p), nxt)


def test_non_finite_propagate_as_torch_casts() -> None:
    x = torch.tensor([math.inf, -math.inf, math.nan, 1e39, -1e39, 0.0, -0.0])
    p, code = split_master(x, torch.bfloat16, torch.int8)
    expected = x.to(torch.bfloat16)
    assert torch.equal(p.isnan(), expected.isnan())
    assert torch.equal(p[~p.isnan()], expected[~expected.isnan()])
    assert code is not None and bool((code[:5] == 0).all())
    x_hat = reconstruct_master(p, code)
    assert torch.equal(x_hat.isnan(), x.isnan())
    assert torch.equal(x_hat[:2], x[:2]) and torch.isinf(x_hat[3:5]).all()


def test_no_correction_is_plain_rounding() -> None:
    x = torch.randn(1000)
    p, code = split_master(x, torch.bfloat16, None)
    assert code is None
    assert torch.equal(reconstruct_master(p, None), x.to(torch.bfloat16).float())

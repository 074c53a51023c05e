"""Companded 8-bit state quantisation: round trips per compander, errors on real state snapshots."""

from __future__ import annotations

import pytest
import torch
from fo_helpers import regression_task, small_mlp

from flashoptim.companders import Compander, default_compander, learned_candidates
from flashoptim.optimizer import fit_compander
from flashoptim.quantization import dequantize_groups, quantize_groups, rel_l2_error

COMPANDERS = ["linear", "paper", "log"]
SPECS = [(True, 1), (False, 2)]  # (signed, scale_root): first moment, second moment


def _sample(signed: bool, n: int = 4099) -> torch.Tensor:
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, generator=g) * torch.exp(torch.randn(n, generator=g) * 2) * 1e-3
    return x if signed else x * x


@pytest.mark.parametrize("name", COMPANDERS)
@pytest.mark.parametrize(("signed", "root"), SPECS)
def test_round_trip_within_half_level(name, signed, root) -> None:
    comp = default_compander(name, signed=signed)
    x = _sample(signed)
    codes, scales = quantize_groups(x, comp, signed=signed, scale_root=root)
    assert codes.dtype == (torch.int8 if signed else torch.uint8) and scales.dtype == torch.float16
    assert codes.numel() == x.numel() and scales.numel() == (x.numel() + 31) // 32
    x_hat = dequantize_groups(codes, scales, comp, signed=signed, scale_root=root)
    # the companded value of x is within half a level (plus the fp16 clipping of the group max)
    eff = scales.float() ** root
    y = (x.view(-1)[: x.numel() // 32 * 32].view(-1, 32) / eff[: x.numel() // 32, None]).clamp(-1, 1)
    y_hat = x_hat[: x.numel() // 32 * 32].view(-1, 32) / eff[: x.numel() // 32, None]
    qmax = 127 if signed else 255
    level_err = (comp.forward(y) - comp.forward(y_hat)).abs() * qmax
    assert float(level_err.max()) <= 1.0 + 1e-4  # 0.5 rounding; the v>0 -> code>=1 rule adds up to 1
    assert rel_l2_error(x_hat, x) < 0.05


@pytest.mark.parametrize("name", COMPANDERS)
def test_zeros_and_tail_groups(name) -> None:
    for signed, root in SPECS:
        comp = default_compander(name, signed=signed)
        for n in (0, 1, 31, 33):
            x = torch.zeros(n)
            codes, scales = quantize_groups(x, comp, signed=signed, scale_root=root)
            assert torch.equal(dequantize_groups(codes, scales, comp, signed=signed, scale_root=root), x)


def test_positive_second_moment_never_decodes_to_zero() -> None:
    v = torch.tensor([1.0] + [1e-9] * 31)
    comp = default_compander("paper", signed=False)
    codes, scales = quantize_groups(v, comp, signed=False, scale_root=2)
    assert bool((dequantize_groups(codes, scales, comp, signed=False, scale_root=2) > 0).all())


def test_tiny_scales_survive_fp16() -> None:
    """Second moments of 1e-12 (under fp16's range) keep a nonzero, accurate scale."""
    v = torch.full((64,), 1e-12) * torch.linspace(0.5, 1.0, 64)
    comp = default_compander("paper", signed=False)
    codes, scales = quantize_groups(v, comp, signed=False, scale_root=2)
    assert rel_l2_error(dequantize_groups(codes, scales, comp, signed=False, scale_root=2), v) < 0.02


@pytest.mark.parametrize("family", ["softsign", "power", "mulaw"])
def test_compander_inverse(family) -> None:
    y = torch.linspace(-1, 1, 1001)
    for param in (0.25, 0.5, 2.0, 255.0) if family != "power" else (0.25, 0.5, 0.75):
        c = Compander(family, param)
        z = c.forward(y)
        assert float(z.abs().max()) <= 1.0 + 1e-6
        assert torch.allclose(c.inverse(z), y, atol=1e-5)


@pytest.fixture(scope="module")
def state_snapshot() -> dict[str, torch.Tensor]:
    """Adam moments after 60 steps of a real (small) training run, torch AdamW in fp32."""
    x, y = regression_task()
    model = small_mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    st = [opt.state[p] for p in model.parameters() if p.dim() == 2]
    return {
        "exp_avg": torch.cat([s["exp_avg"].reshape(-1) for s in st]),
        "exp_avg_sq": torch.cat([s["exp_avg_sq"].reshape(-1) for s in st]),
    }


def _error(x: torch.Tensor, comp: Compander, signed: bool, root: int) -> float:
    codes, scales = quantize_groups(x, comp, signed=signed, scale_root=root)
    return rel_l2_error(dequantize_groups(codes, scales, comp, signed=signed, scale_root=root), x)


@pytest.mark.parametrize(("state", "signed", "root"), [("exp_avg", True, 1), ("exp_avg_sq", False, 2)])
def test_compander_errors_on_training_snapshot(state_snapshot, state, signed, root) -> None:
    x = state_snapshot[state]
    errors = {name: _error(x, default_compander(name, signed=signed), signed, root) for name in COMPANDERS}
    learned = fit_compander(x, signed=signed, scale_root=root)
    errors["learned"] = _error(x, learned, signed, root)
    print(state, {k: round(v, 5) for k, v in errors.items()}, "learned =", learned)
    if signed:  # softsign pays for itself on m; on v, sqrt and linear are within noise in L2 terms
        assert errors["paper"] < errors["linear"], errors
    assert errors["learned"] <= min(errors[n] for n in COMPANDERS), errors
    assert all(e < 0.1 for e in errors.values()), errors


def test_learned_candidates_contain_fixed() -> None:
    for signed in (True, False):
        cands = learned_candidates(signed=signed)
        for name in COMPANDERS:
            assert default_compander(name, signed=signed) in cands

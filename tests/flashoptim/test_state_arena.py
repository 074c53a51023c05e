"""The optimizer state lives in one arena per dtype (allocator rounding is paid once, not per tensor)."""

from __future__ import annotations

import io
import itertools

import torch

import flashoptim as fo
from tests.flashoptim.fo_helpers import small_mlp


def _state_tensors(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [
        v
        for s in opt.state.values()
        for k, v in s.items()
        if torch.is_tensor(v) and not k.endswith("_compander")
    ]


def _model_with_odd_params() -> torch.nn.Module:
    model = small_mlp(seed=3)
    model.register_parameter("scalar", torch.nn.Parameter(torch.tensor(0.5)))
    model.register_parameter("odd", torch.nn.Parameter(torch.randn(37)))
    model.register_parameter("empty", torch.nn.Parameter(torch.zeros(0)))
    return fo.cast_model(model, dtype=torch.bfloat16)


def _loss(model: torch.nn.Module) -> torch.Tensor:
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    return (
        model(x).float().pow(2).mean()
        + model.scalar.float() ** 2
        + model.odd.float().sum()
        + model.empty.sum()
    )


def test_states_share_one_storage_per_dtype_and_are_aligned() -> None:
    model = _model_with_odd_params()
    opt = fo.FlashAdamW(model.parameters(), lr=1e-3)
    _loss(model).backward()
    opt.step()
    tensors = _state_tensors(opt)
    n_params = sum(1 for p in model.parameters() if p.dtype == torch.bfloat16)
    assert len(tensors) >= 5 * n_params - 5  # correction + 2 x (codes, scales) per bf16 param
    storages = {(t.dtype, t.untyped_storage().data_ptr()) for t in tensors}
    assert len(storages) == len({t.dtype for t in tensors})  # one arena per dtype
    # each view starts 256-byte aligned from its arena's base (the CUDA allocator aligns bases to 512)
    assert all((t.data_ptr() - t.untyped_storage().data_ptr()) % 256 == 0 for t in tensors if t.numel())
    # views never overlap: the bytes of all states add up to at most the arenas' bytes
    arena_bytes = sum(
        {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values()
    )
    assert sum(t.numel() * t.element_size() for t in tensors) <= arena_bytes
    spans = sorted((t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()) for t in tensors if t.numel())
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))


def test_arena_matches_per_tensor_trajectory_and_survives_save_load() -> None:
    """Same updates as a fresh optimizer loaded from its state_dict (whose states are separate tensors)."""
    model = _model_with_odd_params()
    opt = fo.FlashAdamW(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        _loss(model).backward()
        opt.step()
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf)
    clone = _model_with_odd_params()
    clone.load_state_dict(saved["model"])
    opt2 = fo.FlashAdamW(clone.parameters(), lr=1e-2)
    opt2.load_state_dict(saved["opt"])
    for m, o in ((model, opt), (clone, opt2)):
        for _ in range(3):
            o.zero_grad()
            _loss(m).backward()
            o.step()
    for (n, a), b in zip(model.named_parameters(), clone.parameters()):
        assert torch.equal(a, b), n
    assert len({t.untyped_storage().data_ptr() for t in _state_tensors(opt2)}) == len(
        {t.dtype for t in _state_tensors(opt2)}
    )


def test_gradient_release_allocates_all_states_at_the_first_hook() -> None:
    model = _model_with_odd_params()
    opt = fo.FlashAdamW(model.parameters(), lr=1e-3)
    fo.enable_gradient_release(model, opt)
    _loss(model).backward()
    tensors = _state_tensors(opt)
    assert tensors and len({t.untyped_storage().data_ptr() for t in tensors}) == len(
        {t.dtype for t in tensors}
    )
    assert all(p.grad is None for p in model.parameters())

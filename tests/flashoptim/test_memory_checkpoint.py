"""Resident bytes/param from the actual tensors, checkpoint size, save/load/continue, fp32 masters,
gradient release."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from fo_helpers import regression_task

import flashoptim as fo
from flashoptim.master_weights import reconstruct_master, ulp16


def _bf16_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 512),
        torch.nn.GELU(),
        torch.nn.Linear(512, 256),
        torch.nn.GELU(),
        torch.nn.Linear(256, 1),
    )
    return fo.cast_model(model)


def _loss(model, x, y) -> torch.Tensor:
    return torch.nn.functional.mse_loss(model(x.to(torch.bfloat16)).float(), y)


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 256, generator=g)
    return x, x[:, :1].sin()


def _resident_bytes_per_param(model, opt) -> float:
    numel = sum(p.numel() for p in model.parameters())
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    total += sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    for state in opt.state.values():
        total += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
    return total / numel


@pytest.mark.parametrize(("bits", "limit"), [(24, 7.15), (32, 8.2)])
def test_resident_bytes_per_param(bits, limit) -> None:
    model = _bf16_model()
    opt = fo.FlashAdamW(model.parameters(), lr=1e-3, master_weight_bits=bits)
    x, y = _data()
    _loss(model, x, y).backward()
    opt.step()
    assert all(p.grad.dtype == torch.bfloat16 for p in model.parameters())
    assert _resident_bytes_per_param(model, opt) <= limit
    numel = sum(p.numel() for p in model.parameters())
    assert opt.state_nbytes() / numel == pytest.approx(
        1 + 2 * 1.0625 if bits == 24 else 2 + 2 * 1.0625, rel=0.01
    )
    corr = "torch.int8" if bits == 24 else "torch.int16"
    assert set(opt.state_dtypes()) == {corr, "torch.uint8", "torch.int8", "torch.float16", "torch.float32"}


def test_gradient_release_bytes_and_trajectory() -> None:
    x, y = _data()
    m1, m2 = _bf16_model(), _bf16_model()
    o1 = fo.FlashAdamW(m1.parameters(), lr=1e-3)
    o2 = fo.FlashAdamW(m2.parameters(), lr=1e-3)
    handle = fo.enable_gradient_release(m2, o2)
    for _ in range(5):
        o1.zero_grad()
        _loss(m1, x, y).backward()
        o1.step()
        _loss(m2, x, y).backward()  # steps inside backward
        o2.step()  # no-op: grads already released
        assert all(p.grad is None for p in m2.parameters())
    assert _resident_bytes_per_param(m2, o2) <= 5.2
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    handle.remove()
    _loss(m2, x, y).backward()
    assert all(p.grad is not None for p in m2.parameters())


def _nbytes(obj) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getbuffer().nbytes


def test_compressed_checkpoint_half_of_torch() -> None:
    x, y = _data()
    ref = torch.nn.Sequential(
        torch.nn.Linear(256, 512),
        torch.nn.GELU(),
        torch.nn.Linear(512, 256),
        torch.nn.GELU(),
        torch.nn.Linear(256, 1),
    )
    ref_opt = torch.optim.AdamW(ref.parameters())
    torch.nn.functional.mse_loss(ref(x), y).backward()
    ref_opt.step()
    model = _bf16_model()
    opt = fo.FlashAdamW(model.parameters())
    _loss(model, x, y).backward()
    opt.step()
    ours_opt, torch_opt = _nbytes(opt.state_dict()), _nbytes(ref_opt.state_dict())
    ours_all = ours_opt + _nbytes(model.state_dict())
    torch_all = torch_opt + _nbytes(ref.state_dict())
    assert ours_opt <= 0.5 * torch_opt and ours_all <= 0.5 * torch_all, (
        ours_opt,
        torch_opt,
        ours_all,
        torch_all,
    )
    assert _nbytes(opt.uncompressed_state_dict()) > torch_opt  # fp32 moments + fp32 masters


def test_save_load_continue_same_trajectory() -> None:
    x, y = regression_task(n=256)
    x = x.repeat(1, 16)

    def run(model, opt, steps):
        out = []
        for _ in range(steps):
            opt.zero_grad()
            loss = _loss(model, x, y)
            loss.backward()
            opt.step()
            out.append(float(loss.detach()))
        return out

    model = _bf16_model()
    opt = fo.FlashAdamW(model.parameters(), lr=1e-3)
    run(model, opt, 5)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    straight = run(model, opt, 5)

    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    model2 = _bf16_model(seed=7)
    model2.load_state_dict(ckpt["model"])
    opt2 = fo.FlashAdamW(model2.parameters(), lr=1e-3)
    opt2.load_state_dict(ckpt["opt"])
    assert opt2.state[next(model2.parameters())]["exp_avg_scales"].dtype == torch.float16
    resumed = run(model2, opt2, 5)
    assert resumed == straight
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_uncompressed_round_trip_and_torch_interop() -> None:
    x, y = _data()
    model = _bf16_model()
    opt = fo.FlashAdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        _loss(model, x, y).backward()
        opt.step()
    usd = opt.uncompressed_state_dict()
    first = usd["state"][0]
    assert first["exp_avg"].dtype == torch.float32 and first["master_param"].dtype == torch.float32
    model2 = copy.deepcopy(model)
    opt2 = fo.FlashAdamW(model2.parameters(), lr=1e-3)
    opt2.load_state_dict(usd)
    for p, q in zip(model.parameters(), model2.parameters()):
        s1, s2 = opt.state[p], opt2.state[q]
        # re-splitting an fp32 master reproduces it to the 24-bit bound (a code of ±127 may move to the
        # neighbouring bf16 value with the opposite code), not necessarily the same (p, code) pair
        m1 = reconstruct_master(p.detach(), s1["correction"])
        m2 = reconstruct_master(q.detach(), s2["correction"])
        assert bool(((m1 - m2).abs() <= ulp16(p.detach()) / 127).all())
        assert (s1["exp_avg_codes"].int() - s2["exp_avg_codes"].int()).abs().max() <= 1
    # a torch.optim.AdamW state dict loads too (fp32 moments, no masters)
    ref = copy.deepcopy(model).float()
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=1e-3)
    torch.nn.functional.mse_loss(ref(x), y).backward()
    ref_opt.step()
    opt3 = fo.FlashAdamW(copy.deepcopy(model).parameters(), lr=1e-3)
    opt3.load_state_dict(ref_opt.state_dict())
    assert all(s["step"] == 1 for s in opt3.state.values())


def test_fp32_master_export_import() -> None:
    x, y = _data()
    model = _bf16_model()
    opt = fo.FlashAdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        opt.zero_grad()
        _loss(model, x, y).backward()
        opt.step()
    masters = opt.get_fp32_model_state_dict(model)
    assert all(v.dtype == torch.float32 for v in masters.values())
    assert any(not torch.equal(masters[n], p.float()) for n, p in model.named_parameters())
    model2 = _bf16_model(seed=3)
    opt2 = fo.FlashAdamW(model2.parameters(), lr=1e-3)
    opt2.set_fp32_model_state_dict(model2, masters)
    for (n, p), q in zip(model.named_parameters(), model2.parameters()):
        m2 = reconstruct_master(q.detach(), opt2.state[q]["correction"])
        assert bool(((m2 - masters[n]).abs() <= ulp16(p.detach()) / 127).all()), n
        assert float((p.detach().float() - q.detach().float()).abs().max()) <= float(ulp16(p.detach()).max())

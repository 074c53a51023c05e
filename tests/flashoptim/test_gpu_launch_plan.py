"""The per-param launch plan (``flashoptim.kernels._Plan``) on a GPU: a step through a kept plan
must write exactly what a step that rebuilds every argument writes, also after the things that must
invalidate or refresh a plan (a new lr, a loaded state dict, a param given new storage, gradient
release).  Bit-identity is the spec: both paths run the same compiled kernel."""

from __future__ import annotations

import pytest
import torch

import flashoptim as fo
from flashoptim import kernels

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.skipif(not kernels.FAST_LAUNCH, reason="FLASHOPTIM_FAST_LAUNCH=0 turns plans off"),
]
OPTIMIZERS = [
    (fo.FlashAdamW, {"lr": 1e-3, "weight_decay": 0.1}),
    (fo.FlashSGD, {"lr": 1e-2, "momentum": 0.9, "nesterov": True}),
    (fo.FlashLion, {"lr": 1e-4, "weight_decay": 0.1}),
]
SHAPES = [(4, 2048), (1000, 33), (64,)]


def _pair(cls, kwargs):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    base = [torch.randn(s, device="cuda") * 0.1 for s in SHAPES]
    a = [torch.nn.Parameter(t.to(torch.bfloat16)) for t in base]
    b = [torch.nn.Parameter(t.to(torch.bfloat16)) for t in base]
    return a, b, cls(a, backend="triton", **kwargs), cls(b, backend="triton", **kwargs)


def _step_both(a, b, opt_a, opt_b, seed):  # type: ignore[no-untyped-def]
    g = torch.Generator(device="cuda").manual_seed(seed)
    for pa, pb in zip(a, b):
        grad = torch.randn(pa.shape, device="cuda", generator=g).to(torch.bfloat16) * 1e-2
        pa.grad, pb.grad = grad.clone(), grad.clone()
    opt_a.step()  # keeps and reuses its plans
    opt_b.__dict__.pop("_fused_plans", None)  # every launch rebuilt from scratch
    opt_b.step()
    torch.cuda.synchronize()


def _assert_same(a, b, opt_a, opt_b):  # type: ignore[no-untyped-def]
    for pa, pb in zip(a, b):
        assert torch.equal(pa, pb)
        sa, sb = opt_a.state[pa], opt_b.state[pb]
        for k, v in sa.items():
            if torch.is_tensor(v):
                assert torch.equal(v, sb[k]), k


@pytest.mark.parametrize("cls,kwargs", OPTIMIZERS, ids=lambda x: getattr(x, "__name__", ""))
def test_kept_plans_step_as_rebuilt_launches(cls, kwargs) -> None:  # type: ignore[no-untyped-def]
    a, b, opt_a, opt_b = _pair(cls, kwargs)
    for i in range(3):
        _step_both(a, b, opt_a, opt_b, i)
    assert len(opt_a._fused_plans) == len(SHAPES)  # the fast path was taken
    _assert_same(a, b, opt_a, opt_b)
    for g in (*opt_a.param_groups, *opt_b.param_groups):  # a scheduler's change of lr
        g["lr"] *= 0.5
    _step_both(a, b, opt_a, opt_b, 10)
    _assert_same(a, b, opt_a, opt_b)
    sd = opt_b.state_dict()  # a loaded state dict gives new state tensors
    opt_a.load_state_dict(sd)
    _step_both(a, b, opt_a, opt_b, 11)
    _assert_same(a, b, opt_a, opt_b)
    with torch.no_grad():  # new storage for a param (as `param.data = ...` does)
        a[0].data = a[0].data.clone()
        b[0].data = b[0].data.clone()
    _step_both(a, b, opt_a, opt_b, 12)
    _assert_same(a, b, opt_a, opt_b)


def test_gradient_release_through_plans_matches_step() -> None:
    """Released steps (hooks, plans kept) write what ``optimizer.step()`` writes."""
    torch.manual_seed(0)
    model_a = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.GELU(), torch.nn.Linear(512, 64)).cuda()
    model_b = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.GELU(), torch.nn.Linear(512, 64)).cuda()
    model_b.load_state_dict(model_a.state_dict())
    fo.cast_model(model_a)
    fo.cast_model(model_b)
    opt_a = fo.FlashAdamW(model_a.parameters(), lr=1e-3, backend="triton")
    opt_b = fo.FlashAdamW(model_b.parameters(), lr=1e-3, backend="triton")
    fo.enable_gradient_release(model_a, opt_a)
    for i in range(4):
        x = torch.randn(8, 256, device="cuda", generator=torch.Generator(device="cuda").manual_seed(i))
        model_a(x.bfloat16()).float().square().mean().backward()
        model_b(x.bfloat16()).float().square().mean().backward()
        opt_b.step()
        opt_b.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)

"""Optimizer behaviour on CPU (torch reference path): equivalence with torch, convergence, API."""

from __future__ import annotations

import copy
import functools
import math
import warnings

import pytest
import torch
from fo_helpers import LionReference, regression_task, small_mlp, tiny_llama

import flashoptim as fo

EQUIVALENT = [
    (fo.FlashAdamW, torch.optim.AdamW, {"lr": 1e-2, "betas": (0.8, 0.99), "weight_decay": 0.1}),
    (fo.FlashAdam, torch.optim.Adam, {"lr": 1e-2, "weight_decay": 0.1}),
    (fo.FlashSGD, torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9, "weight_decay": 0.1, "dampening": 0.1}),
    (fo.FlashSGD, torch.optim.SGD, {"lr": 1e-2, "momentum": 0.9, "nesterov": True}),
    (fo.FlashSGD, torch.optim.SGD, {"lr": 1e-2}),
    (fo.FlashLion, LionReference, {"lr": 1e-3, "weight_decay": 0.1}),
]


def _train(model, opt, steps, x, y, *, scheduler=None) -> list[float]:
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x.to(next(model.parameters()).dtype)).float(), y)
        loss.backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize(
    ("cls", "ref_cls", "kwargs"),
    EQUIVALENT,
    ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(EQUIVALENT)],
)
def test_compression_off_matches_torch(cls, ref_cls, kwargs) -> None:
    """fp32 params, fp32 states: the same update as the torch optimizer, to fp32 rounding."""
    x, y = regression_task()
    m1 = small_mlp()
    m2 = copy.deepcopy(m1)
    extra = {"foreach": False} if ref_cls is not LionReference else {}
    o1 = cls(m1.parameters(), quantize_states=False, **kwargs)
    o2 = ref_cls(m2.parameters(), **kwargs, **extra)
    l1 = _train(m1, o1, 30, x, y)
    l2 = _train(m2, o2, 30, x, y)
    assert l1 == pytest.approx(l2, rel=1e-5)
    for a, b in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


ADAMW_LR, ADAMW_WD = 3e-3, 0.01
CONVERGENCE = [
    (fo.FlashAdamW, torch.optim.AdamW, {"lr": ADAMW_LR, "weight_decay": ADAMW_WD}),
    (fo.FlashSGD, torch.optim.SGD, {"lr": 3e-2, "momentum": 0.9}),
    # Lion's hyper-parameters follow Chen et al. 2023 (their tuning advice): lr 3-10x smaller and weight decay
    # 3-10x larger than AdamW's, here lr/3 and wd×10 (the lr/10, wd×1 of session 1 left Lion at
    # 0.044 after 300 steps, fp32 reference and FlashLion alike: under-trained, not compression)
    (fo.FlashLion, LionReference, {"lr": ADAMW_LR / 3, "weight_decay": ADAMW_WD * 10}),
]


@functools.cache
def _final_loss_300(cls: type, kwargs: tuple[tuple[str, object], ...], compressed: bool) -> float:
    """Final loss of ``cls(**kwargs)`` after 300 steps on the regression task, from the seeded
    ``small_mlp`` (fp32), or its ``cast_model`` copy (bf16 weights, fp32 norms) when ``compressed``.
    Deterministic, so the tests below share a run with the same arguments instead of repeating it
    (fp32 AdamW at the suite's setting is the reference of four of them, FlashAdamW at it of two)."""
    x, y = regression_task()
    model = small_mlp()
    if compressed:
        model = fo.cast_model(model)
        assert model[0].weight.dtype == torch.bfloat16 and model[2].weight.dtype == torch.float32
    return _train(model, cls(model.parameters(), **dict(kwargs)), 300, x, y)[-1]


@pytest.mark.parametrize(
    ("cls", "ref_cls", "kwargs"), CONVERGENCE, ids=[c.__name__ for c, _, _ in CONVERGENCE]
)
def test_compressed_300_steps_within_5_percent(cls, ref_cls, kwargs) -> None:
    """bf16 params (norms fp32), 24-bit master, 8-bit states vs the fp32 optimizer of the same
    algorithm and hyper-parameters: final loss within 5%.

    The reference is the same algorithm in fp32, so the 5% measures compression alone.  Measured
    (CPU, this task): fp32 AdamW ends at 0.0118; fp32 SGD at 0.0159 and fp32 Lion at 0.0158 end
    higher than AdamW with no compression involved, so "within 5% of fp32 AdamW" is a property of
    the algorithm, which compression cannot fix; FlashSGD and FlashLion land within 0.4% and 1.4% of
    their fp32 counterparts.
    """
    x, y = regression_task()
    ref_loss = _final_loss_300(ref_cls, tuple(kwargs.items()), compressed=False)
    flash_loss = _final_loss_300(cls, tuple(kwargs.items()), compressed=True)
    with torch.no_grad():
        initial = float(torch.nn.functional.mse_loss(small_mlp()(x), y))
    assert ref_loss < 0.2 * initial  # the task is learnt at all
    assert abs(flash_loss - ref_loss) <= 0.05 * ref_loss, (flash_loss, ref_loss)


# The bar read literally: each compressed optimizer ends within 5% of fp32 AdamW's final loss
# (not worse by more than 5%).  That compares algorithms as well as compression, so SGD's and Lion's
# hyper-parameters were picked on their fp32 reference (never on the compressed optimizer) from this
# grid, final loss relative to fp32 AdamW at the suite's setting (lr 3e-3, wd 0.01), measured on CPU
# 2026-11-24: SGD lr {0.03, 0.1, 0.2, 0.3} x momentum {0.9, 0.95}: +35%, +21%, +12%, +8%, +4%, -1%,
# -4%, diverged -> lr 0.2, momentum 0.95 (the best setting whose neighbours are stable); Lion (wd 0.1)
# lr {3e-4, 1e-3} x betas {(0.9, 0.99), (0.95, 0.98), (0.9, 0.95), (0.95, 0.95)}: +274%, +239%, +106%,
# +119%, +34%, +12%, -18%, -34% -> lr 1e-3, betas (0.9, 0.95) (Chen et al. 2023: lr 3-10x below
# AdamW's, wd 3-10x above, beta2 lowered for stability).
VERSUS_ADAMW = [
    (fo.FlashAdamW, {"lr": ADAMW_LR, "weight_decay": ADAMW_WD}),
    (fo.FlashSGD, {"lr": 0.2, "momentum": 0.95}),
    (fo.FlashLion, {"lr": 1e-3, "betas": (0.9, 0.95), "weight_decay": 0.1}),
]


@pytest.mark.parametrize(("cls", "kwargs"), VERSUS_ADAMW, ids=[c.__name__ for c, _ in VERSUS_ADAMW])
def test_compressed_300_steps_within_5_percent_of_fp32_adamw(cls, kwargs) -> None:
    """bf16 params, 24-bit master, 8-bit states: final loss <= 1.05 x fp32 AdamW's after 300 steps."""
    adamw_loss = _final_loss_300(
        torch.optim.AdamW, (("lr", ADAMW_LR), ("weight_decay", ADAMW_WD)), compressed=False
    )
    flash_loss = _final_loss_300(cls, tuple(kwargs.items()), compressed=True)
    assert math.isfinite(flash_loss) and flash_loss <= 1.05 * adamw_loss, (flash_loss, adamw_loss)


@pytest.mark.parametrize("compander", ["linear", "log", "learned"])
def test_other_companders_train(compander) -> None:
    x, y = regression_task()
    model = fo.cast_model(small_mlp())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = fo.FlashAdamW(model.parameters(), lr=3e-3, compander=compander, learned_refit_every=10)
    losses = _train(model, opt, 60, x, y)
    assert losses[-1] < 0.3 * losses[0]
    if compander == "learned":
        fams = {str(fo.Compander.from_tensor(s["exp_avg_compander"])) for s in opt.state.values()}
        assert fams  # a compander was fitted and recorded per tensor


def test_param_groups_and_scheduler() -> None:
    x, y = regression_task()
    model = fo.cast_model(small_mlp())
    decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
    no_decay = [p for n, p in model.named_parameters() if not n.endswith("weight")]
    opt = fo.FlashAdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-2
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    _train(model, opt, 12, x, y, scheduler=sched)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2.5e-3, 2.5e-3])
    assert all(opt.state[p]["step"] == 12 for p in model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_frozen_params_are_skipped() -> None:
    model = fo.cast_model(small_mlp())
    model[0].weight.requires_grad_(False)
    x, y = regression_task()
    before = model[0].weight.detach().clone()
    opt = fo.FlashAdamW(model.parameters(), lr=1e-2)
    _train(model, opt, 3, x, y)
    assert torch.equal(model[0].weight, before) and not opt.state[model[0].weight]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: fo.FlashAdamW(p, lr=-1.0), "lr"),
        (lambda p: fo.FlashAdamW(p, betas=(1.0, 0.9)), "betas"),
        (lambda p: fo.FlashAdamW(p, eps=-1e-8), "eps"),
        (lambda p: fo.FlashAdamW(p, weight_decay=-0.1), "weight_decay"),
        (lambda p: fo.FlashAdamW(p, master_weight_bits=16), "master_weight_bits"),
        (lambda p: fo.FlashAdamW(p, amsgrad=True), "amsgrad"),
        (lambda p: fo.FlashAdamW(p, compander="mu"), "compander"),
        (lambda p: fo.FlashAdamW(p, quantize_states=False, compander="log"), "compander"),
        (lambda p: fo.FlashAdamW(p, backend="cuda"), "backend"),
        (lambda p: fo.FlashAdamW(p, learned_refit_every=0), "learned_refit_every"),
        (lambda p: fo.FlashSGD(p, nesterov=True), "nesterov"),
        (lambda p: fo.FlashSGD(p, momentum=1.5), "momentum"),
        (lambda p: fo.FlashLion(p, betas=(0.9, 1.5)), "betas"),
    ],
)
def test_invalid_arguments_raise(make, match) -> None:
    params = [torch.nn.Parameter(torch.zeros(4, dtype=torch.bfloat16))]
    with pytest.raises(ValueError, match=match):
        make(params)


def test_fragile_settings_warn() -> None:
    params = [torch.nn.Parameter(torch.zeros(4, dtype=torch.bfloat16))]
    with pytest.warns(UserWarning, match="master_weight_bits=None"):
        fo.FlashAdamW(params, master_weight_bits=None)
    with pytest.warns(UserWarning, match="ablation"):
        fo.FlashAdamW(params, compander="linear")


def test_forced_triton_without_cuda_raises(monkeypatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    params = [torch.nn.Parameter(torch.zeros(4, dtype=torch.bfloat16))]
    with pytest.raises(ValueError, match="triton"):
        fo.FlashAdamW(params, backend="triton")


def test_updates_below_half_ulp_accumulate() -> None:
    """The point of the correction: 1000 updates of ~0.004 ULP each (one int8 code) move the bf16
    weight by ~4 ULP; without the correction each is rounded away."""
    for bits, moves in ((24, True), (None, False)):
        p = torch.nn.Parameter(torch.ones(64, dtype=torch.bfloat16))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = fo.FlashSGD([p], lr=1.0, master_weight_bits=bits)
        for _ in range(1000):
            p.grad = torch.full_like(p, -3e-5)  # ULP(1.0) = 2^-7; one int8 code = ULP/254 = 3.1e-5
            opt.step()
        assert bool((p > 1.0).all()) == moves


def test_cast_model_on_a_transformers_llama_trains() -> None:
    """The run engine's path: a tiny Llama, cast_model, FlashAdamW, gradient release, a few steps."""
    model = fo.cast_model(tiny_llama(hidden=64, intermediate=96, vocab=101, max_position_embeddings=64))
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert dtypes["model.layers.0.self_attn.q_proj.weight"] == torch.bfloat16
    assert dtypes["model.layers.0.input_layernorm.weight"] == torch.float32
    assert dtypes["model.norm.weight"] == torch.float32
    assert all(b.dtype == torch.float32 for n, b in model.named_buffers() if "inv_freq" in n)
    opt = fo.FlashAdamW(model.parameters(), lr=1e-2)
    handle = fo.enable_gradient_release(model, opt)
    ids = torch.randint(0, 101, (4, 16), generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(8):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        losses.append(float(loss.detach()))
    handle.remove()
    assert all(p.grad is None for p in model.parameters())
    assert losses[-1] < losses[0]

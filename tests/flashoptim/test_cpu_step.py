"""The batched torch path (flashoptim/cpu_step.py) gives the same bits as the per-parameter reference.

``FlashOptimizer.step`` on CPU steps every parameter of a group that shares step count, dtypes and
companders in one pass over their concatenation; ``_reference_step`` (one parameter at a time) is
the readable definition.  FlashAdamW's common cases take a compiled loop instead
(flashoptim/cpu_fused.py), checked here against the same reference.  Both are run here from the same start on the same gradients, for every
algorithm, parameter dtype, master-weight width, compander and state format, on odd shapes (0-dim,
empty, sizes not a multiple of 32, non-contiguous); params and every state tensor must agree bit for
bit after several steps.  The speed of the batched path is measured by ``python -m
flashoptim.cpu_bench`` (flashoptim/BENCHMARKS.md), not here.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch

import flashoptim as fo
import flashoptim.optimizer as fo_optimizer
from flashoptim import cpu_fused, cpu_step
from flashoptim.master_weights import ulp16

# (50, 50): more than one of the compiled loop's 1024-value blocks, the last one partial
SHAPES = [(37, 19), (), (0,), (64,), (5, 7, 3), (33,), (64, 32), (128,), (50, 50)]

ALGOS = [
    (fo.FlashAdamW, {"lr": 1e-2, "weight_decay": 0.1}),
    (fo.FlashAdam, {"lr": 1e-2, "weight_decay": 0.01}),
    (fo.FlashSGD, {"lr": 1e-2, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (fo.FlashSGDW, {"lr": 1e-2, "momentum": 0.9, "weight_decay": 0.1}),
    (fo.FlashLion, {"lr": 1e-3, "weight_decay": 0.1}),
]


def _params(dtype: torch.dtype, seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    ps = [torch.nn.Parameter((torch.randn(s, generator=g) * 0.1).to(dtype)) for s in SHAPES]
    ps.append(torch.nn.Parameter(torch.randn(40, generator=g)))  # an fp32 (norm-like) param among them
    ps.append(torch.nn.Parameter((torch.randn(12, 10, generator=g) * 0.1).to(dtype).t()))  # non-contiguous
    return ps


def _bits(t: torch.Tensor) -> torch.Tensor:
    if t.dtype == torch.bool or t.element_size() == 1:
        return t.view(torch.uint8)
    return t.contiguous().view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def _run(cls: Any, kwargs: dict[str, Any], dtype: torch.dtype, opts: dict[str, Any], *, batched: bool):
    ps = _params(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = cls(ps, **kwargs, **opts)
    if not batched:  # the per-parameter reference: every param through _step_param/_reference_step
        opt._step_params = lambda params, group: [opt._step_param(p, group) for p in params]  # type: ignore[method-assign]
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        for p in ps:
            p.grad = (torch.randn(p.shape, generator=g) * 0.01).to(p.dtype)
        opt.step()
    return ps, opt


CONFIGS = [
    ("bf16-24-paper", torch.bfloat16, {"master_weight_bits": 24}),
    ("bf16-32-log", torch.bfloat16, {"master_weight_bits": 32, "compander": "log"}),
    ("bf16-none-linear", torch.bfloat16, {"master_weight_bits": None, "compander": "linear"}),
    ("fp16-24-paper", torch.float16, {"master_weight_bits": 24}),
    ("bf16-24-fp32states", torch.bfloat16, {"master_weight_bits": 24, "quantize_states": False}),
    ("fp32-paper", torch.float32, {}),
]


@pytest.mark.parametrize("chunk", [None, 96], ids=["whole", "chunks-of-96"])
@pytest.mark.parametrize(("cls", "kwargs"), ALGOS, ids=[c.__name__ for c, _ in ALGOS])
@pytest.mark.parametrize(("name", "dtype", "opts"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_batched_step_matches_per_parameter_reference_bit_for_bit(
    cls: Any,
    kwargs: dict[str, Any],
    name: str,
    dtype: torch.dtype,
    opts: dict[str, Any],
    chunk: int | None,
    monkeypatch: Any,
) -> None:
    """``chunks-of-96``: passes of 3 groups, so the larger params are cut into slices (each with its
    own scales) and the smaller ones packed together across slices of the others."""
    cuts: list[int] = []
    fused_calls: list[int] = []
    if chunk is not None:  # the torch path's slicing (the compiled path does not slice)
        monkeypatch.setattr(cpu_fused, "supported", lambda *a: False)
        monkeypatch.setattr(cpu_step, "CHUNK_NUMEL", chunk)
        pieces = cpu_step._pieces
        monkeypatch.setattr(cpu_step, "_pieces", lambda *a: cuts.append(len(out := pieces(*a))) or out)
    batch_sizes: list[int] = []
    many = fo_optimizer.reference_step_many

    def counting(opt: Any, params: list[torch.Tensor], states: Any, group: Any) -> None:
        batch_sizes.append(len(params))
        many(opt, params, states, group)

    monkeypatch.setattr(fo_optimizer, "reference_step_many", counting)
    fused = cpu_fused.fused_adamw_step
    monkeypatch.setattr(cpu_fused, "fused_adamw_step", lambda *a: fused_calls.append(len(a[1])) or fused(*a))
    ps_b, opt_b = _run(cls, kwargs, dtype, opts, batched=True)
    # the compiled loop (flashoptim/cpu_adam.c) covers FlashAdamW with 8-bit paper/linear states on
    # bf16 or fp32 params; this machine has a C compiler and torch's MKL square root
    compiled = (
        chunk is None and cls is fo.FlashAdamW and name in ("bf16-24-paper", "bf16-none-linear", "fp32-paper")
    )
    assert bool(fused_calls) == compiled, (fused_calls, cpu_fused.library())
    assert batch_sizes and max(batch_sizes) >= 5, batch_sizes  # the batched path did run
    assert chunk is None or max(cuts) >= 8, cuts  # (37, 19) = 703 values: 8 slices of <= 96
    n_batched = len(batch_sizes)
    ps_r, opt_r = _run(cls, kwargs, dtype, opts, batched=False)
    assert len(batch_sizes) == n_batched  # ... and the reference run did not use it
    for i, (a, b) in enumerate(zip(ps_b, ps_r)):
        assert torch.equal(_bits(a.detach()), _bits(b.detach())), f"param {i} {tuple(a.shape)}"
        sa, sb = opt_b.state[a], opt_r.state[b]
        assert sa.keys() == sb.keys() and sa["step"] == sb["step"] == 4
        for key, va in sa.items():
            if torch.is_tensor(va):
                assert torch.equal(_bits(va), _bits(sb[key])), f"param {i} {tuple(a.shape)} state {key}"


def test_learned_compander_takes_the_per_parameter_path(monkeypatch: Any) -> None:
    """Each tensor refits its own compander: those params are not batched (and still step)."""
    calls: list[int] = []
    monkeypatch.setattr(fo_optimizer, "reference_step_many", lambda *a: calls.append(1))
    ps = _params(torch.bfloat16)
    before = [p.detach().clone() for p in ps]
    opt = fo.FlashAdamW(ps, lr=1e-2, compander="learned")
    for p in ps:
        p.grad = torch.ones_like(p)
    opt.step()
    assert calls == []
    assert all(not torch.equal(a, b.detach()) for a, b in zip(before, ps) if a.numel())


def _ulp_by_math(value: float, mant_bits: int, min_exp: int, max_exp: int) -> float:
    """ULP of a 16-bit value from its float64 value: 2^(e - mant_bits) for its binade e, clamped."""
    if not math.isfinite(value):
        e = max_exp
    elif value == 0:
        e = min_exp
    else:
        e = min(max(math.frexp(abs(value))[1] - 1, min_exp), max_exp)
    return 2.0 ** (e - mant_bits)


@pytest.mark.parametrize(
    ("dtype", "mant_bits", "min_exp", "max_exp"),
    [(torch.bfloat16, 7, -126, 127), (torch.float16, 10, -14, 15)],
)
def test_ulp16_on_every_16_bit_value(dtype: torch.dtype, mant_bits: int, min_exp: int, max_exp: int) -> None:
    """All 65,536 bit patterns against the spacing computed from each value's binade in float64."""
    p = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
    got = ulp16(p).double().tolist()
    want = [_ulp_by_math(v, mant_bits, min_exp, max_exp) for v in p.double().tolist()]
    assert got == want

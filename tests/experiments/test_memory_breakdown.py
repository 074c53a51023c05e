"""The memory breakdown's accounting (experiments.run.memory.step_breakdown, StepPhases) on CPU.

The expected figures are worked out by hand from the definitions in experiments/run/memory.py's
docstring (B = allocated at the step's start, P = peak of the peak phase, S = allocated when that
phase began, G = gradients alive in it), not copied from the code.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

import flashoptim
from experiments.run import memory as M

MIB = 2**20


def test_peak_in_a_compute_phase_splits_into_resident_parts() -> None:
    # Without gradient release: 100 MiB of params, 50 MiB of state, 10 MiB of other residents
    # (B = 160). The peak (500 MiB) falls late in backward with 200 MiB of gradients alive, so
    # activations = 500 - 160 - 200 = 140 and other = the 10 resident MiB; the optimizer step
    # (peak 420, 360 resident when it began) is lower and does not count.
    phases = [
        M.Phase("compute", peak_bytes=300 * MIB, start_bytes=160 * MIB, grads_bytes=0),
        M.Phase("compute", peak_bytes=500 * MIB, start_bytes=450 * MIB, grads_bytes=200 * MIB),
        M.Phase("optimizer_step", peak_bytes=420 * MIB, start_bytes=360 * MIB, grads_bytes=200 * MIB),
    ]
    b = M.step_breakdown(params_bytes=100 * MIB, state_bytes=50 * MIB, before_bytes=160 * MIB, phases=phases)
    assert b == {
        "params_bytes": 100 * MIB,
        "grads_bytes": 200 * MIB,
        "optimizer_state_bytes": 50 * MIB,
        "activations_bytes": 140 * MIB,
        "other_bytes": 10 * MIB,
        "step_peak_bytes": 500 * MIB,
        "peak_phase": "compute",
    }


def test_peak_in_a_release_step_counts_only_the_gradient_being_stepped() -> None:
    # Gradient release: the peak (330 MiB) is inside the release step of one 20 MiB gradient, which
    # began with 290 MiB allocated. With B = 160 (100 params + 50 state + 10 other):
    # grads = 20 (not the 100 MiB a numel x 2 count would give), activations = 290 - 160 - 20 = 110,
    # other = 10 resident + (330 - 290) = 40 MiB of the step's own temporaries = 50.
    phases = [
        M.Phase("compute", peak_bytes=300 * MIB, start_bytes=160 * MIB, grads_bytes=20 * MIB),
        M.Phase("optimizer_step", peak_bytes=330 * MIB, start_bytes=290 * MIB, grads_bytes=20 * MIB),
        M.Phase("compute", peak_bytes=280 * MIB, start_bytes=270 * MIB, grads_bytes=5 * MIB),
    ]
    b = M.step_breakdown(params_bytes=100 * MIB, state_bytes=50 * MIB, before_bytes=160 * MIB, phases=phases)
    assert (b["grads_bytes"], b["activations_bytes"], b["other_bytes"]) == (20 * MIB, 110 * MIB, 50 * MIB)
    assert b["step_peak_bytes"] == 330 * MIB and b["peak_phase"] == "optimizer_step"
    parts = sum(b[k] for k in M.BREAKDOWN_KEYS)
    assert parts == 330 * MIB, "the five parts add up to the step's peak"


def test_activations_are_floored_at_zero_and_other_takes_the_remainder() -> None:
    # The optimizer step of a non-release arm after backward freed everything but 5 MiB of the
    # residents (S = 155 < B = 160 with G = 0): activations 0, not -5; other = 350 - 100 - 50 = 200.
    phases = [M.Phase("optimizer_step", peak_bytes=350 * MIB, start_bytes=155 * MIB, grads_bytes=0)]
    b = M.step_breakdown(params_bytes=100 * MIB, state_bytes=50 * MIB, before_bytes=160 * MIB, phases=phases)
    assert b["activations_bytes"] == 0 and b["other_bytes"] == 200 * MIB


class ZeroCounters:
    """Allocator counters for a CPU run: the phases' grads are what this test checks."""

    def allocated(self) -> int:
        return 0

    def take_peak(self) -> int:
        return 0


def _model() -> nn.Module:
    torch.manual_seed(0)
    # bf16 weights: 8x16 = 128 and 16x4 = 64 elements, i.e. 256 and 128 gradient bytes.
    return nn.Sequential(nn.Linear(8, 16, bias=False), nn.Linear(16, 4, bias=False)).to(torch.bfloat16)


def _step(model: nn.Module, release: bool, micro_batches: int = 1) -> list[M.Phase]:
    opt = flashoptim.FlashAdamW(model.parameters(), lr=1e-3)
    handle = flashoptim.enable_gradient_release(model, opt) if release else None
    phases = M.StepPhases(model, ZeroCounters(), release=release)
    phases.start()
    for _ in range(micro_batches):
        model(torch.randn(3, 8, dtype=torch.bfloat16)).float().pow(2).mean().backward()
    with phases.optimizer_step():
        if not release:
            opt.step()
            opt.zero_grad(set_to_none=True)
    out = phases.finish()
    if handle is not None:
        handle.remove()
    return out


def test_with_gradient_release_each_step_holds_only_its_own_gradient() -> None:
    model = _model()
    phases = _step(model, release=True)
    steps = [ph.grads_bytes for ph in phases if ph.kind == "optimizer_step" and ph.grads_bytes]
    assert steps == [128, 256], "backward reaches the last layer first; one gradient at a time"
    assert all(p.grad is None for p in model.parameters())
    assert max(ph.grads_bytes for ph in phases) == 256, "never the 384 bytes of all gradients"


def test_without_release_gradients_accumulate_until_the_optimizer_step() -> None:
    phases = _step(_model(), release=False, micro_batches=2)
    grads = [ph.grads_bytes for ph in phases]
    # Micro-batch 1: last layer arrives (128), then the first (128 + 256). Micro-batch 2: each new
    # gradient is a summand alive next to the stored ones: 384 + 128, then 384 + 256.
    assert [g for g in grads if g][:4] == [128, 128, 384, 384]
    assert max(grads) == 384 + 256
    (step,) = [ph for ph in phases if ph.kind == "optimizer_step"]
    assert step.grads_bytes == 384


def test_hooks_are_removed_after_the_step() -> None:
    model = _model()
    phases = _step(model, release=False)
    n = len(phases)
    model(torch.randn(2, 8, dtype=torch.bfloat16)).float().sum().backward()
    assert len(phases) == n, "a finished StepPhases records nothing more: its hooks are gone"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("release", [False, True])
def test_on_cuda_the_parts_add_to_the_step_peak_and_release_holds_few_gradients(release: bool) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    dev = torch.device("cuda")
    cfg = LlamaConfig(
        vocab_size=4096,
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=8,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(dev)
    flashoptim.cast_model(model, dtype=torch.bfloat16)
    opt = flashoptim.FlashAdamW(model.parameters(), lr=1e-4)
    handle = flashoptim.enable_gradient_release(model, opt) if release else None
    meter = M.MemoryMeter(dev)
    ids = torch.randint(0, 4096, (2, 512), device=dev)

    def step(phases: M.StepPhases | None) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(input_ids=ids, labels=ids).loss.backward()
        with phases.optimizer_step() if phases is not None else contextlib.nullcontext():
            if not release:
                opt.step()
                opt.zero_grad(set_to_none=True)

    step(None)  # the optimizer state now exists
    meter.reset()
    phases = M.StepPhases(model, M.CudaCounters(meter), release=release)
    phases.start()
    step(phases)
    state = sum(
        t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if torch.is_tensor(t)
    )
    b = M.step_breakdown(
        params_bytes=M.tensor_bytes(model.parameters()),
        state_bytes=state,
        before_bytes=phases.before_bytes,
        phases=phases.finish(),
    )
    assert sum(b[k] for k in M.BREAKDOWN_KEYS) == b["step_peak_bytes"] <= meter.peaks()[0]
    assert b["activations_bytes"] >= 0 and b["other_bytes"] >= 0, b
    all_grads = sum(p.numel() * 2 for p in model.parameters())
    largest = max(p.numel() * p.element_size() for p in model.parameters())
    if release:  # only gradients not yet stepped are alive: never all of them
        assert b["grads_bytes"] <= 2 * largest < all_grads, b
    else:
        assert b["grads_bytes"] <= all_grads, b
    if handle is not None:
        handle.remove()

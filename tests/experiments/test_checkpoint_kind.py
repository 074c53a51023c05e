"""Reentrant vs non-reentrant activation checkpointing (``model.checkpoint_reentrant``,
experiments/run/models.py::build_model): the same loss and gradients, gradient release's hooks fire
for every parameter under both, FSDP2 runs never get reentrant, and the switch is not in the run id.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

import flashoptim
from common.config import compose
from experiments import config as run_config
from experiments import identity
from experiments.run import models


def _cfg(*ov: str) -> Any:
    run_config.register()
    return compose("run", ["model=tiny", *ov])


def _model(reentrant: bool, sharded: bool = False) -> Any:
    cfg = _cfg(f"model.checkpoint_reentrant={str(reentrant).lower()}")
    model, _ = models.build_model(cfg.model, 97, torch.device("cpu"), seed=3, sharded=sharded)
    model.train()
    return model


def _kind(model: Any) -> bool:
    """use_reentrant of the checkpoint function transformers installed on the decoder layers."""
    fn = model.model.layers[0]._gradient_checkpointing_func
    return bool(fn.keywords["use_reentrant"])


def test_the_switch_reaches_the_layers_and_fsdp2_runs_stay_non_reentrant() -> None:
    assert _kind(_model(True)) is True
    assert _kind(_model(False)) is False
    assert _kind(_model(True, sharded=True)) is False


def test_both_kinds_give_the_same_loss_and_gradients() -> None:
    ids = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(5))
    out = []
    for reentrant in (True, False):
        model = _model(reentrant)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        out.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (l1, g1), (l2, g2) = out
    assert torch.equal(l1, l2)
    assert g1.keys() == g2.keys() and len(g1) > 10
    for name in g1:
        assert torch.equal(g1[name], g2[name]), name
    assert _model(True).model.layers[0].gradient_checkpointing  # the layers are checkpointed at all


@pytest.mark.parametrize("reentrant", [True, False])
def test_gradient_release_steps_every_parameter_once_under_either_kind(reentrant: bool) -> None:
    model = _model(reentrant)
    flashoptim.cast_model(model, dtype=torch.bfloat16)
    before = copy.deepcopy(model.state_dict())
    opt = flashoptim.FlashAdamW(model.parameters(), lr=1e-2, master_weight_bits=24)
    stepped: list[str] = []
    names = {id(p): n for n, p in model.named_parameters()}
    handle = flashoptim.enable_gradient_release(model, opt)
    for p in model.parameters():
        p.register_post_accumulate_grad_hook(lambda q: stepped.append(names[id(q)]))
    ids = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(6))
    model(input_ids=ids, labels=ids).loss.backward()
    handle.remove()
    assert sorted(stepped) == sorted(names.values())
    assert all(p.grad is None for p in model.parameters())
    changed = [n for n, v in model.state_dict().items() if not torch.equal(v, before[n])]
    assert sorted(changed) == sorted(names.values())


def test_the_switch_is_not_part_of_the_run_id() -> None:
    a = identity.run_id(_cfg("optimizer=flashoptim_gr"))
    b = identity.run_id(_cfg("optimizer=flashoptim_gr", "model.checkpoint_reentrant=false"))
    assert a == b
    assert a != identity.run_id(_cfg("optimizer=flashoptim_gr", "model.activation_checkpointing=false"))

"""The CPU compute path of 16-bit-parameter arms (``train.cpu_fp32_compute``,
experiments/run/models.py::compute_in_fp32): bf16 weights stay bf16, the arithmetic on them is fp32.

The reference is an fp32 model holding the same (bf16-rounded) values: the fp32 path must give its
loss, and gradients equal to its gradients rounded once to bf16, landing in the parameters' dtype.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest
import torch
from run_helpers import FAST, fixture_results_root, read_metrics, read_summary, run_in_process
from transformers import LlamaConfig, LlamaForCausalLM

import flashoptim
from common.config import compose
from experiments import config as run_config
from experiments import identity
from experiments.eval import decode
from experiments.run import arms, models


def _llama(tied: bool) -> Any:
    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=97,
        max_position_embeddings=64,
        tie_word_embeddings=tied,
        use_cache=False,
    )
    cfg._attn_implementation = "sdpa"
    return LlamaForCausalLM(cfg)


def _pair(tied: bool) -> tuple[Any, Any]:
    """(bf16 model as FlashOptim casts it, fp32 model holding exactly its values)."""
    model = _llama(tied)
    flashoptim.cast_model(model, dtype=torch.bfloat16)
    ref = copy.deepcopy(model).float()
    return model, ref


def _loss(model: Any, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, labels=ids).loss


@pytest.mark.parametrize("tied", [False, True])
def test_fp32_compute_on_bf16_weights_is_the_fp32_model_rounded_once(tied: bool) -> None:
    model, ref = _pair(tied)
    keys = list(model.state_dict())
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert torch.bfloat16 in dtypes.values() and torch.float32 in dtypes.values()  # norms stay fp32
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert models.compute_in_fp32(model) == n_linear + 1  # every projection, lm_head and the embedding
    assert list(model.state_dict()) == keys  # checkpoints keep their keys
    ids = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(1))
    loss = _loss(model, ids)
    loss_ref = _loss(ref, ids)
    assert loss.dtype == torch.float32
    assert torch.equal(loss.detach(), loss_ref.detach())  # the same fp32 arithmetic on the same values
    loss.backward()
    loss_ref.backward()
    ref_params = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        assert p.dtype == dtypes[name] and p.grad is not None and p.grad.dtype == p.dtype, name
        want = ref_params[name].grad
        assert want is not None
        if tied and name == "model.embed_tokens.weight":
            # two uses (lookup and lm_head), each gradient rounded to bf16 (relative error <= 2^-9)
            # before the two are summed: the sum can cancel, so the bound is on the largest entry
            err = (p.grad.float() - want).abs().max().item()
            assert 0 < err <= 2**-8 * want.abs().max().item(), err
        else:
            assert torch.equal(p.grad, want.to(p.dtype)), name


def test_without_the_fp32_path_a_bf16_model_computes_in_bf16() -> None:
    """The control: the same model under bf16 autocast (the GPU path) does not give the fp32 loss,
    so the equality above is a property of the fp32 path, not of the model."""
    model, ref = _pair(False)
    ids = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        loss = _loss(model, ids)
    with torch.no_grad():
        assert not torch.equal(loss.float(), _loss(ref, ids))


def test_activation_recomputation_runs_the_fp32_forward() -> None:
    model, ref = _pair(False)
    models.compute_in_fp32(model)
    for m in (model, ref):
        m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        m.train()
    ids = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(2))
    _loss(model, ids).backward()
    _loss(ref, ids).backward()
    ref_params = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        assert torch.equal(p.grad, ref_params[name].grad.to(p.dtype)), name


def test_the_static_decoder_caches_what_the_fp32_path_computes() -> None:
    """Greedy decoding of the fp32-compute bf16 model gives the fp32 reference's tokens (the cache
    holds fp32 keys and values; a bf16 cache would round them)."""
    model, ref = _pair(False)
    models.compute_in_fp32(model)
    ids = torch.randint(2, 97, (3, 9), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    ids[0, :3] = 0
    kw: dict[str, Any] = {"max_new_tokens": 12, "eos_id": -1, "pad_id": 0}
    ours = decode.StaticCacheDecoder(model.eval()).generate(ids, mask, **kw)
    want = decode.StaticCacheDecoder(ref.eval()).generate(ids, mask, **kw)
    assert torch.equal(ours, want)


@pytest.mark.parametrize("tied", [False, True])
def test_held_fp32_weights_decode_the_same_tokens_and_are_used_only_for_inference(tied: bool) -> None:
    """Evaluation casts each bf16 weight once (models.fp32_weights_held): the same tokens as casting at
    every forward; inside the hold the forward reads the copy (a change to the stored weights is not
    seen), a forward with gradients casts afresh, and on exit the copies are gone."""
    model, _ = _pair(tied)
    models.compute_in_fp32(model)
    model.eval()
    ids = torch.randint(2, 97, (3, 9), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    kw: dict[str, Any] = {"max_new_tokens": 12, "eos_id": -1, "pad_id": 0}
    with torch.no_grad():
        cast = decode.StaticCacheDecoder(model).generate(ids, mask, **kw)
        logits = model(input_ids=ids).logits
    with models.fp32_weights_held(model):
        held = decode.StaticCacheDecoder(model).generate(ids, mask, **kw)
        assert torch.equal(held, cast)
        copies = {id(m.held) for m in model.modules() if isinstance(m, models.Fp32ComputeLinear)}
        if tied:  # lm_head and the embedding share one weight, so one copy
            assert model.lm_head.held is model.model.embed_tokens.held
        with torch.no_grad():
            for p in model.parameters():
                if p.dtype == torch.bfloat16:  # the projections and the embedding (norms stay fp32)
                    p.zero_()
            assert torch.equal(model(input_ids=ids).logits, logits)  # the held copies, not the zeros
        with torch.enable_grad():
            assert not torch.equal(model(input_ids=ids).logits, logits)  # training casts afresh
    assert len(copies) >= 2
    assert all(getattr(m, "held", None) is None for m in model.modules())
    with torch.no_grad():  # after the hold: the stored (zeroed) weights
        assert not torch.equal(model(input_ids=ids).logits, logits)


OPT = {name: identity.arm_config(name) for name in ("adamw", "flashoptim", "adam8bit_bf16")}


@functools.cache
def _default_train() -> Any:
    run_config.register()
    return compose("run", []).train


def _train(**kw: Any) -> Any:
    train = copy.deepcopy(_default_train())
    for key, value in kw.items():
        train[key] = value
    return train


@pytest.mark.parametrize(
    ("arm", "device", "train", "want"),
    [
        ("flashoptim", "cpu", {}, (None, True, "float32", "fp32_upcast")),
        ("adam8bit_bf16", "cpu", {}, (None, True, "float32", "fp32_upcast")),
        ("flashoptim", "cpu", {"cpu_fp32_compute": False}, (torch.bfloat16, False, "bfloat16", "autocast")),
        ("flashoptim", "cuda", {}, (torch.bfloat16, False, "bfloat16", "autocast")),  # GPU unchanged
        ("adamw", "cpu", {}, (None, False, "float32", "param_dtype")),
        ("adamw", "cpu", {"cpu_autocast": True}, (torch.bfloat16, False, "bfloat16", "autocast")),
        ("adamw", "cuda", {}, (torch.bfloat16, False, "bfloat16", "autocast")),
    ],
)
def test_compute_path_per_arm_and_device(arm: str, device: str, train: dict[str, bool], want: tuple) -> None:
    c = arms.compute(OPT[arm], torch.device(device), _train(**train))
    assert (c.autocast, c.fp32_upcast, c.dtype, c.path) == want


def test_the_switch_enters_the_run_id_of_16_bit_arms_only() -> None:
    run_config.register()

    def rid(*ov: str) -> str:
        return identity.run_id(compose("run", list(ov)))

    assert rid("optimizer=flashoptim") != rid("optimizer=flashoptim", "train.cpu_fp32_compute=false")
    assert rid("optimizer=adamw") == rid("optimizer=adamw", "train.cpu_fp32_compute=false")


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_results_root(tmp_path_factory)


def test_a_cpu_run_records_its_compute_path_and_both_paths_train(results_root: Path) -> None:
    out = {}
    for switch in ("true", "false"):
        code, run_dir = run_in_process(
            results_root, ["optimizer=flashoptim", *FAST, f"train.cpu_fp32_compute={switch}"]
        )
        s = read_summary(run_dir)
        assert code == 0 and s["status"] == "completed", s["status_reason"]
        assert s["param_bytes_per_param"] < 2.1  # bf16 weights either way (fp32 norms only)
        out[switch] = (s["compute_path"], s["compute_dtype"], [r["loss"] for r in read_metrics(run_dir)])
    assert out["true"][:2] == ("fp32_upcast", "float32")
    assert out["false"][:2] == ("autocast", "bfloat16")
    for _, _, losses in out.values():
        assert losses[-1] < losses[0]
    # the same weights and data: the first loss agrees to bf16 rounding of the activations
    assert out["true"][2][0] == pytest.approx(out["false"][2][0], rel=0.02)

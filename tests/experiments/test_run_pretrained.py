"""`model.pretrained_path` loads local weights and their tokenizer with from_pretrained, and the
summary says so; a finished run is not redone, and resume without a checkpoint starts afresh."""

from __future__ import annotations

from pathlib import Path

import pytest
from run_helpers import FAST, compose_run, fixture_results_root, read_metrics, read_summary, run_in_process


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_results_root(tmp_path_factory)


def _save_pretrained(out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from experiments.eval.textdata import EOS, PAD, TextCodec

    codec = TextCodec.train_bpe(["BC: liver | mu=1.50 -> STRESS: 1.20 -3.40e-1 0 5.60e2"] * 50, 320)
    tok = PreTrainedTokenizerFast(tokenizer_object=codec.tok, eos_token=EOS, pad_token=PAD)
    cfg = LlamaConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        vocab_size=len(tok),
        tie_word_embeddings=False,
    )
    torch.manual_seed(123)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)


def test_pretrained_weights_and_tokenizer_are_loaded_and_reported(results_root: Path, tmp_path: Path) -> None:
    _save_pretrained(tmp_path / "tiny-pretrained")
    code, run_dir = run_in_process(
        results_root, [*FAST, f"model.pretrained_path={tmp_path / 'tiny-pretrained'}"]
    )
    s = read_summary(run_dir)
    assert code == 0 and s["status"] == "completed", s["status_reason"]
    assert s["model_init"] == "pretrained" and s["tokenizer"] == "pretrained"
    assert s["n_params"] < 100_000  # the saved 1-layer model, not the tiny preset
    assert not (run_dir / "tokenizer.json").exists()


def test_completed_run_is_not_redone_and_resume_without_checkpoint_starts_fresh(results_root: Path) -> None:
    ov = [*FAST, "sweep_id=redo"]
    _, run_dir = run_in_process(results_root, ov)
    first = (run_dir / "summary.json").stat().st_mtime_ns
    code, _ = run_in_process(results_root, ov)
    assert code == 0 and (run_dir / "summary.json").stat().st_mtime_ns == first  # skipped: already completed
    failed = [*ov, "train.lr=1000", "train.divergence.after_step=1", "train.max_steps=8"]
    _, bad_dir = run_in_process(results_root, failed)
    assert read_summary(bad_dir)["status"] == "diverged" and not (bad_dir / "checkpoint.pt").exists()
    code, again = run_in_process(results_root, [*failed, "resume=true"])
    assert again == bad_dir and code == 0
    steps = [r["step"] for r in read_metrics(bad_dir)]
    assert steps[0] == 1 and steps == sorted(set(steps))  # a fresh start: one metrics history
    assert compose_run(results_root, ov).resume is False

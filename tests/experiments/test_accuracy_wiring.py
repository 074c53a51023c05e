"""Issue 14 in the run: every summary carries the accuracy endpoint (primary metric and the other
definitions, parse failures and their scored size, strata), the best non-learned baseline on the
same samples, and the teacher-forced target NLL; the control arms train and hold what they claim.

Expected values are derived here from the dataset and the definitions (docs/accuracy-endpoint.md),
not read back from the code under test."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from run_helpers import FAST, fixture_results_root, read_summary, run_in_process
from transformers import LlamaConfig, LlamaForCausalLM

from common.config import compose
from datagen.dataset import dataset_dir, load_split
from experiments import identity
from experiments.eval import accuracy as acc
from experiments.eval.evaluate import SplitMeta, score_accuracy, target_nll
from experiments.eval.textdata import EncodedSample, TextCodec, target_text


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_results_root(tmp_path_factory)


@pytest.fixture(scope="module")
def adamw(results_root: Path) -> tuple[dict[str, Any], Path]:
    code, run_dir = run_in_process(results_root, ["optimizer=adamw", *FAST])
    assert code == 0
    return read_summary(run_dir), run_dir


def _per_sample_median(pred: np.ndarray, true: np.ndarray) -> float:
    e = np.linalg.norm((pred - true).reshape(len(true), -1), axis=1)
    n = np.linalg.norm(true.reshape(len(true), -1), axis=1)
    return float(np.median(e / n))


def _best_non_learned(train: dict[str, Any], held: dict[str, Any], k: int) -> tuple[str, float]:
    """By hand: every non-learned baseline on the first k held-out samples under the primary
    definition of conf/baselines/default.yaml (the median over samples of the relative L2 error)."""
    ts, true = np.asarray(train["stress"]), np.asarray(held["stress"][:k])
    key = ("tissue", "behaviour", "material_model", "scenario")
    tg = ["/".join(str(train[f][i]) for f in key) for i in range(len(ts))]
    hg = ["/".join(str(held[f][i]) for f in key) for i in range(k)]
    preds = {
        "zeros": np.zeros_like(true),
        "train_median": np.broadcast_to(np.median(ts, axis=0), true.shape),
        "train_mean": np.broadcast_to(ts.mean(axis=0), true.shape),
    }
    for stat, f in (("mean", np.mean), ("median", np.median)):
        preds[f"group_{stat}"] = np.stack(
            [f(ts[[g == h for g in tg]], axis=0) if h in tg else f(ts, axis=0) for h in hg]
        )
    scores = {name: _per_sample_median(p, true) for name, p in preds.items()}
    best = min(scores, key=lambda n: scores[n])
    return best, scores[best]


def test_summary_carries_the_accuracy_endpoint(
    results_root: Path, adamw: tuple[dict[str, Any], Path]
) -> None:
    s, run_dir = adamw
    assert s["status"] == "completed", s["status_reason"]
    d = dataset_dir(compose("run", [f"results_root={results_root}"]).data, results_root)
    train, val, test = (load_split(d, k) for k in ("train", "val", "test"))
    for prefix, held in (("", test), ("val_", val)):
        name, value = _best_non_learned(train, held, 2)
        assert s[f"{prefix}best_baseline_name"] == name
        assert s[f"{prefix}best_baseline_rel_l2_error"] == pytest.approx(value, rel=1e-9)
        assert s[f"{prefix}rel_l2_metric"] == "per_sample_median"
        assert s[f"{prefix}rel_l2_error"] == s[f"{prefix}rel_l2_per_sample_median"]
        for m in acc.METRICS:
            assert math.isfinite(s[f"{prefix}rel_l2_{m}"])
        assert s[f"{prefix}parse_failures"] == round(s[f"{prefix}parse_failure_rate"] * 2)
        assert s[f"{prefix}eval_samples"] == 2
    assert s["trivial_rel_l2_error"] == s["best_baseline_rel_l2_error"]
    assert set(s["accuracy_strata"]) == {"val", "test"}
    assert set(s["accuracy_strata"]["test"]) == {"tissue", "behaviour", "scenario"}
    assert sum(v["n"] for v in s["accuracy_strata"]["test"]["tissue"].values()) == 2
    assert s["baselines"]["splits"]["test"]["best_non_learned"]["value"] == s["best_baseline_rel_l2_error"]
    # The NLL counts every target token (stress values and eos) of the two test samples.
    codec = TextCodec.load(run_dir / "tokenizer.json")
    want = sum(len(codec.encode(target_text(x, 3, 1e-6), first=False)) + 1 for x in test["stress"][:2])
    assert s["target_nll_tokens"] == want
    assert 0 < s["target_nll"] < math.log(codec.vocab_size) * 2 and s["val_target_nll"] > 0


def test_predictions_file_rescores_to_the_summary(
    results_root: Path, adamw: tuple[dict[str, Any], Path]
) -> None:
    """predictions.npz holds each split's generated texts and parsed predictions; scoring them again
    by hand gives the summary's per-sample median and parse-failure count (every accuracy number
    traces back to the run directory)."""
    s, run_dir = adamw
    z = np.load(run_dir / "predictions.npz")
    d = dataset_dir(compose("run", [f"results_root={results_root}"]).data, results_root)
    ctx = acc.MetricContext.from_json(json.loads(Path(s["baselines"]["path"]).read_text())["metric_context"])
    for prefix, split in (("", "test"), ("val_", "val")):
        held = load_split(d, split)
        true = np.asarray(held["stress"][:2], dtype=np.float64)
        pred, texts = z[f"{split}_pred"], z[f"{split}_texts"]
        assert pred.shape == true.shape and len(texts) == 2
        parsed = ~np.isnan(pred).any(axis=(1, 2))
        assert int((~parsed).sum()) == s[f"{prefix}parse_failures"]
        labels = acc.group_labels({f: held[f][:2] for f in ctx.scale_group}, ctx.scale_group)
        again = acc.score(np.nan_to_num(pred), true, labels, ctx, parsed=parsed)
        assert again["rel_l2_primary"] == pytest.approx(s[f"{prefix}rel_l2_error"], rel=1e-12)
        assert again["pooled"] == pytest.approx(s[f"{prefix}rel_l2_pooled"], rel=1e-12)


def test_a_run_scores_its_outputs_with_its_own_number_of_digits(
    results_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The format check needs train.text.significant_digits: the run must hand it to the scorer
    (else a run-together number is scored as the huge value its digits spell)."""
    from experiments.eval import evaluate

    seen: list[Any] = []
    real = evaluate.score_accuracy

    def spy(*args: Any, **kwargs: Any) -> dict[str, Any]:
        seen.append(kwargs.get("significant_digits", args[5] if len(args) > 5 else None))
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "score_accuracy", spy)
    code, run_dir = run_in_process(results_root, ["train.text.significant_digits=4", *FAST])
    assert code == 0 and read_summary(run_dir)["status"] == "completed"
    assert seen and set(seen) == {4}


def test_replicate_arm_has_its_own_seed_stream(
    results_root: Path, adamw: tuple[dict[str, Any], Path]
) -> None:
    s, _ = adamw
    code, run_dir = run_in_process(results_root, ["optimizer=adamw_replicate", *FAST])
    r = read_summary(run_dir)
    assert code == 0 and r["status"] == "completed" and r["optimizer"] == "adamw_replicate"
    assert r["seed"] == s["seed"] and r["initial_loss"] != s["initial_loss"]  # another init
    ref = identity.run_settings(compose("run", [f"results_root={results_root}", *FAST]))
    rep = identity.run_settings(
        compose("run", [f"results_root={results_root}", "optimizer=adamw_replicate", *FAST])
    )
    assert "seed_offset" not in ref["optimizer"]  # arms without it keep their ids
    assert rep["optimizer"]["seed_offset"] == 1000


def test_the_same_seed_negative_control_is_adamw_rounded_differently(
    results_root: Path, adamw: tuple[dict[str, Any], Path]
) -> None:
    """adamw_foreach: AdamW's own seed (init, data order) and update, with the foreach implementation
    on CUDA where AdamW uses the fused kernel; a run of its own (another id). On a CPU both take the
    foreach path: the same numbers, which is what a twin that only rounds differently must give there."""
    from experiments.run.arms import optimizer_kwargs

    s, _ = adamw
    code, run_dir = run_in_process(results_root, ["optimizer=adamw_foreach", *FAST])
    r = read_summary(run_dir)
    assert code == 0 and r["status"] == "completed" and r["optimizer"] == "adamw_foreach"
    assert r["seed"] == s["seed"] and r["initial_loss"] == s["initial_loss"]  # the same init and batch
    assert r["final_loss"] == pytest.approx(s["final_loss"], rel=1e-6)
    assert r["run_id"] != s["run_id"]
    cfg = {
        a: compose("run", [f"results_root={results_root}", f"optimizer={a}", *FAST])
        for a in ("adamw", "adamw_foreach")
    }
    cuda = torch.device("cuda")
    assert optimizer_kwargs(cfg["adamw"].optimizer, cfg["adamw"].train, cuda).get("fused") is True
    assert "fused" not in optimizer_kwargs(cfg["adamw_foreach"].optimizer, cfg["adamw_foreach"].train, cuda)
    assert not cfg["adamw_foreach"].optimizer.seed_offset
    # the pilot declares it as its negative control and runs it
    from scripts.gpu_pilot import ACCURACY_ANALYSIS, ARMS

    assert "controls.negative=[adamw_foreach]" in ACCURACY_ANALYSIS and "adamw_foreach" in ARMS


@pytest.mark.parametrize(("arm", "dtype"), [("adamw_bf16", "bfloat16"), ("adam8bit_bf16", "uint8")])
def test_positive_control_arms_step_bf16_weights(results_root: Path, arm: str, dtype: str) -> None:
    code, run_dir = run_in_process(results_root, [f"optimizer={arm}", *FAST])
    s = read_summary(run_dir)
    assert code == 0 and s["status"] == "completed", s["status_reason"]
    assert s["state_materialised"] is True and dtype in s["optimizer_state_dtypes"]
    # bf16 matrices, fp32 norm gains only: far below AdamW's 4 bytes of fp32 master weights
    assert 2.0 <= s["param_bytes_per_param"] < 2.2
    assert math.isfinite(s["rel_l2_error"]) and math.isfinite(s["target_nll"])


def _ctx() -> acc.MetricContext:
    return acc.MetricContext(
        primary="floored_mean",
        floor_kpa=2.0,
        scale_group=("tissue",),
        group_scale_kpa={"a": 10.0, "b": 4.0},
        global_scale_kpa=8.0,
        failure_penalty=("zeros", "train_median"),
        fallback_fields={"zeros": np.zeros((1, 6)), "train_median": np.array([[0, 0, 0, 0, 0, -1.0]])},
    )


def test_score_accuracy_known_answer_with_a_failure_and_strata() -> None:
    # Norms 5, 1, 2. Sample 0 predicted (4,4): error 1; sample 1 garbage: penalty = worse of zeros
    # (error 1) and the median field (error 2) = 2; sample 2 exact.
    true = np.zeros((3, 1, 6))
    true[0, 0, :2] = (3, 4)
    true[1, 0, 5] = 1
    true[2, 0, 2] = 2
    texts = ["4 4 0 0 0 0", "1.0 nonsense", "0 0 2 0 0 0"]
    meta = SplitMeta(labels=np.array(["a", "b", "b"]), strata={"tissue": np.array(["a", "b", "b"])})
    out = score_accuracy(texts, true, _ctx(), meta)
    terms = [1 / 5, 2 / 2, 0 / 2]  # e_i / max(n_i, floor 2)
    assert out["rel_l2_error"] == pytest.approx(np.mean(terms)) and out["rel_l2_metric"] == "floored_mean"
    assert out["rel_l2_pooled"] == pytest.approx(3 / 8)
    assert out["parse_failures"] == 1 and out["parse_failure_rate"] == pytest.approx(1 / 3)
    assert out["parse_failure_term"] == pytest.approx(1.0)
    assert out["parse_failure_share"] == pytest.approx(1.0 / sum(terms))
    assert out["strata"]["tissue"]["a"] == pytest.approx({"n": 1, **_all(0.2, 0.2, 0.2, 0.1)})
    assert out["strata"]["tissue"]["b"]["floored_mean"] == pytest.approx(0.5)
    assert out["strata"]["tissue"]["b"]["pooled"] == pytest.approx(2 / 3)


def test_a_run_together_number_is_a_parse_failure_with_the_stated_penalty_not_a_huge_error() -> None:
    """Pilot v4 (H200): a missing space joined shared_exp integers into '-315212100210', scored as a
    prediction 10^8 times the sample's norm; that one sample moved the floored mean by e^12 between
    two otherwise equal runs. With the run's digits it is a counted parse failure scored with the
    penalty (the worse of zeros and the median field)."""
    true = np.zeros((2, 1, 6))
    true[0, 0, :2] = (3, 4)  # norm 5
    true[1, 0, 2] = 2  # norm 2
    texts = [" 1e0 4 4 0 0 0 0", " 1e0 0 0 2 0 0 315212100210"]
    meta = SplitMeta(labels=np.array(["a", "b"]), strata={})
    strict = score_accuracy(texts, true, _ctx(), meta, "shared_exp", significant_digits=3)
    loose = score_accuracy(texts, true, _ctx(), meta, "shared_exp")
    # sample 1 under the penalty: max(||true|| = 2, ||median field - true|| = sqrt(5)) over floor 2
    penalty = np.sqrt(5) / 2
    assert strict["parse_failures"] == 1 and loose["parse_failures"] == 0
    assert strict["rel_l2_floored_mean"] == pytest.approx(np.mean([1 / 5, penalty]))
    assert loose["rel_l2_floored_mean"] > 1e10  # the digits read as one number
    assert np.isnan(strict["_pred"][1]).all() and strict["_pred"][0, 0, 0] == 4


def _all(rel: float, floored: float, median: float, scaled: float) -> dict[str, float]:
    return {
        "pooled": rel,
        "per_sample_mean": rel,
        "per_sample_median": median,
        "floored_mean": floored,
        "group_scaled_mean": scaled,
    }


def test_target_nll_is_the_models_own_loss_and_ignores_padding() -> None:
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=50,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    ).eval()
    rng = np.random.default_rng(0)
    samples = [
        EncodedSample(rng.integers(3, 50, p).tolist(), rng.integers(3, 50, t).tolist())
        for p, t in ((5, 4), (9, 2), (3, 7))
    ]
    losses, counts = [], []
    for e in samples:  # one at a time, no padding: HF's own shifted cross-entropy over target tokens
        ids = torch.tensor([e.prompt_ids + e.target_ids])
        labels = torch.tensor([[-100] * len(e.prompt_ids) + e.target_ids])
        with torch.no_grad():
            losses.append(float(model(input_ids=ids, labels=labels).loss))
        counts.append(len(e.target_ids))
    want = sum(lo * n for lo, n in zip(losses, counts)) / sum(counts)
    for batch_size in (1, 3):  # 3: right-padded to the longest sample
        out = target_nll(model, samples, batch_size=batch_size, device=torch.device("cpu"), autocast=None)
        assert out is not None
        assert out["target_nll"] == pytest.approx(want, rel=1e-5)
        assert out["target_nll_sample_mean"] == pytest.approx(np.mean(losses), rel=1e-5)
        assert out["target_nll_tokens"] == sum(counts)

"""Failure is a result: every ending leaves a complete run directory with one terminal status and
exit code 0 (a sweep goes on); an interrupted run resumes onto the identical trajectory."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from run_helpers import FAST, fixture_results_root, read_metrics, read_summary, run_in_process


@pytest.fixture(scope="module")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_results_root(tmp_path_factory)


def _complete(run_dir: Path) -> dict:
    s = read_summary(run_dir)
    for name in ("config.yaml", "manifest.json", "run.log", "summary.json"):
        assert (run_dir / name).is_file(), name
    assert s["status"] in ("completed", "oom", "diverged", "aborted", "failed")
    assert s["status_reason"] or s["status"] == "completed"
    return s


def test_nan_or_exploding_loss_is_diverged(results_root: Path) -> None:
    # losses read back every 3 steps: the verdict may fall inside an interval, yet every computed
    # step is in metrics.jsonl
    code, run_dir = run_in_process(
        results_root,
        [
            *FAST,
            "train.max_steps=8",
            "train.lr=1000",
            "train.divergence.after_step=1",
            "harness.sync_every_steps=3",
        ],
    )
    s = _complete(run_dir)
    assert code == 0 and s["status"] == "diverged", s["status_reason"]
    rows = read_metrics(run_dir)
    # the recorded reason is true of the recorded numbers
    assert any(
        r["loss"] is None or not math.isfinite(r["loss"]) or r["loss"] > 2 * rows[0]["loss"]
        for r in rows
        if r["step"] > 1
    )
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))
    assert s["steps_completed"] == rows[-1]["step"] < 8 and len(rows) % 3 == 0
    assert s["rel_l2_error"] is None  # no evaluation of a diverged model


def test_other_exception_is_failed_with_traceback(results_root: Path) -> None:
    # An arm added by config whose class rejects the shared hyper-parameters (SGD has no betas).
    code, run_dir = run_in_process(
        results_root, [*FAST, "optimizer.target=torch.optim.SGD", "optimizer.name=sgd_by_config"]
    )
    s = _complete(run_dir)
    assert code == 0 and s["status"] == "failed"
    assert "TypeError" in s["status_reason"]
    tb = (run_dir / s["traceback_file"]).read_text()
    assert "Traceback" in tb and "betas" in tb


def test_operator_stop_aborts_with_checkpoint_and_resume_is_bit_identical(results_root: Path) -> None:
    base = [*FAST, "train.max_steps=6", "harness.checkpoint_every_steps=2"]
    code, ref_dir = run_in_process(results_root, [*base, "sweep_id=uninterrupted"])
    assert code == 0 and read_summary(ref_dir)["status"] == "completed"
    reference = [r["loss"] for r in read_metrics(ref_dir)]

    code, run_dir = run_in_process(
        results_root, [*base, "sweep_id=interrupted", "harness.stop_after_steps=3"]
    )
    s = _complete(run_dir)
    assert code == 0 and s["status"] == "aborted" and s["resumable"] is True
    assert s["steps_completed"] == 3 and s["checkpoint_bytes"] > 0
    assert (run_dir / "checkpoint.pt").stat().st_size == s["checkpoint_bytes"]

    code, run_dir2 = run_in_process(results_root, [*base, "sweep_id=interrupted", "resume=true"])
    assert run_dir2 == run_dir
    s2 = read_summary(run_dir)
    assert code == 0 and s2["status"] == "completed" and s2["steps_completed"] == 6
    resumed = [r["loss"] for r in read_metrics(run_dir)]
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3, 4, 5, 6]
    assert resumed == reference  # bit-identical on CPU
    assert s2["rel_l2_error"] == read_summary(ref_dir)["rel_l2_error"]


def test_same_config_and_seed_give_the_same_loss_curve(results_root: Path) -> None:
    curves = []
    for sweep in ("repeat-a", "repeat-b"):
        code, run_dir = run_in_process(results_root, [*FAST, f"sweep_id={sweep}", "seed=3"])
        assert code == 0
        curves.append([r["loss"] for r in read_metrics(run_dir)])
    assert curves[0] == curves[1]
    _, other_seed = run_in_process(results_root, [*FAST, "sweep_id=repeat-a", "seed=4"])
    assert [r["loss"] for r in read_metrics(other_seed)] != curves[0]


def test_sigterm_checkpoints_and_aborts_resumably(results_root: Path) -> None:
    """A real SIGTERM (sent from another thread once training is under way) ends the run as
    aborted with a checkpoint; the process itself carries on (exit code 0)."""
    overrides = [*FAST, "train.max_steps=400", "sweep_id=sigterm"]
    from run_helpers import compose_run

    from experiments import identity

    run_dir = identity.run_dir(compose_run(results_root, overrides))
    sent = threading.Event()

    def kill_when_training() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            m = run_dir / "metrics.jsonl"
            if m.exists() and len(m.read_text().splitlines()) >= 2:
                os.kill(os.getpid(), signal.SIGTERM)
                sent.set()
                return
            time.sleep(0.05)

    t = threading.Thread(target=kill_when_training, daemon=True)
    t.start()
    code, _ = run_in_process(results_root, overrides)
    t.join(timeout=5)
    assert sent.is_set()
    s = _complete(run_dir)
    assert code == 0 and s["status"] == "aborted" and "SIGTERM" in s["status_reason"]
    assert s["resumable"] is True and 2 <= s["steps_completed"] < 400
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_cpu_allocator_failure_is_classified_as_oom() -> None:
    import torch

    from experiments.run.session import is_oom

    with pytest.raises(RuntimeError) as exc:
        torch.empty(2**60, dtype=torch.uint8)  # 1 EiB: refused by the allocator, nothing touched
    assert is_oom(exc.value)
    assert not is_oom(RuntimeError("shape mismatch"))


def test_a_model_too_large_for_host_memory_is_refused_as_oom_before_allocating(results_root: Path) -> None:
    code, run_dir = run_in_process(results_root, [*FAST, "model=llama2-13b", "model.vocab_size=32000"])
    s = _complete(run_dir)
    assert code == 0 and s["status"] == "oom" and "not allocated" in s["status_reason"]
    assert s["steps_completed"] == 0
    assert s["peak_mem_allocated_bytes"] is None and s["mem_measurable"] is False  # CPU: not measurable

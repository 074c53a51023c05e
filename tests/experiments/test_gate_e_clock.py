"""Gate E at smoke scale decides on process CPU time (``gates.E.clock: process_cpu``), so its decision
does not depend on how loaded the machine was while the reference or the treatment ran.

The unit tests plant rows; the slow test runs the real engine: an AdamW reference on the machine as
it is, then the FlashOptim treatment once as is and once with busy processes on every core, and
replays both treatments' metrics through the gate at the smoke threshold (passes) and at the
protocol's 0.5 (FlashOptim made to compute on CPU under bf16 autocast, ``train.cpu_fp32_compute=false``,
which this CPU emulates: about 3.7x AdamW's CPU time per step, a genuinely slower treatment, which
must fire).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from run_helpers import FAST, fixture_results_root, read_metrics, read_summary, run_in_process
from test_gates import reference, row, write_run

from common.config import ConfigError, compose
from experiments import gates as G
from experiments.config import register


def _run_config(scale: str) -> Any:
    register()  # the run schema (conf/run.yaml's defaults) lives in the config store
    return compose("run", [f"scale={scale}"])


@pytest.fixture(scope="module")
def smoke_gates() -> Any:
    return _run_config("smoke").gates


def test_smoke_scale_uses_the_cpu_clock_with_one_thread() -> None:
    cfg = _run_config("smoke")
    assert cfg.gates.E.clock == "process_cpu" and cfg.harness.cpu_threads == 1
    protocol = _run_config("protocol")
    assert protocol.gates.E.clock == "wall" and protocol.harness.cpu_threads is None


def test_process_cpu_clock_reads_tokens_per_cpu_s_not_wall(tmp_path: Path, smoke_gates: Any) -> None:
    # Wall throughput says the treatment is 10x faster than the reference; CPU throughput says it
    # does 20x the work per token: the CPU clock decides, and fires.
    ref = write_run(
        tmp_path / "ref",
        arm="adamw",
        rows=[row(s) for s in range(1, 31)],
        tokens_per_s=100.0,
        tokens_per_cpu_s=2000.0,
    )
    g = G.InRunGates(smoke_gates, arm="flashoptim", reference_run_dir=ref, total_steps=30)
    for s in range(1, 31):
        g.on_step(s, {**row(s, tps=1000.0), "tokens_per_cpu_s": 100.0})
    e = next(d for d in g.decisions() if d["gate"] == "E")
    assert e["fired"] and e["values"]["clock"] == "process_cpu"
    assert e["values"]["throughput_ratio"] == pytest.approx(0.05)
    assert e["values"]["reference_tokens_per_cpu_s"] == 2000.0 and e["values"]["tokens_per_cpu_s"] == 100.0


def test_process_cpu_clock_without_cpu_figures_is_not_evaluable(tmp_path: Path, smoke_gates: Any) -> None:
    g = G.InRunGates(smoke_gates, arm="flashoptim", reference_run_dir=reference(tmp_path), total_steps=30)
    for s in range(1, 31):
        g.on_step(s, row(s))  # a reference summary and rows from before the CPU clock: wall figures only
    e = next(d for d in g.decisions() if d["gate"] == "E")
    assert e["outcome"] == "not_evaluable" and "no tokens_per_cpu_s" in e["reason"]


def test_an_unknown_clock_is_refused_in_one_line(smoke_gates: Any) -> None:
    bad = smoke_gates.copy()
    bad.E.clock = "sundial"
    with pytest.raises(ConfigError, match=r"gates\.E\.clock.*sundial.*'wall', 'process_cpu'"):
        G.validate(bad)


# ----------------------------------------------------------------------------- real runs, real load
# cpu_fp32_compute=false: the treatment computes in emulated bf16 (the slower treatment the test needs;
# the switch is not in AdamW's run id, so the treatment's gate still finds its reference)
SMOKE_SHORT = [
    *FAST,
    "scale=smoke",
    "train.max_steps=8",
    "gates.A.enabled=false",
    "train.cpu_fp32_compute=false",
]


@contextlib.contextmanager
def busy_machine(n: int) -> Iterator[None]:
    """``n`` processes spinning on the CPU for the duration (ended by pid)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _replayed_e(gates_cfg: Any, run_dir: Path, ref_dir: Path, min_ratio: float) -> dict[str, Any]:
    cfg = gates_cfg.copy()
    cfg.E.min_ratio = min_ratio
    rows = read_metrics(run_dir)
    g = G.InRunGates(cfg, arm="flashoptim", reference_run_dir=ref_dir, total_steps=len(rows))
    for r in rows:
        g.on_step(r["step"], r)
    return next(d for d in g.decisions() if d["gate"] == "E")


@pytest.mark.slow
def test_gate_e_decision_is_the_same_on_a_loaded_machine(
    tmp_path_factory: pytest.TempPathFactory, smoke_gates: Any
) -> None:
    root = fixture_results_root(tmp_path_factory)
    decided = {}
    for load in ("as-is", "loaded"):
        common = [*SMOKE_SHORT, f"sweep_id=clock-{load}"]
        _, ref_dir = run_in_process(root, common)  # the reference always on the machine as it is
        assert read_summary(ref_dir)["tokens_per_cpu_s"] > 0
        with busy_machine(2 * (os.cpu_count() or 1) + 2) if load == "loaded" else contextlib.nullcontext():
            code, run_dir = run_in_process(root, [*common, "optimizer=flashoptim"])
        s = read_summary(run_dir)
        assert code == 0 and s["status"] == "completed", s["status_reason"]
        (e,) = [g for g in s["gates"] if g["gate"] == "E"]
        assert e["values"]["clock"] == "process_cpu" and e["outcome"] == "pass", e
        protocol = _replayed_e(smoke_gates, run_dir, ref_dir, 0.5)
        assert protocol["fired"], protocol  # the protocol's threshold aborts the slower treatment
        decided[load] = e["values"]["throughput_ratio"]
    # Same decisions; the ratios themselves agree within 35% (wall tokens/s moved ~2x under this load).
    assert 1 / 1.35 < decided["loaded"] / decided["as-is"] < 1.35, decided

"""Pair runs by seed and grid point, and read each run's numbers with the reason when there is none.

A *pair* is (treatment run, reference run) with the same seed and the same value of every grid axis
(``summary["grid"]``: model, seq_len, global_batch, behaviour). Memory of a run that ended ``oom``
is not a number but a bound: its peak was at least the device's memory. Memory on CPU is null with
``mem_measurable=false``: such runs give no memory number and the reason says so.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml

from analysis.load import Run, Sweep, finite
from common.config import CONF_DIR

GIB = float(1 << 30)


def gib(x: float) -> str:
    return f"{x / GIB:.1f} GiB"


def cell_label(cell: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{k}={v}" for k, v in cell) or "(single cell)"


def model_of(cell: tuple[tuple[str, str], ...]) -> str:
    return dict(cell).get("model", "?")


@dataclass
class MemoryValue:
    """A run's peak memory: exact bytes, a lower bound (oom), or none with the reason."""

    bytes: float | None
    is_lower_bound: bool
    why_missing: str | None


def memory_of(run: Run, cfg: Any, metric: str | None = None) -> MemoryValue:
    """``metric`` (default: the first of cfg.memory_metrics) of ``run``: bytes, an OOM bound, or why not."""
    metric = metric or cfg.memory_metrics[0]
    if run.status == "oom":
        device = run.device_memory_bytes()
        if device is None:
            return MemoryValue(
                None,
                False,
                f"{run.arm} ran out of memory (run {run.run_id}) and the "
                "device memory is not recorded, so no bound can be given",
            )
        return MemoryValue(device, True, None)
    value = run.num(metric)
    if run.summary.get("mem_measurable") is False or (
        value is None and run.status in cfg.memory_statuses and run.summary.get("mem_measurable") is None
    ):
        return MemoryValue(
            None,
            False,
            f"peak memory not measurable on {run.summary.get('device') or 'CPU'} (mem_measurable=false)",
        )
    if run.status not in cfg.memory_statuses:
        return MemoryValue(
            None,
            False,
            f"{run.arm} run {run.run_id} ended {run.status}: "
            f"{run.summary.get('status_reason') or 'no reason recorded'}",
        )
    if value is None:
        return MemoryValue(None, False, f"{run.arm} run {run.run_id} has no {metric}")
    return MemoryValue(value, False, None)


def quality_of(run: Run, key: str, cfg: Any) -> tuple[float | None, str | None]:
    """A finished run's positive number ``key`` (rel_l2_error, tokens_per_s, final_loss) or the reason.

    A run stopped by an abort gate counts with the numbers it still has (gate D scores the test set).
    """
    if run.status not in cfg.quality_statuses and fired_gate(run) is None:
        return None, f"{run.arm} run {run.run_id} ended {run.status}" + (
            f" ({run.summary['status_reason']})" if run.summary.get("status_reason") else ""
        )
    v = run.num(key)
    if v is None or v <= 0:
        return None, f"{run.arm} run {run.run_id} has no positive {key}"
    return v, None


@dataclass
class Pairing:
    """Runs of two arms matched by (grid cell, seed); what could not be matched, with reasons."""

    pairs: list[tuple[tuple[tuple[str, str], ...], Any, Run, Run]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def index_runs(sweep: Sweep, arm: str) -> dict[tuple[Any, Any], Run]:
    """(cell, seed) -> run of ``arm``; a duplicate prefers the completed run (re-runs of a failure)."""
    out: dict[tuple[Any, Any], Run] = {}
    for r in sweep.runs:
        if r.arm != arm:
            continue
        key = (r.cell, str(r.seed))
        if key not in out or (out[key].status != "completed" and r.status == "completed"):
            out[key] = r
    return out


def pair_runs(sweep: Sweep, treatment: str, reference: str) -> Pairing:
    t_idx, r_idx = index_runs(sweep, treatment), index_runs(sweep, reference)
    result = Pairing()
    for key in sorted(set(t_idx) | set(r_idx), key=lambda k: (k[0], k[1])):
        cell, seed = key
        if key not in t_idx:
            result.missing.append(f"no {treatment} run for {cell_label(cell)}, seed {seed}")
        elif key not in r_idx:
            result.missing.append(f"no {reference} run for {cell_label(cell)}, seed {seed}")
        else:
            result.pairs.append((cell, seed, t_idx[key], r_idx[key]))
    return result


def fired_gate(run: Run) -> dict[str, Any] | None:
    """The abort gate that stopped ``run`` (status aborted and a fired gate recorded), else None.

    A run aborted by a signal or a crash is not gate-aborted: it is unfinished (resumable).
    """
    if run.status != "aborted":
        return None
    for g in run.summary.get("gates") or []:
        if isinstance(g, dict) and (g.get("fired") or g.get("outcome") == "fired"):
            return g
    return None


def gate_failure(run: Run, endpoint: str, cfg: Any) -> str | None:
    """Why ``run`` is a failure of ``endpoint`` by an abort gate (cfg.gate_endpoints), else None."""
    g = fired_gate(run)
    if g is None or cfg.gate_endpoints.get(str(g.get("gate"))) != endpoint:
        return None
    return f"{run.arm} run {run.run_id} stopped by gate {g.get('gate')}: {g.get('reason') or 'no reason'}"


@cache
def _default_divergence() -> tuple[float, int]:
    train = yaml.safe_load((CONF_DIR / "train" / "default.yaml").read_text())
    return float(train["divergence"]["factor"]), int(train["divergence"]["after_step"])


def divergence_rule(run: Run) -> tuple[float, int]:
    """(factor, after_step) of PROTOCOL failure 5 as ``run`` ran it: its config.yaml's
    ``train.divergence`` (the one home, conf/train/default.yaml), that file where the run has none."""
    if run.config_text:
        try:
            d = ((yaml.safe_load(run.config_text) or {}).get("train") or {}).get("divergence") or {}
            if "factor" in d and "after_step" in d:
                return float(d["factor"]), int(d["after_step"])
        except (yaml.YAMLError, AttributeError, TypeError, ValueError):
            pass  # a hand-edited config.yaml: the default rule, said in the reason below
    return _default_divergence()


def is_diverged(run: Run, cfg: Any) -> str | None:
    """Why ``run`` diverged (PROTOCOL failure 5: NaN, or loss > factor x initial after N steps; or
    stopped by the gate that counts as divergence, A), or None."""
    if run.status == "diverged":
        return f"status diverged ({run.summary.get('status_reason') or 'no reason recorded'})"
    why = gate_failure(run, "diverged", cfg)
    if why:
        return why
    factor, after_step = divergence_rule(run)
    initial = run.num("initial_loss")
    for row in run.metrics:
        if "loss" in row and finite(row["loss"]) is None:
            return f"loss not finite at step {row.get('step')}"
        step, loss = finite(row.get("step")), finite(row.get("loss"))
        if (
            initial is not None
            and step is not None
            and loss is not None
            and step >= after_step
            and loss > factor * initial
        ):
            return f"loss {loss:.3g} > {factor:g} x initial {initial:.3g} at step {int(step)}"
    if "final_loss" in run.summary and run.status == "completed" and run.num("final_loss") is None:
        return "final loss not finite"
    return None


def loss_at_step(run: Run, step: int) -> float | None:
    for row in run.metrics:
        if finite(row.get("step")) == step:
            return finite(row.get("loss"))
    return None


def group_by_model(items: list[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for it in items:
        out[model_of(it[0])].append(it)
    return dict(out)

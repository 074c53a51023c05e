"""The protocol's abort checkpoints (gates A-F), each decided on numbers it records.

In-run gates (called by the run engine, :class:`InRunGates`):

- **A** (loss, step ``A.step``): a treatment run whose loss is more than ``A.max_loss_ratio`` times the
  reference arm's loss at the same step is aborted (instability).
- **B** (memory, step ``B.step``): if the treatment's peak allocated memory up to that step is within
  ``B.min_reduction`` of the reference's, i.e. ``1 - peak_treat / peak_ref < B.min_reduction``, the
  savings are not materialising: the run is aborted, the optimizer-state dtypes are reported, and
  (``B.abort_sweep``) the sweep starts no further treatment runs.
- **D** (accuracy): ``val_rel_l2_error_treat / val_rel_l2_error_ref - 1 > D.max_rel_worsening`` flags
  failure: the run ends ``aborted`` by gate D, and still reports its test set (scored in the same
  evaluation), so the analysis counts the run as an accuracy failure with its number.
- **E** (throughput, step ``E.step``, by default the B step): the treatment's median tokens/s over
  its steps ``(E.warmup_steps, E.step]`` below ``E.min_ratio`` times the reference summary's
  ``tokens_per_s`` (the reference's median after warm-up) aborts the run. ``E.clock: process_cpu``
  (smoke scale) measures tokens per second of process CPU time instead of wall time, so a
  reference and a treatment run at different moments of a shared CPU are compared on their own
  work, not on how much of the machine each got. A run shorter than
  ``E.step`` is decided at its last step, before evaluation, so a fired E ends it ``aborted`` too.

Sweep-level gates (called by ``experiments.sweep``): **C** (:func:`gate_c`: the ``C.model`` memory
reduction under ``C.min_reduction`` stops larger models) and **F** (:func:`gate_f`: after a model's
runs, the pre-registered seed-adding rule of the analysis config, ``criteria.sequential``, decides on
the endpoint that varies, test accuracy, whether to add seeds up to its next look; memory is
deterministic across seeds, so the coefficient of variation the protocol first named could never fire).

A gate applies only to treatment arms. Its reference is the run with the same settings and
``optimizer=<reference_arm>``. A reference that is missing, unfinished or not ``completed`` (e.g.
``oom``), or a figure that is not measurable (memory on CPU is ``null``), gives ``not_evaluable`` with
the reason: never a silent pass. For runs shorter than a gate's step the gate is decided at the last
step and ``values["evaluated_at_last_step"]`` says so.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from common.atomic import read_jsonl
from experiments.gates_config import (  # noqa: F401  (re-exported: the schema registers on import)
    CLOCKS,
    MEMORY_METRICS,
    GatesConf,
    register_schema,
    validate,
)
from experiments.rundir import read_summary

STEP_GATES = ("A", "B", "E")  # decided in the run at a step (scaled to the last step of short runs)


# -------------------------------------------------------------------------------------- decisions
@dataclass
class GateDecision:
    gate: str  # "A".."F"
    step: int | None
    fired: bool
    outcome: str  # "pass" | "fired" | "not_evaluable"
    values: dict[str, Any]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _decision(gate: str, step: int | None, fired: bool, values: dict[str, Any], reason: str) -> GateDecision:
    return GateDecision(gate, step, fired, "fired" if fired else "pass", values, reason)


def not_evaluable(
    gate: str, step: int | None, reason: str, values: dict[str, Any] | None = None
) -> GateDecision:
    return GateDecision(gate, step, False, "not_evaluable", values or {}, reason)


def reference_problem(run_dir: Path | str | None, arm: str) -> str | None:
    """Why the reference run cannot serve as one (None when it is a completed run)."""
    if run_dir is None:
        return f"no reference run ({arm}) is configured for this run"
    if not (Path(run_dir) / "summary.json").exists():
        state = "has not finished" if Path(run_dir).exists() else "does not exist"
        return f"reference run ({arm}) at {run_dir} {state}"
    summary = read_summary(run_dir)
    if summary is None:
        return f"reference run ({arm}) at {run_dir} has no terminal status in summary.json"
    if summary["status"] != "completed":
        why = summary.get("status_reason") or ""
        return f"reference run ({arm}) ended {summary['status']}" + (f": {why}" if why else "")
    return None


def _measurable(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _row_peak(row: Mapping[str, Any]) -> float | None:
    v = row.get("peak_mem_allocated_bytes", row.get("mem_allocated_bytes"))
    return float(v) if _measurable(v) else None


class InRunGates:
    """Gates A, B, D, E for one run; the run engine feeds it metrics rows, validation and the summary."""

    def __init__(
        self, gates_cfg: Any, *, arm: str, reference_run_dir: Path | None, total_steps: int | None = None
    ) -> None:
        self.cfg = gates_cfg
        self.arm = arm
        self.reference_run_dir = Path(reference_run_dir) if reference_run_dir is not None else None
        self.total_steps = total_steps
        self.applies = arm in list(gates_cfg.treatment_arms)
        self._decided: dict[str, GateDecision] = {}
        self._peak_mem_bytes: float | None = None
        self._mem_unmeasurable = False
        self._tokens_per_s: list[tuple[int, float]] = []
        self._last_row: dict[str, Any] | None = None
        self._state_dtypes: list[str] | None = None
        self._ref_rows: list[dict[str, Any]] | None = None

    # -- helpers ------------------------------------------------------------------------------
    def note_state_dtypes(self, dtypes: Iterable[str]) -> None:
        """Optimizer-state dtypes, reported by gate B (the protocol's dtype check)."""
        self._state_dtypes = [str(d) for d in dtypes]

    def _gate_step(self, name: str) -> tuple[int, bool]:
        step = int(self.cfg[name].step)
        if self.total_steps is not None and self.total_steps < step:
            return int(self.total_steps), True
        return step, False

    def _reference_rows(self) -> list[dict[str, Any]]:
        if self._ref_rows is None:
            path = self.reference_run_dir / "metrics.jsonl" if self.reference_run_dir else None
            self._ref_rows = read_jsonl(path) if path is not None and path.exists() else []
        return self._ref_rows

    def _ref_row_at(self, step: int) -> dict[str, Any] | None:
        rows = [r for r in self._reference_rows() if isinstance(r.get("step"), int) and r["step"] <= step]
        return max(rows, key=lambda r: r["step"]) if rows else None

    def _record(self, d: GateDecision) -> GateDecision:
        self._decided[d.gate] = d
        return d

    def _active(self, name: str) -> bool:
        return self.applies and bool(self.cfg[name].enabled) and name not in self._decided

    # -- gates ----------------------------------------------------------------------------------
    def _gate_a(self, step: int, row: Mapping[str, Any], gate_step: int, at_last: bool) -> GateDecision:
        ref = self.cfg.reference_arm
        values: dict[str, Any] = {
            "gate_step": gate_step,
            "evaluated_at_last_step": at_last,
            "max_loss_ratio": self.cfg.A.max_loss_ratio,
        }
        problem = reference_problem(self.reference_run_dir, ref)
        if problem:
            return not_evaluable("A", step, problem, values)
        ref_row = self._ref_row_at(step)
        loss, ref_loss = row.get("loss"), ref_row.get("loss") if ref_row else None
        values |= {"loss": loss, "reference_loss": ref_loss, "reference_step": ref_row and ref_row["step"]}
        if not _measurable(ref_loss) or ref_loss <= 0:
            return not_evaluable(
                "A", step, f"reference ({ref}) has no positive finite loss at step <= {step}", values
            )
        if not _measurable(loss):
            values["loss_ratio"] = None
            return _decision(
                "A", step, True, values, f"loss is {loss} at step {step} (reference {ref_loss:.4g})"
            )
        ratio = loss / ref_loss
        values["loss_ratio"] = ratio
        fired = ratio > self.cfg.A.max_loss_ratio
        verb = ">" if fired else "<="
        return _decision(
            "A",
            step,
            fired,
            values,
            f"loss {loss:.4g} is {ratio:.3g}x {ref}'s {ref_loss:.4g} at step {step} "
            f"({verb} {self.cfg.A.max_loss_ratio}x)",
        )

    def _gate_b(self, step: int, gate_step: int, at_last: bool) -> GateDecision:
        ref = self.cfg.reference_arm
        values: dict[str, Any] = {
            "gate_step": gate_step,
            "evaluated_at_last_step": at_last,
            "min_reduction": self.cfg.B.min_reduction,
            "optimizer_state_dtypes": self._state_dtypes,
        }
        if self._state_dtypes is not None:
            values["states_quantized"] = any("int8" in d for d in self._state_dtypes)
        if self._mem_unmeasurable or self._peak_mem_bytes is None:
            return not_evaluable(
                "B", step, "memory is not measurable on this device (mem_allocated_bytes is null)", values
            )
        problem = reference_problem(self.reference_run_dir, ref)
        if problem:
            return not_evaluable("B", step, problem, values)
        ref_peaks = [
            p
            for r in self._reference_rows()
            if isinstance(r.get("step"), int) and r["step"] <= step
            for p in [_row_peak(r)]
            if p is not None
        ]
        if not ref_peaks:
            return not_evaluable(
                "B", step, f"reference ({ref}) has no measured memory at step <= {step}", values
            )
        ref_peak = max(ref_peaks)
        reduction = 1.0 - self._peak_mem_bytes / ref_peak
        values |= {
            "peak_mem_allocated_bytes": self._peak_mem_bytes,
            "reference_peak_mem_allocated_bytes": ref_peak,
            "reduction": reduction,
        }
        fired = reduction < self.cfg.B.min_reduction
        what = "within" if fired else "beyond"
        return _decision(
            "B",
            step,
            fired,
            values,
            f"peak memory {reduction:.1%} below {ref}'s at step {step}: {what} "
            f"{self.cfg.B.min_reduction:.0%}; optimizer state dtypes {self._state_dtypes}",
        )

    def _gate_e(self, step: int, gate_step: int, at_last: bool) -> GateDecision:
        """E: median tokens/s of this run over steps ``(E.warmup_steps, step]`` against the reference
        summary's ``tokens_per_s`` (itself a median over the reference's post-warm-up steps)."""
        ref = self.cfg.reference_arm
        lo = int(self.cfg.E.warmup_steps)
        mine = [v for s, v in self._tokens_per_s if lo < s <= step]
        row_key, summary_key = CLOCKS[self.cfg.E.clock]
        values: dict[str, Any] = {
            "gate_step": gate_step,
            "evaluated_at_last_step": at_last,
            "window": [lo, step],
            "window_steps": len(mine),
            "min_ratio": self.cfg.E.min_ratio,
            "clock": self.cfg.E.clock,
            "source": f"median of this run's metrics {row_key} vs reference summary {summary_key}",
        }
        problem = reference_problem(self.reference_run_dir, ref)
        if problem:
            return not_evaluable("E", step, problem, values)
        ref_summary = read_summary(self.reference_run_dir) or {}
        ref_tps = ref_summary.get(summary_key)
        values |= {"reference_run_id": ref_summary.get("run_id"), f"reference_{summary_key}": ref_tps}
        if not _measurable(ref_tps) or ref_tps <= 0:
            return not_evaluable(
                "E", step, f"reference ({ref}) summary has no {summary_key} ({ref_tps})", values
            )
        if not mine:
            return not_evaluable(
                "E", step, f"this run logged no {row_key} in steps ({lo}, {step}] (after warm-up)", values
            )
        tps = statistics.median(mine)
        ratio = tps / ref_tps
        values |= {row_key: tps, "throughput_ratio": ratio}
        fired = ratio < self.cfg.E.min_ratio
        verb = "<" if fired else ">="
        return _decision(
            "E",
            step,
            fired,
            values,
            f"median {tps:.4g} {row_key} over steps ({lo}, {step}] is {ratio:.3g}x {ref}'s {ref_tps:.4g} "
            f"({verb} {self.cfg.E.min_ratio}x)",
        )

    def _decide(
        self, name: str, step: int, row: Mapping[str, Any], gate_step: int, at_last: bool
    ) -> GateDecision:
        if name == "A":
            return self._gate_a(step, row, gate_step, at_last)
        if name == "B":
            return self._gate_b(step, gate_step, at_last)
        return self._gate_e(step, gate_step, at_last)

    # -- the contract's entry points ----------------------------------------------------------------
    def on_step(self, step: int, row: dict[str, Any]) -> GateDecision | None:
        """Feed one metrics.jsonl row; returns a decision when a gate is decided at this step."""
        self._last_row = dict(row)
        if row.get("mem_allocated_bytes", 0) is None and row.get("peak_mem_allocated_bytes") is None:
            self._mem_unmeasurable = True
        peak = _row_peak(row)
        if peak is not None:
            self._peak_mem_bytes = peak if self._peak_mem_bytes is None else max(self._peak_mem_bytes, peak)
        throughput = row.get(CLOCKS[self.cfg.E.clock][0])
        if _measurable(throughput):
            self._tokens_per_s.append((step, float(throughput)))
        if row.get("optimizer_state_dtypes"):
            self.note_state_dtypes(row["optimizer_state_dtypes"])
        if not self.applies:
            return None
        decided: list[GateDecision] = []
        for name in STEP_GATES:
            if self._active(name):
                gate_step, at_last = self._gate_step(name)
                if step >= gate_step:
                    decided.append(self._record(self._decide(name, step, row, gate_step, at_last)))
        # Two gates can fall on one step; the one that fired (if any) is the one the engine acts on.
        fired = [d for d in decided if d.fired]
        return (fired or decided or [None])[0]

    def after_validation(self, val_rel_l2_error: float) -> GateDecision | None:
        """Gate D on the validation relative L2 error of this run against the reference's."""
        if not self._active("D"):
            return None
        ref = self.cfg.reference_arm
        values: dict[str, Any] = {
            "val_rel_l2_error": val_rel_l2_error,
            "max_rel_worsening": self.cfg.D.max_rel_worsening,
            "eval_samples": self.cfg.D.eval_samples,
        }
        problem = reference_problem(self.reference_run_dir, ref)
        if problem:
            return self._record(not_evaluable("D", None, problem, values))
        ref_summary = read_summary(self.reference_run_dir) or {}
        ref_err = ref_summary.get("val_rel_l2_error", ref_summary.get("rel_l2_error"))
        values["reference_val_rel_l2_error"] = ref_err
        if not _measurable(ref_err) or ref_err <= 0:
            return self._record(
                not_evaluable("D", None, f"reference ({ref}) has no positive val_rel_l2_error", values)
            )
        if not _measurable(val_rel_l2_error):
            return self._record(_decision("D", None, True, values, f"val_rel_l2_error is {val_rel_l2_error}"))
        worsening = val_rel_l2_error / ref_err - 1.0
        values["rel_worsening"] = worsening
        fired = worsening > self.cfg.D.max_rel_worsening
        verb = ">" if fired else "<="
        return self._record(
            _decision(
                "D",
                None,
                fired,
                values,
                f"val rel-L2 error {val_rel_l2_error:.4g} is {worsening:+.1%} vs {ref}'s "
                f"{ref_err:.4g} ({verb} {self.cfg.D.max_rel_worsening:.0%})",
            )
        )

    def at_end(self, summary: dict[str, Any]) -> list[GateDecision]:
        """Decide the step gates (A, B, E) still pending when the run ended before their step (a run
        without ``total_steps``); decided at the last logged step, saying so. ``summary`` is unused
        since E became an in-run gate (kept for the contract's signature)."""
        out: list[GateDecision] = []
        if not self.applies:
            return out
        last = self._last_row
        last_step = last.get("step") if last else None
        for name in STEP_GATES:
            if not self._active(name):
                continue
            if last is None or not isinstance(last_step, int):
                out.append(self._record(not_evaluable(name, None, "the run logged no step")))
                continue
            gate_step = int(self.cfg[name].step)
            d = self._decide(name, last_step, last, gate_step, True)
            d.values["evaluated_at_last_step"] = True
            d.reason += f" (run ended at step {last_step}, before the gate step {gate_step})"
            out.append(self._record(d))
        return out

    def decisions(self) -> list[dict[str, Any]]:
        return [d.to_dict() for d in sorted(self._decided.values(), key=lambda d: d.gate)]


# ----------------------------------------------------------------------------------- sweep level
def _pair_key(summary: Mapping[str, Any]) -> str:
    grid = summary.get("grid") or {}
    return repr((summary.get("seed"), sorted(grid.items())))


def gate_c(gates_cfg: Any, summaries: list[dict[str, Any]]) -> GateDecision:
    """C over the finished runs of ``C.model``: mean paired reduction ``1 - treat/ref`` of ``C.metric``.

    ``summaries`` are the summary.json dicts of that model's runs (all arms). Fired -> larger models
    are not started. Pairs whose reference is not completed are counted out (with the count recorded).
    """
    c = gates_cfg.C
    values: dict[str, Any] = {"model": c.model, "metric": c.metric, "min_reduction": c.min_reduction}
    if not summaries:
        return not_evaluable("C", None, f"the sweep has no finished {c.model} runs", values)
    if any(s.get("mem_measurable") is False for s in summaries) or all(
        not _measurable(s.get(c.metric)) for s in summaries
    ):
        return not_evaluable(
            "C", None, f"memory is not measurable on this device ({c.metric} is null)", values
        )
    refs = {_pair_key(s): s for s in summaries if s.get("optimizer") == gates_cfg.reference_arm}
    reductions: list[float] = []
    skipped: list[str] = []
    for s in summaries:
        if s.get("optimizer") not in gates_cfg.treatment_arms:
            continue
        r = refs.get(_pair_key(s))
        if r is None or r.get("status") != "completed" or s.get("status") != "completed":
            why = "missing" if r is None else f"reference {r.get('status')}, treatment {s.get('status')}"
            skipped.append(f"{s.get('run_id')}: {why}")
            continue
        t_v, r_v = s.get(c.metric), r.get(c.metric)
        if _measurable(t_v) and _measurable(r_v) and r_v > 0:
            reductions.append(1.0 - t_v / r_v)
        else:
            skipped.append(f"{s.get('run_id')}: {c.metric} not measured")
    values |= {"reductions": reductions, "pairs_counted_out": skipped}
    if not reductions:
        return not_evaluable(
            "C",
            None,
            f"no completed {gates_cfg.reference_arm}/treatment pair of {c.model}: " + "; ".join(skipped),
            values,
        )
    mean = statistics.fmean(reductions)
    values["mean_reduction"] = mean
    fired = mean < c.min_reduction
    verb = "<" if fired else ">="
    return _decision(
        "C",
        None,
        fired,
        values,
        f"{c.model} mean memory reduction {mean:.1%} over {len(reductions)} "
        f"pair(s) {verb} {c.min_reduction:.0%}" + ("; larger models are not started" if fired else ""),
    )


def gate_f(model: str, step: Mapping[str, Any]) -> GateDecision:
    """F for one model's cells from one look of the pre-registered seed-adding rule: ``step`` is
    :meth:`analysis.sequential.SeedStep.to_dict` (look, seeds, add, rule, reason, ...). Fired when
    the rule adds seeds (the accuracy criterion is undecided and the next look is within the cap)."""
    fired = int(step.get("add") or 0) > 0
    return _decision("F", None, fired, {"model": model, **step}, f"{model}: {step.get('reason', '')}")

"""``python -m experiments.sweep sweep=<mvt|full> scale=<smoke|pilot|protocol> [overrides]``: a grid of runs.

Compose -> plan (experiments.sweep.plan: every run's config and run_id, ordered so the gates have their
references) -> ensure datasets (``python -m datagen``) -> launch waves through Hydra's launcher
(experiments.sweep.launch) -> sweep-level gates C and F between waves -> ``python -m analysis``.

Gate F is the pre-registered seed-adding rule (``criteria.sequential`` of the analysis config,
composed once before any run with ``sweep.analysis_overrides``): after a model's runs,
:func:`analysis.sequential.next_seeds` looks at their summaries and, while the accuracy criterion is
undecided, the sweep adds seeds to every cell of that model up to the rule's next look, runs them
and looks again. Every look and every seed added is recorded in ``sweep.json["sequential"]``.

Resumable by construction: a run whose ``summary.json`` holds a terminal status is never launched
again; a run dir without one (killed sweep) is launched with ``resume=true``; ``sweep.json`` is
rewritten atomically whenever a run's status changes. One run's OOM, divergence or crash is that
run's status; the sweep goes on.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from common.atomic import write_json
from common.config import ALLOW_OUTSIDE_ENV, ConfigError, exit_on_config_error, load
from common.ids import content_id
from common.logs import setup_logging
from common.provenance import now_iso, provenance
from experiments import config as run_config
from experiments import gates as G
from experiments.config import validate_model
from experiments.rundir import read_summary
from experiments.sweep import dry_run
from experiments.sweep import launch as L
from experiments.sweep import plan as P
from experiments.sweep.config import validate
from experiments.sweep.progress import Progress


class SweepState:
    """sweep.json in memory; ``write()`` is atomic and thread-safe (the progress thread calls it too)."""

    def __init__(
        self,
        cfg: Any,
        sweep_id: str,
        sweep_dir: Path,
        launcher_target: str,
        rule: dict[str, Any] | None = None,
    ) -> None:
        self.sweep_dir = sweep_dir
        self.lock = threading.RLock()
        self.entries: list[dict[str, Any]] = []
        self.by_id: dict[str, dict[str, Any]] = {}
        self.gates: list[dict[str, Any]] = []
        self.doc: dict[str, Any] = {
            "sweep_id": sweep_id,
            "protocol": cfg.sweep.protocol,
            "design": cfg.sweep.design,
            "scale": cfg.scale,
            "grid": OmegaConf.to_container(cfg.sweep.grid, resolve=True),
            "launcher": launcher_target,
            "config": {
                k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
                for k in cfg
                if k != "hydra"
            },
            "status": "running",
            "status_reason": None,
            # gate F: the seed-adding rule as composed before any run, its looks, the seeds it added
            "sequential": {"rule": rule, "looks": [], "seeds_added": []},
            "started_at": now_iso(),
            "provenance": provenance(),
        }

    def add(self, run: P.PlannedRun, total_steps: int | None, position: int | None = None) -> dict[str, Any]:
        with self.lock:
            if run.run_id in self.by_id:
                return self.by_id[run.run_id]
            e = {
                **run.to_dict(),
                "status": "pending",
                "status_reason": None,
                "step": None,
                "total_steps": total_steps,
                "eta_s": None,
            }
            summary = read_summary(run.run_dir)
            if summary is not None and not summary.get("resumable"):  # finished earlier: never redone
                e.update(
                    status=summary["status"],
                    status_reason=summary.get("status_reason"),
                    step=summary.get("steps_completed"),
                    previously_finished=True,
                )
            elif run.run_dir.exists():  # partial run dir or a stopped run (scancel): resumed, not counted
                e["status"] = "interrupted"
            self.entries.insert(len(self.entries) if position is None else position, e)
            self.by_id[run.run_id] = e
            return e

    def decide(self, d: G.GateDecision, **scope: Any) -> None:
        with self.lock:
            self.gates.append({**d.to_dict(), **scope})
            self.write()

    def write(self) -> None:
        with self.lock:
            doc = {
                **self.doc,
                "updated_at": now_iso(),
                "order": [e["run_id"] for e in self.entries],
                "runs": [
                    {k: v for k, v in e.items() if k not in ("eta_s", "started_t")} for e in self.entries
                ],
                "settings": sorted({e["setting"] for e in self.entries}),
                "gates": self.gates,
                "counts": {
                    s: sum(1 for e in self.entries if e["status"] == s)
                    for s in sorted({e["status"] for e in self.entries})
                },
            }
            write_json(self.sweep_dir / "sweep.json", doc)


def _last_line(path: Path, tail_bytes: int = 4096) -> str:
    """The run's last output line (a config error or a traceback's last line), for status_reason."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - tail_bytes))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return f": {lines[-1][:300]}" if lines and not lines[-1].startswith("$ ") else ""


# ------------------------------------------------------------------------------------------ set-up
def rule_record(rule_cfg: Any) -> dict[str, Any]:
    """Gate F's seed-adding rule as it is fixed before any run (criteria.sequential and its alpha)."""
    seq = OmegaConf.to_container(rule_cfg.criteria.sequential, resolve=True)
    assert isinstance(seq, dict)
    return {**seq, "confidence": float(rule_cfg.decision.confidence)}


def _sweep_id(cfg: Any, probe_run_cfg: Any, rule_cfg: Any = None) -> str:
    if cfg.sweep.id:
        return str(cfg.sweep.id)
    settings = {
        "design": cfg.sweep.design,
        "scale": cfg.scale,
        "protocol": cfg.sweep.protocol,
        "grid": OmegaConf.to_container(cfg.sweep.grid, resolve=True),
        "axes": OmegaConf.to_container(cfg.sweep.axes, resolve=True),
        "run_overrides": list(cfg.sweep.run_overrides),
        "gates": OmegaConf.to_container(probe_run_cfg.gates, resolve=True),
    }
    if rule_cfg is not None:  # a different seed-adding rule is a different (pre-registered) sweep
        settings["sequential"] = rule_record(rule_cfg)
    return content_id(settings)


def _task_overrides(argv: Sequence[str]) -> list[str]:
    return [a for a in argv if not a.startswith(("hydra/", "hydra.", "--"))]


# -------------------------------------------------------------------------------------- execution
class Sweep:
    def __init__(self, cfg: Any, argv: Sequence[str], sweep_id: str, rule_cfg: Any = None) -> None:
        self.cfg = cfg
        self.argv = list(argv)
        self.sweep_id = sweep_id
        self.sweep_dir = Path(cfg.results_root) / "sweeps" / sweep_id
        self.rule_cfg = rule_cfg  # the analysis config whose criteria.sequential is gate F's rule
        self.state = SweepState(
            cfg,
            sweep_id,
            self.sweep_dir,
            str(cfg.hydra.launcher._target_),
            rule_record(rule_cfg) if rule_cfg is not None else None,
        )
        self.runs: list[P.PlannedRun] = []
        self.gates_cfg: Any = None
        self.aborted_reason: str | None = None
        self.blocked_above: tuple[int, str] | None = None  # (n_params, reason) from gate C
        self.progress: Progress | None = None
        self.launcher: Any = None
        self.task: L.RunTask | None = None
        self.job_idx = 0
        self.started = time.monotonic()
        self.last_launch_s: float | None = None  # wall seconds of this invocation's latest launch
        self.deadline_reason: str | None = None  # set once sweep.launch_deadline_s stops launching

    def expand(
        self, seeds: Sequence[int] | None = None, point: dict[str, Any] | None = None
    ) -> list[P.PlannedRun]:
        """Plan runs; runs added later (gate F's seeds) go right after their model's runs in the order."""
        runs = P.expand(
            self.cfg.sweep,
            self.cfg.scale,
            self.sweep_id,
            seeds=seeds,
            point=point,
            results_root=str(self.cfg.results_root),
        )
        fresh = [r for r in runs if r.run_id not in self.state.by_id]
        with self.state.lock:
            for r in fresh:
                after = max((i for i, x in enumerate(self.runs) if x.n_params <= r.n_params), default=-1) + 1
                self.runs.insert(after, r)
                self.state.add(r, r.shape.get("steps"), position=after)
                if self.task is not None:
                    self.task.jobs[r.run_id] = (self._argv(r), str(r.run_dir))
            for i, r in enumerate(self.runs):
                r.index = i
                self.state.by_id[r.run_id]["index"] = i
        return fresh

    def _argv(self, r: P.PlannedRun) -> list[str]:
        return [*r.overrides, f"sweep_id='{self.sweep_id}'"]  # quoted: "94e607891917" is a float

    def ensure_datasets(self, runs: list[P.PlannedRun]) -> None:
        seen: set[Path] = set()
        for r in runs:
            if r.dataset_dir is None or r.dataset_dir in seen:
                continue
            seen.add(r.dataset_dir)
            if (r.dataset_dir / "manifest.json").exists():
                continue
            cmd = [
                sys.executable,
                "-m",
                self.cfg.sweep.datagen_module,
                f"data={r.data_name}",
                *r.data_overrides,
                f"results_root={self.cfg.results_root}",
            ]
            self._stage(f"dataset {r.dataset_dir.name}: {' '.join(cmd[1:])}")
            proc = subprocess.run(cmd, check=False, preexec_fn=L.die_with_parent)
            if proc.returncode != 0 or not (r.dataset_dir / "manifest.json").exists():
                raise SystemExit(
                    f"sweep: `{' '.join(cmd[1:])}` did not produce {r.dataset_dir}/manifest.json "
                    f"(exit {proc.returncode}); no run was started"
                )

    def _stage(self, text: str) -> None:
        if self.progress is not None:
            self.progress.set_stage(text)
        else:
            print(f"stage: {text}", flush=True)

    def _skip(self, r: P.PlannedRun, reason: str) -> None:
        e = self.state.by_id[r.run_id]
        if e["status"] in ("pending", "interrupted"):
            e.update(status="skipped", status_reason=reason)

    def run_wave(self, wave: list[P.PlannedRun]) -> None:
        batch_size = self.cfg.sweep.jobs_per_launch or (1 if L.is_sequential(self.cfg) else len(wave))
        todo = [r for r in wave if self.state.by_id[r.run_id]["status"] in ("pending", "interrupted")]
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            if self.aborted_reason:
                for r in batch:
                    self._skip(r, self.aborted_reason)
                continue
            if self.past_deadline():  # left pending: the same command continues them
                continue
            with self.state.lock:
                for r in batch:
                    self.state.by_id[r.run_id].update(status="running", started_t=time.time())
                self.state.write()
            overrides = L.job_overrides(_task_overrides(self.argv), self.sweep_dir, [r.run_id for r in batch])
            t0 = time.monotonic()
            results = L.launch(self.launcher, overrides, self.job_idx)
            self.last_launch_s = time.monotonic() - t0
            self.job_idx += len(batch)
            self._settle(batch, results)

    def past_deadline(self) -> bool:
        """True when ``sweep.launch_deadline_s`` forbids starting the next launch: the previous one's
        duration would end it past the deadline (the first launch of an invocation always starts)."""
        limit = self.cfg.sweep.launch_deadline_s
        if self.deadline_reason is None and limit is not None and self.last_launch_s is not None:
            elapsed = time.monotonic() - self.started
            if elapsed + self.last_launch_s > limit:
                self.deadline_reason = (
                    f"sweep.launch_deadline_s={limit:g}: {elapsed:.0f} s elapsed and the last launch "
                    f"took {self.last_launch_s:.0f} s, so no launch started after that"
                )
                self._stage(f"deadline: {self.deadline_reason}")
        return self.deadline_reason is not None

    def _settle(self, batch: list[P.PlannedRun], results: list[dict[str, Any]]) -> None:
        with self.state.lock:
            for r, res in zip(batch, results):
                e = self.state.by_id[r.run_id]
                before = (e["status"], e.get("status_reason"))  # the progress thread may have seen it
                summary = read_summary(r.run_dir)
                if summary is not None:
                    e.update(
                        status=summary["status"],
                        status_reason=summary.get("status_reason"),
                        step=summary.get("steps_completed"),
                    )
                    if isinstance(res, dict) and res.get("error"):  # e.g. the scheduler ended the job
                        e["status_reason"] = f"{e['status_reason'] or e['status']}; launcher: {res['error']}"
                    if e.get("started_t") and not e.get("duration_s"):
                        e["duration_s"] = time.time() - e["started_t"]
                    self._check_gate_b(r, summary)
                else:
                    rc = res.get("returncode") if isinstance(res, dict) else None
                    error = (
                        f"; launcher error {res['error']}"
                        if isinstance(res, dict) and res.get("error")
                        else ""
                    )
                    error += _last_line(self.sweep_dir / "launcher" / f"{r.run_id}.out")
                    where = self.sweep_dir / "launcher" / f"{r.run_id}.out"
                    if rc == 0:  # a recorded terminal status exits 0: the run wrote it somewhere else
                        why = (
                            f"process exited 0 but no summary.json is at {r.run_dir} (did the run config "
                            f"change since the sweep planned it? see {where})"
                        )
                    else:
                        why = f"process exited {rc} without a terminal summary.json (see {where}){error}"
                    e.update(status="failed", status_reason=why)
                if self.progress is not None and (e["status"], e.get("status_reason")) != before:
                    self.progress.event(e)
            self.state.write()

    def _check_gate_b(self, r: P.PlannedRun, summary: dict[str, Any]) -> None:
        if not self.gates_cfg.B.abort_sweep:
            return
        for d in summary.get("gates") or []:
            if d.get("gate") == "B" and d.get("fired"):
                self.aborted_reason = f"gate B fired in run {r.run_id}: {d.get('reason', '')}"
                self.state.gates.append(
                    {**d, "scope": "sweep", "run_id": r.run_id, "action": "no further run is started"}
                )

    def summaries(self, runs: list[P.PlannedRun]) -> list[dict[str, Any]]:
        return [s for r in runs if (s := read_summary(r.run_dir)) is not None]

    def run_model(self, model_runs: list[P.PlannedRun]) -> None:
        n_params, model = model_runs[0].n_params, model_runs[0].model
        if self.blocked_above and n_params > self.blocked_above[0]:
            for r in model_runs:
                self._skip(r, self.blocked_above[1])
            self.state.write()
            return
        for wave in P.waves(model_runs, self.cfg.sweep.waves):
            phases = sorted({r.phase for r in wave})
            self._stage(f"{model}: {' + '.join(phases)} runs ({len(wave)})")
            self.run_wave(wave)
        if self.deadline_reason:  # the gates decide on finished runs, in the invocation that has them
            return
        self.gate_f(model_runs)
        if model == self.gates_cfg.C.model and self.gates_cfg.C.enabled:
            mine = [r for r in self.runs if r.model == model]
            d = G.gate_c(self.gates_cfg, self.summaries(mine))
            self.state.decide(d, scope="sweep", model=model)
            if d.fired:
                self.blocked_above = (n_params, f"gate C: {d.reason}")

    def gate_f(self, model_runs: list[P.PlannedRun]) -> None:
        """Gate F: the pre-registered seed-adding rule over this model's cells, look after look."""
        if not self.gates_cfg.F.enabled or self.aborted_reason:
            return
        model = model_runs[0].model
        seq = self.rule_cfg.criteria.sequential
        record = self.state.doc["sequential"]
        for _ in range(len(seq.looks)):  # each look at most once, whatever the runs did
            mine = [r for r in self.runs if r.model == model]
            seeds = sorted({r.seed for r in mine})
            if len(seeds) < seq.looks[0]:
                why = (
                    f"{model}: the grid has {len(seeds)} seed(s), fewer than the first look of rule "
                    f"'{seq.name}' ({seq.looks[0]}): no seeds are added"
                )
                self.state.decide(
                    G.not_evaluable("F", None, why, {"seeds": seeds}), scope="model", model=model
                )
                return
            # lazy: every run loads this module through Hydra's plugin scan (the SLURM launcher plugin
            # imports experiments.sweep), and a run must not import the analysis stage
            from analysis.sequential import next_seeds

            step = next_seeds(self.summaries(mine), self.rule_cfg).to_dict()
            with self.state.lock:
                record["looks"].append({"model": model, **step})
            self.state.decide(G.gate_f(model, step), scope="model", model=model)
            if step["add"] <= 0 or self.aborted_reason:
                return
            extra = list(range(max(seeds) + 1, max(seeds) + 1 + step["add"]))
            new: list[P.PlannedRun] = []
            for point in {r.setting: r.point for r in mine}.values():
                new += self.expand(seeds=extra, point=point)
            with self.state.lock:
                record["seeds_added"].append({"model": model, "look": step["look"], "seeds": extra})
            self._stage(f"gate F ({seq.name}, look {step['look']}) added seeds {extra} for {model}")
            for wave in P.waves(P.order(new, self.gates_cfg.reference_arm), self.cfg.sweep.waves):
                self.run_wave(wave)
            self.state.write()
            if self.deadline_reason:
                return

    def run(self) -> int:
        try:
            return self._run()
        except BaseException as exc:  # Ctrl-C, a failed dataset, a bug: sweep.json says so, runs keep theirs
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            with self.state.lock:
                self.state.doc.update(
                    status=status, status_reason=f"{type(exc).__name__}: {exc}"[:500], finished_at=now_iso()
                )
                if self.sweep_dir.exists():
                    self.state.write()
            raise

    def _run(self) -> int:
        if not self.runs:
            self.expand()
        self.gates_cfg = self.runs[0].cfg.gates
        G.validate(self.gates_cfg)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        self.task = L.RunTask(
            {r.run_id: (self._argv(r), str(r.run_dir)) for r in self.runs},
            str(self.sweep_dir),
            self.cfg.sweep.run_module,
            self.cfg.sweep.gpus,
            list(self.cfg.sweep.preload_modules)
            if L.is_sequential(self.cfg) and L.forking_allowed(str(r.cfg.harness.device) for r in self.runs)
            else [],
        )
        self.launcher = L.make_launcher(self.cfg, self.task, self.sweep_dir)
        if self.gates_cfg.C.enabled and not any(r.model == self.gates_cfg.C.model for r in self.runs):
            self.state.gates.append(
                {
                    **G.not_evaluable(
                        "C", None, f"the sweep has no {self.gates_cfg.C.model} runs (gate C.model)"
                    ).to_dict(),
                    "scope": "sweep",
                }
            )
        self.state.write()
        for r in self.runs:  # a gate B that fired in an earlier invocation still stops this one
            if self.state.by_id[r.run_id].get("previously_finished") and not self.aborted_reason:
                self._check_gate_b(r, read_summary(r.run_dir) or {})
        title = f"sweep {self.sweep_id} ({self.cfg.sweep.design}, scale {self.cfg.scale})"
        with Progress(
            self.state.entries,
            self.state.write,
            self.cfg.sweep.progress_interval_s,
            title,
            lock=self.state.lock,
        ) as prog:
            self.progress = prog
            self.task.start_server()  # its imports overlap with the data generation
            try:
                if self.cfg.sweep.ensure_data:
                    self.ensure_datasets(self.runs)
                by_model: dict[tuple[int, str], list[P.PlannedRun]] = {}
                for r in self.runs:
                    by_model.setdefault((r.n_params, r.model), []).append(r)
                for key in sorted(by_model):
                    self.run_model(by_model[key])
            finally:
                self.task.close()
            self.progress = None
        with self.state.lock:
            pending = sum(1 for e in self.state.entries if e["status"] in ("pending", "interrupted"))
            status = (
                "aborted" if self.aborted_reason else "incomplete" if self.deadline_reason else "completed"
            )
            reason = self.aborted_reason or (
                f"{self.deadline_reason}; {pending} run(s) pending: run the same command again to continue"
                if self.deadline_reason
                else None
            )
            self.state.doc.update(status=status, status_reason=reason, finished_at=now_iso())
            self.state.write()
        print(
            f"sweep {self.sweep_id}: {self.state.doc['status']}; sweep.json at {self.sweep_dir / 'sweep.json'}",
            flush=True,
        )
        if status == "incomplete":
            print(f"sweep {self.sweep_id}: {reason}", flush=True)
            return 0  # nothing to analyse yet
        if self.cfg.sweep.analyse:
            return self.analyse()
        return 0

    def analyse(self) -> int:
        cmd = [
            sys.executable,
            "-m",
            self.cfg.sweep.analysis_module,
            str(self.sweep_dir),
            *self.cfg.sweep.analysis_overrides,
        ]
        print(f"stage: analysis: {' '.join(cmd[1:])}", flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, preexec_fn=L.die_with_parent)
        lines = (proc.stdout + proc.stderr).splitlines()
        shown = [ln for ln in lines if "verdict" in ln.lower() or "report" in ln.lower()]
        for ln in shown or lines[-5:]:
            print(ln, flush=True)
        if proc.returncode != 0:
            print(f"analysis exited {proc.returncode}", flush=True)
        return proc.returncode


def require_gates_for_waves(waves: str, gates: Any) -> None:
    """``sweep.waves=together`` starts a treatment beside its reference: the in-run gates must be off."""
    on = [g for g in ("A", "B", "D", "E") if gates[g].enabled] if waves == "together" else []
    if on:
        raise ConfigError(
            "sweep.waves",
            f"together (in-run gates {', '.join(on)} enabled)",
            "phased, or together with gates.<A|B|D|E>.enabled=false in the runs (a treatment "
            "started beside its reference has no finished reference to compare with)",
        )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    logging.getLogger("hydra").setLevel(logging.WARNING)  # the launchers log every job's overrides
    show_cfg = "--cfg" in argv
    # conf/scale is the run's config group, so a bare `scale=` would be read as a group override here.
    overrides = [
        f"sweep.scale={a.split('=', 1)[1]}" if a.startswith("scale=") else a
        for a in argv
        if a not in ("--cfg", "job", "all")
    ]
    with exit_on_config_error():
        cfg = load("sweep", overrides, multirun=True)
        if show_cfg:
            print(
                OmegaConf.to_yaml(
                    {k: v for k, v in cfg.items() if k != "hydra"} if "all" not in argv else cfg
                )
            )
            return 0
        validate(cfg)
        if cfg.allow_outside_results_root:  # the runs (and their launchers) read the switch from here
            os.environ[ALLOW_OUTSIDE_ENV] = "true"
        run_config.register()
        try:
            probe, _ = P.compose_run(
                cfg.sweep.run_config,
                [f"scale={cfg.scale}", *cfg.sweep.run_overrides],
                cfg.sweep.run_config_dir or P.CONF_DIR,
            )
        except ConfigError as exc:  # named by what the user typed: sweep.run_overrides
            raise P.sweep_source(exc, cfg.sweep, {}) from exc
        G.validate(probe.gates)
        require_gates_for_waves(cfg.sweep.waves, probe.gates)
        if not cfg.sweep.dry_run and "model" in probe:  # e.g. protocol without weights: before any data
            validate_model(probe.model, probe.scale)
        # lazy for the same reason as next_seeds above: runs import this module, not the analysis stage
        from analysis.sequential import load_rule_config

        rule_cfg = load_rule_config(list(cfg.sweep.analysis_overrides))  # gate F's rule, fixed now
        sweep_id = _sweep_id(cfg, probe, rule_cfg)
        sweep = Sweep(cfg, overrides, sweep_id, rule_cfg)
        if cfg.sweep.dry_run:
            return dry_run.show(
                cfg, P.expand(cfg.sweep, cfg.scale, sweep_id, results_root=str(cfg.results_root)), sweep_id
            )
        sweep.expand()  # composes every run config now, so a bad axis value fails before any work
    return sweep.run()

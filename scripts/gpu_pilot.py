"""The issue-14 pilot on one GPU (H200), in phases, each timed into ``<results_root>/pilot_timing.json``.

    python -m scripts.gpu_pilot probe      # ~5 min: one AdamW run alone, then JOBS at once: the speed-up
    python -m scripts.gpu_pilot all        # data, baselines, accuracy sweep, memory sweep, analyses
    python -m scripts.gpu_pilot twins --seeds 8   # noise probe: AdamW and its twin, seeds 10-17

Design (docs/accuracy-endpoint.md, "The pilot"): accuracy is measured on a ~11M model that learns
(``scale=pilot_accuracy``: every arm, the three controls, ``--seeds`` seeds and the seeds gate F's
rule adds, ``--jobs`` runs sharing the GPU at once, every arm together, through CUDA MPS where it
works); memory and throughput at 1B in short exclusive runs (``scale=pilot``, 3 arms x 3
seeds, ``--memory-steps`` steps: gates B/E at step 100, the peaks are reached at the first optimizer
step). Each sweep is analysed on its own; the report of the accuracy sweep answers S3/F2, the
assay-sensitivity rule and the controls, the memory sweep's S1/S2/S4/S5/F1/F3/F4.

Phases: ``data`` (``python -m datagen data=pilot``; found by id when it exists), ``baselines`` (the
dataset's baselines.json, once, before any run waits on its lock), ``probe``, ``accuracy``,
``twins`` (the treatment-blind noise probe: AdamW and its same-seed twin at seeds ``--first-seed``
onwards, sweep ``pilot-twins``, timed into ``twins_timing.json``: not part of the pilot), ``memory``, ``analyse``; ``all`` = data, baselines, accuracy, memory, analyse. Before ``accuracy``
the script projects its wall time from ``probe``'s measurement when there is one and refuses (exit
2) when that exceeds ``--budget-min``; ``--force`` runs it anyway.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.config import compose
from datagen.dataset import dataset_dir as ddir
from experiments.config import register
from experiments.sweep.launch import wait_through_sigterm

# The negative control is AdamW's same-seed twin (adamw_foreach: the same update, rounded
# differently), not the independent replicate: the criteria compare same-seed pairs (pilot v3,
# docs/accuracy-endpoint.md).
ARMS = ["adamw", "adam8bit", "flashoptim", "adamw_bf16", "adam8bit_bf16", "adamw_foreach"]
MEMORY_ARMS = ["adamw", "adam8bit", "flashoptim"]
# Which criteria each sweep answers (analysis `answers`): accuracy and final loss from the small model
# that learns, memory and throughput from the exclusive 1B runs; divergence and state dtypes from both.
ACCURACY_ANALYSIS = [
    "controls.required=true",
    "controls.negative=[adamw_foreach]",
    "answers=[S3,S7,F2,F5,F6]",
]
MEMORY_ANALYSIS = ["answers=[S1,S2,S4,S5,S6,F1,F3,F4,F5,F6]"]
# The treatment-blind noise probe (phase ``twins``): AdamW and its same-seed twin only, at seeds the
# pilot does not use, in a sweep of its own. Their spread is the null of a same-seed comparison; read
# without any treatment arm, it can choose between metric definitions without choosing the answer.
TWIN_ARMS = ["adamw", "adamw_foreach"]
PHASES = ("data", "baselines", "probe", "accuracy", "twins", "memory", "analyse", "all")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.gpu_pilot", description=__doc__.split("\n")[0])
    p.add_argument("phase", choices=PHASES)
    p.add_argument("--results-root", default="results")
    p.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="seeds per arm of the accuracy sweep (3: the decision rule's first look, what fits one "
        "10-minute device call on an H200 at the pilot_accuracy scale; its second look wants 10)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=21,
        help="accuracy runs sharing the GPU at once (all 18 of the first look at once; the second look's "
        "42 in two rounds; each llama-11m run peaks at ~5 GB with its evaluation batch, so 21 at once "
        "stay within an H200's 139 GiB)",
    )
    p.add_argument(
        "--first-seed",
        type=int,
        default=10,
        help="twins: the first of the --seeds seeds (default 10: the pilot's seed rule uses seeds 0-9 "
        "at most; the v4 probe ran 3-10, when the rule had stopped at 0-2)",
    )
    p.add_argument("--steps", type=int, default=None, help="accuracy training steps (default: the scale's)")
    p.add_argument(
        "--first-look-only",
        action="store_true",
        help="accuracy: run the first look's seeds and stop (gate F off for this invocation; gates are "
        "not part of a run's id). The same command without the flag later keeps the finished runs, lets "
        "gate F decide on them and runs the seeds it adds: a pilot split over device calls of 10 minutes",
    )
    p.add_argument(
        "--launch-deadline-s",
        type=float,
        default=None,
        help="accuracy: start no launch of --jobs runs that would end past this many seconds from the "
        "sweep's own start (after the compile warm-up and the MPS start; sweep.launch_deadline_s); "
        "the runs not started stay pending and the same "
        "command continues them (the second look's 42 runs over two device calls)",
    )
    p.add_argument(
        "--no-analyse",
        action="store_true",
        help="the sweeps skip their own analysis stage (run the `analyse` phase later, e.g. on a CPU)",
    )
    p.add_argument("--probe-steps", type=int, default=300)
    p.add_argument(
        "--memory-steps",
        type=int,
        default=30,
        help="steps of each exclusive 1B memory/throughput run (peaks are reached at the first optimizer "
        "step; gates B/E, set at step 100, are decided at the last step and say so)",
    )
    p.add_argument(
        "--mps",
        choices=("auto", "off"),
        default="auto",
        help="auto: the accuracy runs share the GPU through CUDA MPS (kernels of different processes run "
        "at once instead of time-slicing) when nvidia-cuda-mps-control is there and a client connects; "
        "off: plain time-sliced sharing. The memory runs never use it (exclusive, one at a time)",
    )
    p.add_argument("--budget-min", type=float, default=25.0, help="whole pilot on the GPU, minutes")
    p.add_argument("--force", action="store_true")
    a = p.parse_args(argv)
    for name in ("seeds", "jobs", "probe_steps", "memory_steps"):
        if getattr(a, name) < 1:
            print(f"--{name.replace('_', '-')}={getattr(a, name)} is not allowed; allowed: an integer >= 1")
            raise SystemExit(2)
    if a.first_seed < 0:
        print(f"--first-seed={a.first_seed} is not allowed; allowed: an integer >= 0")
        raise SystemExit(2)
    if a.launch_deadline_s is not None and a.launch_deadline_s <= 0:
        print(f"--launch-deadline-s={a.launch_deadline_s:g} is not allowed; allowed: seconds > 0")
        raise SystemExit(2)
    if a.steps is not None and a.steps < 1:
        print(f"--steps={a.steps} is not allowed; allowed: an integer >= 1")
        raise SystemExit(2)
    return a


class Timing:
    """Wall time of each phase and command, rewritten after each (so a killed pilot keeps what it had).
    A phase run again (a pilot split over device calls) keeps every invocation: its ``wall_s`` is
    their sum, its ``rc`` the latest; ``total_wall_s`` is the script's own (phase ``_total``)."""

    def __init__(self, root: Path, name: str = "pilot_timing.json") -> None:
        self.path = root / name
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.data.setdefault("phases", {})

    def record(self, phase: str, entry: dict[str, Any]) -> None:
        self.data["phases"][phase] = entry
        self._write()

    def add(self, phase: str, entry: dict[str, Any]) -> None:
        old = self.data["phases"].get(phase) or {}
        calls = old.get("invocations") or ([dict(old)] if old else [])
        calls.append(entry)
        self.record(
            phase,
            {
                "invocations": calls,
                "wall_s": sum(float(c.get("wall_s") or 0) for c in calls),
                "rc": entry.get("rc"),
            },
        )

    def _write(self) -> None:
        if "_total" in self.data["phases"]:
            self.data["total_wall_s"] = self.data["phases"]["_total"]["wall_s"]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True))
        os.replace(tmp, self.path)


def sh(cmd: list[str], log: Path | None = None) -> tuple[int, float]:
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    # a SIGTERM (a device call's time limit) reaches the command, and the script ends on it once the
    # command has stopped: its runs keep the time to checkpoint (subprocess.call would SIGKILL it)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") if log is not None else contextlib.nullcontext() as f:
        rc = wait_through_sigterm(subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT if f else None))
    return rc, time.perf_counter() - t0


def dataset_dir(root: str) -> Path:
    register()
    return Path(ddir(compose("run", ["scale=pilot_accuracy", f"results_root={root}"]).data, root))


@functools.cache
def accuracy_scale() -> Any:
    """The run config of the accuracy scale as composed with no overrides (composed once)."""
    register()
    return compose("run", ["scale=pilot_accuracy"])


def baselines_counts() -> str:
    """The samples the accuracy runs score (the scale's eval counts): the dataset's baselines.json is
    keyed by them, so the baselines phase computes exactly what the runs will look up."""
    e = accuracy_scale().train.eval
    return f"baselines.max_samples={{val:{int(e.val_samples)},test:{int(e.test_samples)}}}"


def accuracy_cmd(a: argparse.Namespace, twins: bool = False) -> list[str]:
    """The accuracy sweep (every arm, seeds 0..--seeds-1), or with ``twins`` the noise probe's (AdamW
    and its twin, seeds --first-seed onwards, sweep ``pilot-twins``, no gate F: no seed rule applies)."""
    overrides = [f"results_root={a.results_root}"] if a.results_root != "results" else []
    run_over = [f"train.max_steps={a.steps}"] if a.steps else []
    if a.first_look_only or twins:
        run_over.append("gates.F.enabled=false")
    arms = TWIN_ARMS if twins else ARMS
    seeds = range(a.first_seed, a.first_seed + a.seeds) if twins else range(a.seeds)
    return [
        sys.executable,
        "-m",
        "experiments.sweep",
        "sweep=mvt",
        "scale=pilot_accuracy",
        f"sweep.id={'pilot-twins' if twins else 'pilot-accuracy'}",
        f"sweep.grid.optimizer=[{','.join(arms)}]",
        f"sweep.grid.seed=[{','.join(str(s) for s in seeds)}]",
        f"sweep.run_overrides=[{','.join(repr(o) for o in run_over)}]",
        "sweep.waves=together",  # every arm at once (the scale's in-run gates are off)
        # launches of at most --jobs runs (each ends before the next starts), so a deadline can
        # stop between them
        f"sweep.jobs_per_launch={a.jobs}",
        *([f"sweep.launch_deadline_s={a.launch_deadline_s:g}"] if a.launch_deadline_s else []),
        *(["sweep.analyse=false"] if a.no_analyse or twins else []),
        # gate F's seed rule and the sweep's own analysis decide on what this sweep answers
        f"sweep.analysis_overrides=[{','.join(repr(o) for o in ACCURACY_ANALYSIS)}]",
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={a.jobs}",
        *overrides,
    ]


def memory_cmd(a: argparse.Namespace) -> list[str]:
    overrides = [f"results_root={a.results_root}"] if a.results_root != "results" else []
    return [
        sys.executable,
        "-m",
        "experiments.sweep",
        "sweep=mvt",
        "scale=pilot",
        "sweep.id=pilot-memory",
        f"sweep.grid.optimizer=[{','.join(MEMORY_ARMS)}]",
        # memory and throughput only: no accuracy is read from these runs (one test sample, no val)
        # (and no learned baselines: their fit would cost a minute on the first run's critical path)
        f"sweep.run_overrides=['train.max_steps={a.memory_steps}','train.eval.val_samples=0',"
        "'train.eval.test_samples=1','baselines.learned=[]']",
        f"sweep.analysis_overrides=[{','.join(repr(o) for o in MEMORY_ANALYSIS)}]",
        *(["sweep.analyse=false"] if a.no_analyse else []),
        *overrides,
    ]


class Mps:
    """A CUDA MPS control daemon of this user's, for the accuracy phase only (its own pipe and log
    directories, so nothing system-wide is touched), stopped afterwards. ``start`` says whether the
    runs will use it and, when not, why; a client that cannot connect within a minute means no MPS."""

    ENV = ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY")

    def __init__(self) -> None:
        self.exe = shutil.which("nvidia-cuda-mps-control")
        self.env: dict[str, str] = {}

    def start(self) -> dict[str, Any]:
        if self.exe is None:
            return {"used": False, "why": "nvidia-cuda-mps-control is not on PATH"}
        base = Path(tempfile.mkdtemp(prefix="pilot-mps-"))
        self.env = {
            "CUDA_MPS_PIPE_DIRECTORY": str(base / "pipe"),
            "CUDA_MPS_LOG_DIRECTORY": str(base / "log"),
        }
        for d in self.env.values():
            Path(d).mkdir()
        env = {**os.environ, **self.env}
        rc = subprocess.call([self.exe, "-d"], env=env)
        if rc != 0:
            return {"used": False, "why": f"nvidia-cuda-mps-control -d exited {rc}"}
        check = "import torch; x = torch.ones(4, device='cuda'); print(int((x + 1).sum()))"
        try:
            out = subprocess.run(
                [sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=60
            )
            ok, why = out.returncode == 0 and out.stdout.strip() == "8", out.stderr.strip()[-300:]
        except subprocess.TimeoutExpired:
            ok, why = False, "a CUDA client did not finish within 60 s"
        if not ok:
            self.stop()
            return {"used": False, "why": f"MPS client check failed: {why}"}
        os.environ.update(self.env)
        return {"used": True, **self.env}

    def stop(self) -> None:
        if self.exe is None or not self.env:
            return
        try:
            subprocess.run([self.exe], input="quit\n", text=True, env={**os.environ, **self.env}, timeout=60)
        except subprocess.TimeoutExpired:
            print("MPS: the control daemon did not quit within 60 s", flush=True)
        for k in self.ENV:
            os.environ.pop(k, None)
        self.env = {}


@contextlib.contextmanager
def mps_session(enabled: bool, why_off: str) -> Iterator[dict[str, Any]]:
    """CUDA MPS for what runs inside (children inherit the environment), when ``enabled`` and a
    client connects; yields the state (``used``, and ``why`` when not); always stopped afterwards."""
    mps = Mps()
    state = mps.start() if enabled else {"used": False, "why": why_off}
    print(f"MPS: {json.dumps(state)}", flush=True)
    try:
        yield state
    finally:
        mps.stop()


def warm_compile(a: argparse.Namespace) -> dict[str, Any] | None:
    """When the accuracy scale compiles its training step (train.compile), compile it once per graph
    before the sweep: one short run for the fp32-weight arms under autocast (AdamW: also 8-bit Adam and
    the replicate) and one for the bf16-weight arms (FlashOptim: also the two bf16 controls), side by
    side with every CPU core, filling torch's compile cache. The sweep's runs then load the compiled
    kernels instead of each compiling them on one core of a CPU shared by 21 processes. A warm-up
    that fails stops the phase before the sweep spends the GPU. None when the scale does not compile."""
    if not accuracy_scale().train.compile:
        return None
    base = [
        sys.executable,
        "-m",
        "experiments.run",
        "scale=pilot_accuracy",
        "sweep_id=pilot-compile-warmup",
        "wandb=disabled",
        "seed=0",
        "train.max_steps=3",
        "train.warmup_steps=1",
        # the sweep's own evaluation settings: the dataset's baselines.json is keyed by the samples
        # scored, and a warm-up scoring other counts rewrote it, so that the sweep's first run
        # recomputed it (~70 s) while the 17 others waited on its lock (H200, 2026-12-02)
        f"results_root={a.results_root}",
    ]
    scratch = Path(a.results_root) / "sweeps" / "pilot-compile-warmup"
    # the warm-up's own runs from an earlier call would be found finished and skipped, compiling
    # nothing: this folder only ever holds them, so it starts empty
    shutil.rmtree(scratch, ignore_errors=True)
    log = scratch / "warmup.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "ab") as sink:
        procs = [
            subprocess.Popen([*base, f"optimizer={arm}"], stdout=sink, stderr=subprocess.STDOUT)
            for arm in ("adamw", "flashoptim")
        ]
        try:
            rcs = [p.wait() for p in procs]
        except BaseException:  # SIGTERM or Ctrl-C: no compile left running behind the script
            for proc in procs:
                proc.kill()
            raise
    out = {"wall_s": time.perf_counter() - t0, "return_codes": rcs, "log": str(log)}
    print(f"compile warm-up: {json.dumps(out)}", flush=True)
    return out


def probe(a: argparse.Namespace, timing: Timing) -> dict[str, Any]:
    """One AdamW run alone, then ``jobs`` at once (other seeds), ``probe_steps`` each: the speed-up of
    sharing the GPU (runs/s together over runs/s alone) and the projected accuracy-sweep wall time."""
    root = Path(a.results_root)
    base = [
        sys.executable,
        "-m",
        "experiments.run",
        "scale=pilot_accuracy",
        "optimizer=adamw",
        "sweep_id=pilot-probe",
        "wandb=disabled",
        f"train.max_steps={a.probe_steps}",
        f"results_root={a.results_root}",
    ]
    log = root / "sweeps" / "pilot-probe" / "probe.log"
    rc, alone = sh([*base, "seed=0"], log)
    t0 = time.perf_counter()
    with open(log, "ab") as sink:
        procs = [
            subprocess.Popen([*base, f"seed={s}"], stdout=sink, stderr=subprocess.STDOUT)
            for s in range(1, a.jobs + 1)
        ]
        rcs = [p.wait() for p in procs]
    together = time.perf_counter() - t0
    speedup = a.jobs * alone / together
    runs = len(ARMS) * a.seeds
    steps = a.steps or int(accuracy_scale().train.max_steps)  # the scale's own
    # A run's cost = fixed part (start-up, data, eval: measured as alone - steps x step time is not
    # separable here) -> project conservatively by scaling the whole probe run with steps.
    per_run = alone * steps / a.probe_steps
    projected = runs * per_run / speedup
    out = {
        "alone_s": alone,
        "together_s": together,
        "jobs": a.jobs,
        "speedup": speedup,
        "return_codes": [rc, *rcs],
        "probe_steps": a.probe_steps,
        "projected_accuracy_sweep_s": projected,
        "projection": f"{runs} runs x {per_run:.0f} s (probe run scaled to {steps} steps) / speed-up {speedup:.2f}",
    }
    timing.record("probe", out)
    print(json.dumps(out, indent=2))
    return out


def accuracy_phase(a: argparse.Namespace, timing: Timing, twins: bool = False) -> int:
    """The compile warm-up and the accuracy sweep (or with ``twins`` the noise probe's), recorded as
    one invocation of the phase; also when a time limit's SIGTERM ends it (its wall time counts
    towards the pilot's). 1 when the warm-up failed."""
    t0 = time.perf_counter()
    cmd = accuracy_cmd(a, twins)
    entry: dict[str, Any] = {"rc": "terminated", "command": " ".join(cmd)}
    try:
        entry["compile_warmup"] = warm = warm_compile(a)
        if warm is not None and any(warm["return_codes"]):
            print(f"compile warm-up failed (see {warm['log']}): the accuracy sweep was not started")
            entry["rc"] = 1
            return 1
        # 18-21 runs start at once on a 16-core host: a run that still compiles (a graph the warm-up
        # did not fill) uses one core, not a pool each, and the tokenizer each run trains one thread
        os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        with mps_session(a.mps == "auto", "--mps off") as entry["mps"]:
            entry["rc"], _ = sh(cmd)
        return 0
    finally:
        entry["wall_s"] = time.perf_counter() - t0
        timing.add("twins" if twins else "accuracy", entry)


def _terminated(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the phases' finally blocks (their timing is written)


def main(argv: list[str] | None = None) -> int:
    a = parse(sys.argv[1:] if argv is None else argv)
    previous = signal.signal(signal.SIGTERM, _terminated)
    root = Path(a.results_root)
    # the noise probe is not part of the pilot: its time never adds to the pilot's 25-minute total
    timing = Timing(root, "twins_timing.json" if a.phase == "twins" else "pilot_timing.json")
    os.environ.setdefault("WANDB_MODE", "disabled")
    phases = ["data", "baselines", "accuracy", "memory", "analyse"] if a.phase == "all" else [a.phase]
    start = time.perf_counter()
    try:
        return run_phases(a, phases, timing)
    finally:  # also after a failed phase or a time limit's SIGTERM
        # every invocation of the script is kept: a pilot split over device calls adds them up here
        timing.add("_total", {"phases": phases, "wall_s": time.perf_counter() - start})
        signal.signal(signal.SIGTERM, previous)  # a caller in the same process gets its own back


def run_phases(a: argparse.Namespace, phases: list[str], timing: Timing) -> int:
    root = Path(a.results_root)
    for phase in phases:
        if phase == "data":
            rc, wall = sh([sys.executable, "-m", "datagen", "data=pilot", f"results_root={a.results_root}"])
            timing.record("data", {"rc": rc, "wall_s": wall, "dataset": str(dataset_dir(a.results_root))})
        elif phase == "baselines":
            cmd = [
                sys.executable,
                "-m",
                "experiments.eval.baselines",
                str(dataset_dir(a.results_root)),
                "baselines.splits=[val,test]",
                baselines_counts(),
            ]
            rc, wall = sh(cmd)
            timing.record("baselines", {"rc": rc, "wall_s": wall, "command": " ".join(cmd)})
        elif phase == "probe":
            probe(a, timing)
            continue
        elif phase == "accuracy":
            proj = (timing.data["phases"].get("probe") or {}).get("projected_accuracy_sweep_s")
            if proj is not None and proj > a.budget_min * 60 and not a.force:
                print(
                    f"projected accuracy sweep {proj / 60:.1f} min > --budget-min {a.budget_min}; allowed: "
                    "fewer --seeds/--steps, more --jobs, or --force"
                )
                return 2
            rc = accuracy_phase(a, timing)
            if rc:
                return rc
        elif phase == "twins":
            rc = accuracy_phase(a, timing, twins=True)
            if rc:
                return rc
        elif phase == "memory":
            rc, wall = sh(memory_cmd(a))
            timing.record("memory", {"rc": rc, "wall_s": wall, "command": " ".join(memory_cmd(a))})
        elif phase == "analyse":
            walls = {}
            for sweep, extra in (("pilot-accuracy", ACCURACY_ANALYSIS), ("pilot-memory", MEMORY_ANALYSIS)):
                d = root / "sweeps" / sweep
                if d.is_dir():
                    walls[sweep] = sh([sys.executable, "-m", "analysis", str(d), *extra])
            timing.record("analyse", {k: {"rc": v[0], "wall_s": v[1]} for k, v in walls.items()})
        if timing.data["phases"][phase].get("rc", 0) not in (0, None):
            print(f"phase {phase} ended with exit status {timing.data['phases'][phase]['rc']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

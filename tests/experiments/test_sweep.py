"""The sweep for real: planning, ordering, resume after SIGKILL, failures, gates B/C/F, launchers.

Every sweep here is the real ``python -m experiments.sweep`` composing the real conf/run.yaml and
computing real run ids, launching through Hydra's real launchers; only the run module is the
stand-in ``tests.experiments.fake_run`` (a real process honouring the run-directory contract, with
planted numbers), so a sweep of nine runs takes seconds. The same flow with the real
``experiments.run`` is in test_sweep_slow.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from common.atomic import read_jsonl

REPO = Path(__file__).resolve().parents[2]
FAST = [
    "sweep.run_module=tests.experiments.fake_run",
    "sweep.ensure_data=false",
    "sweep.analyse=false",
    "sweep.progress_interval_s=0.3",
    # the basic launcher forks runs from a server that imported these (the stand-in: seconds saved
    # do not matter here, the fork path does: kill, resume and crashes below go through it)
    "sweep.preload_modules=[tests.experiments.fake_run]",
]


def sweep_cmd(root: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "experiments.sweep", f"results_root={root}", *FAST, *args]


def run_sweep(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        sweep_cmd(root, *args),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def run_sweep_pid(root: Path, *args: str, timeout: float = 120) -> int:
    """As :func:`run_sweep`, for tests that need the sweep's own pid (the parent of its runs)."""
    proc = subprocess.Popen(
        sweep_cmd(root, *args), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return proc.pid


def plant(root: Path, **spec: Any) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "fake_spec.json").write_text(json.dumps(spec))


def sweep_json(root: Path) -> dict[str, Any]:
    (path,) = list((root / "sweeps").glob("*/sweep.json"))
    return json.loads(path.read_text())


def invocations(root: Path) -> list[dict[str, Any]]:
    path = root / "invocations.jsonl"
    return read_jsonl(path) if path.exists() else []


def alive(pid: int) -> bool:
    """True for a live process; a zombie (killed, not yet reaped by a container's init) is dead."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_mvt_order_failures_and_rerun_skips_finished(tmp_path: Path) -> None:
    root = tmp_path / "results"
    plant(
        root,
        steps=3,
        step_s=0.01,
        arms={"adam8bit": {"crash": True}},
        seeds={"flashoptim:1": {"status": "oom"}},
    )
    run_sweep(root, "sweep=mvt", "scale=smoke", "sweep.grid.seed=[0,1]")
    doc = sweep_json(root)
    assert (doc["design"], doc["scale"], doc["status"]) == ("mvt", "smoke", "completed")
    assert doc["protocol"] and len(doc["order"]) == 6 and len(set(doc["order"])) == 6
    runs = doc["runs"]
    # Baselines (reference first) before treatments for every seed; indices follow the order.
    arms = [r["arm"] for r in runs]
    assert arms.index("flashoptim") > max(i for i, a in enumerate(arms) if a != "flashoptim")
    for seed in (0, 1):
        mine = [r["arm"] for r in runs if r["seed"] == seed]
        assert mine == ["adamw", "adam8bit", "flashoptim"]
    status = {(r["arm"], r["seed"]): r["status"] for r in runs}
    # One arm crashing (no summary) and one OOM never stop the others.
    assert all(status[("adam8bit", s)] == "failed" for s in range(2))
    assert status[("flashoptim", 1)] == "oom"
    assert all(status[k] == "completed" for k in [("adamw", 0), ("adamw", 1), ("flashoptim", 0)])
    failed = next(r for r in runs if r["arm"] == "adam8bit")
    assert "without a terminal summary.json" in failed["status_reason"]
    gates = {g["gate"]: g for g in doc["gates"]}
    assert gates["F"]["outcome"] == "not_evaluable" and "has 2 seed(s)" in gates["F"]["reason"]
    assert gates["C"]["outcome"] == "not_evaluable"
    assert len(invocations(root)) == 6

    # Rerun: finished runs (completed and oom) are skipped by run_id; the crashed ones are tried again.
    plant(root, steps=3, step_s=0.01)
    proc = run_sweep(root, "sweep=mvt", "scale=smoke", "sweep.grid.seed=[0,1]")
    again = invocations(root)[6:]
    assert sorted((i["arm"], i["seed"]) for i in again) == [("adam8bit", s) for s in range(2)]
    assert all(i["resume"] for i in again), "a run dir without a summary is resumed"
    doc = sweep_json(root)
    assert {r["status"] for r in doc["runs"]} == {"completed", "oom"}
    # The log (not a TTY here) is readable: one line per finished run and the table of runs.
    assert "[6/6]" in proc.stdout and "adam8bit seed=1" in proc.stdout and "┃ status" in proc.stdout


def test_sigkill_mid_run_then_rerun_resumes_only_the_interrupted_run(tmp_path: Path) -> None:
    root = tmp_path / "results"
    plant(root, steps=25, step_s=0.08)
    args = ["sweep=mvt", "scale=smoke", "sweep.grid.seed=[0]", "sweep.grid.optimizer=[adamw,flashoptim]"]
    sweep = subprocess.Popen(
        sweep_cmd(root, *args), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 60
    try:
        while time.time() < deadline:  # kill while the second run is a few steps in
            inv = invocations(root)
            if len(inv) == 2:
                second = next((root / "sweeps").glob(f"*/runs/{inv[1]['run_id']}"), None)
                if (
                    second is not None
                    and (second / "metrics.jsonl").exists()
                    and len(read_jsonl(second / "metrics.jsonl")) >= 3
                ):
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the second run never started")
    finally:
        sweep.send_signal(signal.SIGKILL)
        sweep.wait(timeout=10)
    first, second = invocations(root)
    time.sleep(0.5)
    assert not alive(second["pid"]), "the run must die with its sweep (PR_SET_PDEATHSIG)"
    run_dir = next((root / "sweeps").glob(f"*/runs/{second['run_id']}"))
    assert not (run_dir / "summary.json").exists()
    partial_steps = len(read_jsonl(run_dir / "metrics.jsonl"))
    assert 3 <= partial_steps < 25
    doc = sweep_json(root)
    assert doc["status"] == "running"  # the killed sweep's record does not claim completion

    run_sweep(root, *args)
    again = invocations(root)[2:]
    assert [(i["run_id"], i["resume"]) for i in again] == [(second["run_id"], True)]
    steps = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")]
    assert steps == list(range(1, 26)), "resumed from the last logged step, nothing redone"
    doc = sweep_json(root)
    assert doc["status"] == "completed" and {r["status"] for r in doc["runs"]} == {"completed"}
    assert doc["order"][:2] == [first["run_id"], second["run_id"]]
    f = next(g for g in doc["gates"] if g["gate"] == "F")
    assert f["outcome"] == "not_evaluable" and "has 1 seed(s)" in f["reason"], "every gate is recorded"


def test_basic_launcher_forks_every_run_from_one_preloaded_server(tmp_path: Path) -> None:
    root = tmp_path / "results"
    plant(root, steps=2, step_s=0.01, seeds={"adam8bit:1": {"crash": True}})
    sweep_pid = run_sweep_pid(root, "sweep=mvt", "scale=smoke")
    inv = invocations(root)
    assert len(inv) == 9
    servers = {i["ppid"] for i in inv}
    assert len(servers) == 1 and sweep_pid not in servers, "one server, not the sweep, started the runs"
    assert all(i["preloaded"] for i in inv), "each run found the preloaded module already imported"
    assert len({i["pid"] for i in inv}) == 9, "each run is its own process"
    doc = sweep_json(root)
    status = {(r["arm"], r["seed"]): r["status"] for r in doc["runs"]}
    assert status[("adam8bit", 1)] == "failed"  # died without a summary (exit 3), as a subprocess would
    assert sum(s == "completed" for s in status.values()) == 8


def test_a_server_that_cannot_fork_safely_falls_back_to_one_interpreter_per_run(tmp_path: Path) -> None:
    root = tmp_path / "results"
    plant(root, steps=2, step_s=0.01)
    args = ["sweep=mvt", "scale=smoke", "sweep.grid.seed=[0]"]
    sweep_pid = run_sweep_pid(
        root, *args, "sweep.preload_modules=[tests.experiments.thread_on_import,no_such_module]"
    )
    inv = invocations(root)
    assert len(inv) == 3 and {i["ppid"] for i in inv} == {sweep_pid}
    assert not any(i["preloaded"] for i in inv)
    assert {r["status"] for r in sweep_json(root)["runs"]} == {"completed"}
    logs = "".join(p.read_text() for p in (root / "sweeps").glob("*/launcher/*.out"))
    assert "fork server not usable" in logs and "'threads': 2" in logs
    assert "no_such_module: ModuleNotFoundError" in logs


def test_gate_c_skips_larger_models(tmp_path: Path) -> None:
    root = tmp_path / "results"
    # 1B: FlashOptim saves 5% (< 8%: gate C fires).
    plant(root, steps=2, step_s=0.0, arms={"adamw": {"peak": 1.0e9}, "flashoptim": {"peak": 0.95e9}})
    run_sweep(
        root,
        "sweep=full",
        "scale=smoke",
        "sweep.grid.model=[llama2-7b,llama-1b]",
        "sweep.grid.seq_len=[64]",
        "sweep.grid.global_batch=[4]",
        "sweep.grid.behaviour=[hyperelastic]",
        "sweep.grid.optimizer=[adamw,flashoptim]",
    )
    doc = sweep_json(root)
    runs = doc["runs"]
    one_b = [r for r in runs if r["model"] == "llama-1b"]
    seven_b = [r for r in runs if r["model"] == "llama2-7b"]
    assert max(r["index"] for r in one_b) < min(r["index"] for r in seven_b), "1B before 7B"
    assert sorted({r["seed"] for r in one_b}) == [0, 1, 2], "no accuracy figures: gate F adds no seed"
    assert all(r["status"] == "completed" for r in one_b)
    assert len(seven_b) == 6 and all(
        r["status"] == "skipped" and "gate C" in r["status_reason"] for r in seven_b
    )
    gates = [g for g in doc["gates"]]
    c = next(g for g in gates if g["gate"] == "C")
    assert c["fired"] and c["values"]["mean_reduction"] < 0.08
    f = next(g for g in gates if g["gate"] == "F" and g["model"] == "llama-1b")
    # the rule stops at once: a 5% saving makes F1 (reduction < 10%) hold, a NO-GO no seed can change
    assert not f["fired"] and f["values"]["add"] == 0 and "F1 hold" in f["reason"]
    assert {i["seed"] for i in invocations(root)} == {0, 1, 2}


# Gate F: the pre-registered seed-adding rule on test accuracy. A rule with looks at 3 and 5 seeds
# (through sweep.analysis_overrides, as a user would pre-register it). AdamW's rel-L2 is 0.1 on every
# seed; FlashOptim's is ~5% better on average with a spread that leaves S3 undecided at 3 seeds
# (upper bound above ln 1.05) but asks for about 5 pairs, within the last look.
RULE_3_5 = "sweep.analysis_overrides=['criteria.sequential.looks=[3,5]']"
UNDECIDED_AT_3 = {
    "flashoptim:0": {"rel_l2": 0.0923},
    "flashoptim:1": {"rel_l2": 0.0951},
    "flashoptim:2": {"rel_l2": 0.098},
}


def test_gate_f_adds_seeds_by_the_pre_registered_rule_while_accuracy_is_undecided(tmp_path: Path) -> None:
    root = tmp_path / "results"
    plant(
        root,
        steps=2,
        step_s=0.0,
        arms={"adamw": {"rel_l2": 0.1}, "flashoptim": {"rel_l2": 0.095}},
        seeds=UNDECIDED_AT_3,
    )
    args = ["sweep=mvt", "scale=smoke", "sweep.grid.optimizer=[adamw,flashoptim]", RULE_3_5]
    run_sweep(root, *args)
    doc = sweep_json(root)
    seq = doc["sequential"]
    assert seq["rule"]["looks"] == [3, 5] and seq["rule"]["name"] == "two_stage"
    first, second = seq["looks"]
    assert (first["look"], first["seeds"], first["add"]) == (1, 3, 2) and "S3" in first["undecided"]
    assert first["confidence"] == pytest.approx(1 - 0.025 * 0.2)  # look 1 spends a fifth of the alpha
    assert (second["look"], second["seeds"], second["add"], second["stop"]) == (2, 5, 0, True)
    assert seq["seeds_added"] == [{"model": first["model"], "look": 1, "seeds": [3, 4]}]
    assert sorted((i["arm"], i["seed"]) for i in invocations(root)) == [
        (arm, s) for arm in ("adamw", "flashoptim") for s in range(5)
    ]
    runs = doc["runs"]
    assert len(runs) == 10 and {r["status"] for r in runs} == {"completed"}
    f = [g for g in doc["gates"] if g["gate"] == "F"]
    assert [g["fired"] for g in f] == [True, False]

    # The rerun replays the same looks from the finished runs and launches nothing.
    run_sweep(root, *args)
    assert len(invocations(root)) == 10
    assert sweep_json(root)["sequential"]["seeds_added"] == seq["seeds_added"]


def test_gate_f_adds_no_seed_when_accuracy_is_decided_at_the_first_look(tmp_path: Path) -> None:
    root = tmp_path / "results"
    # identical accuracy on every seed: the bound is exact, S3 passes at look 1
    plant(root, steps=2, step_s=0.0, arms={"adamw": {"rel_l2": 0.1}, "flashoptim": {"rel_l2": 0.1}})
    run_sweep(root, "sweep=mvt", "scale=smoke", "sweep.grid.optimizer=[adamw,flashoptim]", RULE_3_5)
    seq = sweep_json(root)["sequential"]
    assert [(k["look"], k["add"]) for k in seq["looks"]] == [(1, 0)] and seq["seeds_added"] == []
    assert "S3 pass" in seq["looks"][0]["reason"]
    assert len(invocations(root)) == 6


def test_gate_b_fired_in_a_run_stops_the_sweep(tmp_path: Path) -> None:
    root = tmp_path / "results"
    plant(root, steps=2, step_s=0.0, arms={"flashoptim": {"gate_b_fired": True, "status": "aborted"}})
    run_sweep(
        root, "sweep=mvt", "scale=smoke", "sweep.grid.seed=[0,1]", "sweep.grid.optimizer=[adamw,flashoptim]"
    )
    doc = sweep_json(root)
    status = {(r["arm"], r["seed"]): r for r in doc["runs"]}
    assert status[("flashoptim", 0)]["status"] == "aborted"
    assert status[("flashoptim", 1)]["status"] == "skipped"
    assert "gate B fired" in status[("flashoptim", 1)]["status_reason"]
    assert doc["status"] == "aborted" and any(
        g["gate"] == "B" and g["scope"] == "sweep" for g in doc["gates"]
    )
    # Rerunning the same command does not forget the abort: the skipped run is still not started.
    run_sweep(
        root, "sweep=mvt", "scale=smoke", "sweep.grid.seed=[0,1]", "sweep.grid.optimizer=[adamw,flashoptim]"
    )
    assert len(invocations(root)) == 3 and sweep_json(root)["status"] == "aborted"


def test_joblib_launcher_runs_a_wave_in_parallel_one_gpu_each(tmp_path: Path) -> None:
    root = tmp_path / "results"
    plant(root, steps=8, step_s=0.1)
    run_sweep(
        root,
        "sweep=mvt",
        "scale=smoke",
        "sweep.grid.seed=[0,1]",
        "sweep.grid.optimizer=[adamw,adam8bit]",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "sweep.gpus=[0,1]",
    )
    doc = sweep_json(root)
    assert doc["launcher"].endswith("JoblibLauncher")
    assert {r["status"] for r in doc["runs"]} == {"completed"}
    inv = invocations(root)
    assert len(inv) == 4 and {i["gpu"] for i in inv} == {"0", "1"}
    # Two runs overlapped in time (parallel), never on the same GPU.
    starts = sorted(i["t"] for i in inv)
    assert starts[1] - starts[0] < 0.7, "the wave's first two runs started together"


def test_submitit_local_launcher(tmp_path: Path) -> None:
    root = tmp_path / "results"
    plant(root, steps=2, step_s=0.0)
    run_sweep(
        root,
        "sweep=mvt",
        "scale=smoke",
        "sweep.grid.seed=[0]",
        "sweep.grid.optimizer=[adamw,flashoptim]",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
    )
    doc = sweep_json(root)
    assert doc["launcher"].endswith("submitit_launcher.LocalLauncher")
    assert [r["status"] for r in doc["runs"]] == ["completed", "completed"]
    sweep_dir = next((root / "sweeps").iterdir())
    assert list((sweep_dir / "launcher" / ".submitit").iterdir()), "submitit kept its job folders"


def test_dataset_is_made_first_once_and_a_failed_datagen_starts_no_run(tmp_path: Path) -> None:
    root = tmp_path / "results"
    plant(root, steps=2, step_s=0.0)
    (root / "fake_datagen_fail").touch()
    args = [
        "sweep=mvt",
        "scale=smoke",
        "sweep.grid.seed=[0]",
        "sweep.grid.optimizer=[adamw,flashoptim]",
        "sweep.ensure_data=true",
        "sweep.datagen_module=tests.experiments.fake_datagen",
    ]
    proc = subprocess.run(sweep_cmd(root, *args), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "did not produce" in proc.stderr and "manifest.json" in proc.stderr
    assert invocations(root) == [], "no run starts without its dataset"
    assert sweep_json(root)["status"] == "failed"

    (root / "fake_datagen_fail").unlink()
    out = run_sweep(root, *args).stdout
    assert "stage: dataset" in out and "data=smoke" in out
    assert len(read_jsonl(root / "datagen_invocations.jsonl")) == 2
    assert len(list((root / "datasets").glob("*/manifest.json"))) == 1
    assert [i["arm"] for i in invocations(root)] == ["adamw", "flashoptim"]
    run_sweep(root, *args)  # the dataset exists now: datagen is not started again
    assert len(read_jsonl(root / "datagen_invocations.jsonl")) == 2


def test_a_launch_deadline_leaves_runs_pending_and_the_same_command_continues(tmp_path: Path) -> None:
    root = tmp_path / "results"
    plant(root, steps=2, step_s=0.0, arms={"adamw": {"rel_l2": 0.1}, "flashoptim": {"rel_l2": 0.1}})
    args = ["sweep=mvt", "scale=smoke", "sweep.grid.optimizer=[adamw,flashoptim]", RULE_3_5]
    # the first launch of an invocation always starts; after it any deadline is past: one run (the
    # basic launcher launches one run at a time), the rest pending, no gate decided on a partial look
    proc = run_sweep(root, *args, "sweep.launch_deadline_s=0.001")
    doc = sweep_json(root)
    assert (doc["status"], len(invocations(root))) == ("incomplete", 1)
    assert sorted(r["status"] for r in doc["runs"]) == ["completed"] + ["pending"] * 5
    assert "5 run(s) pending" in doc["status_reason"] and "run the same command again" in proc.stdout
    assert doc["sequential"]["looks"] == [] and not [g for g in doc["gates"] if g["gate"] == "F"]
    # the same command without the deadline: the finished run is kept, the five others run, gate F looks
    run_sweep(root, *args)
    doc = sweep_json(root)
    assert doc["status"] == "completed" and len(invocations(root)) == 6
    assert {r["status"] for r in doc["runs"]} == {"completed"}
    assert [(k["look"], k["add"]) for k in doc["sequential"]["looks"]] == [(1, 0)]


def test_a_bad_launch_deadline_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        sweep_cmd(tmp_path / "results", "sweep=mvt", "scale=smoke", "sweep.launch_deadline_s=-5"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr
    assert "sweep.launch_deadline_s=-5" in err[0] and "seconds > 0" in err[0]


def test_a_process_group_sigterm_lets_joblib_runs_stop_cleanly(tmp_path: Path) -> None:
    """A time limit (`timeout`, a batch system) signals the whole process group: the sweep, its joblib
    workers and their runs get SIGTERM at once. The runs must be able to finish their stop path
    (checkpoint, resumable summary): a worker that died at once took its run with it (the run dies
    with its parent), and 12 nearly finished runs of an H200 pilot were lost so."""
    root = tmp_path / "results"
    plant(root, steps=200, step_s=0.05, stop_s=1.0)
    args = ["sweep=mvt", "scale=smoke", "sweep.grid.seed=[0]", "sweep.grid.optimizer=[adamw,adam8bit]"]
    proc = subprocess.Popen(
        sweep_cmd(
            root,
            *args,
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "sweep.waves=together",  # both at once (the pilot's way): the in-run gates off
            "sweep.run_overrides=['gates.A.enabled=false','gates.B.enabled=false',"
            "'gates.D.enabled=false','gates.E.enabled=false']",
        ),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as under `timeout`
    )
    try:
        deadline = time.time() + 60
        while len(invocations(root)) < 2 and time.time() < deadline:
            time.sleep(0.1)
        assert len(invocations(root)) == 2, "both runs started"
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    for inv in invocations(root):
        run_dirs = list((root / "sweeps").glob(f"*/runs/{inv['run_id']}"))
        summary = json.loads((run_dirs[0] / "summary.json").read_text())
        assert (summary["status"], summary["resumable"]) == ("aborted", True), summary
        assert not alive(inv["pid"])

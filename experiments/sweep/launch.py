"""Launch runs through Hydra's own launcher plugins (basic, joblib, submitit_local, submitit_slurm).

The sweep's composed config (with its ``hydra`` node, ``hydra/launcher=...`` chosen on the command
line) instantiates the launcher exactly as ``@hydra.main --multirun`` would; each job is the sweep
config plus ``sweep.launch_run=<run_id>``, and the task function (:class:`RunTask`) starts
``python -m <sweep.run_module> <run overrides> sweep_id=<id>`` in its own process.

Hazards handled here:
- A killed sweep must not leave a run process writing to a run dir that the next sweep starts
  again: the child gets ``PR_SET_PDEATHSIG=SIGKILL`` (Linux) and each run holds an exclusive
  ``flock`` on ``<sweep_dir>/locks/<run_id>.lock`` while it runs; a second launcher of the same run
  (a stray SLURM job, an orphan) waits for it and then finds its summary.
- One GPU per run on a multi-GPU host (joblib): a job takes the first free ``gpus/<k>.lock`` and
  exports ``CUDA_VISIBLE_DEVICES=k``; a sharded run (``dist.nproc=n``, one torchrun command) takes
  n at once. Under SLURM the scheduler sets the device; we leave it alone.
- The decision "resume or start" is taken when the job starts (a requeued job finds its run dir).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra._internal.callbacks import Callbacks
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.types import HydraContext
from omegaconf import open_dict

from common.config import CONF_DIR, loader
from experiments.rundir import flock, read_summary, run_lock
from experiments.sweep import forkserver
from experiments.sweep.forkserver import die_with_parent


def cuda_present() -> bool:
    """An NVIDIA GPU this process could use, without importing torch or initialising CUDA: the driver's
    device nodes exist and ``CUDA_VISIBLE_DEVICES`` does not hide every device."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return any(Path("/dev").glob("nvidia[0-9]*"))


def forking_allowed(devices: Iterable[str]) -> bool:
    """Whether runs with these ``harness.device`` settings may be forked from the preloading server:
    only when every one computes on the CPU. A forked child cannot use CUDA once the server's imports
    (bitsandbytes) initialised it ("Cannot re-initialize CUDA in forked subprocess": on an H200 every
    run of a sequential sweep failed that way)."""
    wanted = set(devices)
    if wanted == {"cpu"}:
        return True
    return "cuda" not in wanted and not cuda_present()


@contextlib.contextmanager
def _gpu_slot(sweep_dir: Path, gpus: Sequence[int] | None, n: int = 1) -> Iterator[str | None]:
    """Hold ``n`` free GPUs (``gpus/<k>.lock``) for one run; yields their ids as CUDA_VISIBLE_DEVICES.
    A sharded run (``dist.nproc=n``) takes n GPUs at once, never a partial set (no deadlock between
    two runs each holding half of what they need)."""
    if not gpus:
        yield None
        return
    if n > len(gpus):
        raise ValueError(f"a run needs {n} GPUs (dist.nproc) but the sweep has {len(gpus)}: {list(gpus)}")
    while True:
        with contextlib.ExitStack() as held:
            got = []
            for k in gpus:
                if held.enter_context(flock(sweep_dir / "locks" / f"gpu-{k}.lock", blocking=False)):
                    got.append(str(int(k)))
                    if len(got) == n:
                        yield ",".join(got)
                        return
        time.sleep(1.0)  # more jobs than GPUs (n_jobs > len(gpus)): wait for enough to free up


def _nproc(argv: Sequence[str]) -> int:
    """Processes (GPUs) a run asks for: the last ``dist.nproc=`` override, else 1."""
    n = 1
    for a in argv:
        if a.startswith("dist.nproc="):
            n = int(a.partition("=")[2])
    return n


class RunTask:
    """Hydra task function: runs one planned run as a subprocess; never raises for a failed run.

    ``jobs`` maps run_id -> (argv after ``python -m <module>``, run_dir). Picklable (joblib's loky
    and submitit pickle it into their workers).

    ``preload``: a non-empty list of modules starts a fork server (:mod:`experiments.sweep.forkserver`)
    that imports them once; each run that needs no GPU is then forked from it instead of starting a
    fresh interpreter. Only the sweep's own process uses it (the basic launcher, which calls this
    object in the sweep process; the object is pickled without it for other launchers' workers).
    """

    def __init__(
        self,
        jobs: dict[str, tuple[list[str], str]],
        sweep_dir: str,
        run_module: str,
        gpus: Sequence[int] | None,
        preload: Sequence[str] = (),
    ) -> None:
        self.jobs = jobs
        self.sweep_dir = sweep_dir
        self.run_module = run_module
        self.gpus = list(gpus) if gpus else None
        self.preload = list(preload)
        self._server: forkserver.Client | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_server": None, "preload": []}

    def start_server(self) -> None:
        """Start the fork server now (its imports overlap with what the sweep does before the first run)."""
        if self.preload and self._server is None:
            self._server = forkserver.Client(
                self.preload, Path(self.sweep_dir) / "launcher" / "forkserver.log"
            )

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def __call__(self, cfg: Any) -> dict[str, Any]:
        run_id = str(cfg.sweep.launch_run)
        argv, run_dir = self.jobs[run_id]
        sweep_dir = Path(self.sweep_dir)
        with run_lock(sweep_dir, run_id):
            done = read_summary(run_dir)
            if done is not None and not done.get("resumable"):  # finished meanwhile (another launcher)
                return {"run_id": run_id, "returncode": 0, "skipped": True}
            resume = Path(run_dir).exists()
            cmd = [sys.executable, "-m", self.run_module, *argv] + (["resume=true"] if resume else [])
            log_path = sweep_dir / "launcher" / f"{run_id}.out"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with _gpu_slot(sweep_dir, self.gpus, _nproc(argv)) as gpu, open(log_path, "ab") as log:
                env = dict(os.environ)
                if gpu is not None:
                    env["CUDA_VISIBLE_DEVICES"] = gpu
                env["HARNESS_RUN_DIR"] = str(run_dir)  # informational: where the sweep expects the run
                returncode = None
                if gpu is None and _nproc(argv) == 1 and self.preload:
                    self.start_server()
                    assert self._server is not None
                    log.write(f"$ {' '.join(cmd)}  (gpu={gpu}, resume={resume}, forked)\n".encode())
                    log.flush()
                    returncode = self._server.run(self.run_module, cmd[3:], env, log_path)
                    if returncode is None:
                        log.write(f"{self._server.error}; starting a fresh interpreter\n".encode())
                if returncode is None:
                    log.write(f"$ {' '.join(cmd)}  (gpu={gpu}, resume={resume})\n".encode())
                    log.flush()
                    child = subprocess.Popen(
                        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=die_with_parent
                    )
                    returncode = wait_through_sigterm(child)
        return {"run_id": run_id, "returncode": returncode, "resume": resume, "gpu": gpu}


def wait_through_sigterm(child: subprocess.Popen[bytes]) -> int:
    """Wait for a run; a SIGTERM meanwhile goes to the run, and this process waits for it to stop.

    A time limit (``timeout``, a batch system) signals the whole process group at once. The run dies
    with its parent (PR_SET_PDEATHSIG), so a launcher process that died at once on the signal took its
    run with it before the run could checkpoint (12 nearly finished runs of an H200 pilot were lost
    so). Here the signal is passed on (a second SIGTERM is harmless to a run) and this process ends
    on it, as it would have, once the run has. Outside the main thread, where no handler can be set,
    it only waits."""
    got: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        got.append(signum)
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    try:
        previous = signal.signal(signal.SIGTERM, forward)
    except ValueError:  # not the main thread
        return child.wait()
    try:
        returncode = child.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if got:
        signal.raise_signal(signal.SIGTERM)  # the previous handler's due, now the run has stopped
    return returncode


def is_sequential(cfg: Any) -> bool:
    return str(cfg.hydra.launcher._target_).endswith("BasicLauncher")


def make_launcher(sweep_cfg_with_hydra: Any, task: RunTask, sweep_dir: Path) -> Any:
    """Instantiate the configured Hydra launcher for this sweep's job configs."""
    cfg = sweep_cfg_with_hydra
    with open_dict(cfg):
        cfg.hydra.sweep.dir = str(sweep_dir / "launcher")
    ctx = HydraContext(config_loader=loader(CONF_DIR), callbacks=Callbacks(cfg))
    return Plugins.instance().instantiate_launcher(hydra_context=ctx, task_function=task, config=cfg)


def job_overrides(task_overrides: Sequence[str], sweep_dir: Path, run_ids: Sequence[str]) -> list[list[str]]:
    """Each job: the sweep's own overrides + which run it is + where the launcher keeps its files."""
    base = [o for o in task_overrides if not o.startswith(("hydra.sweep.dir=", "sweep.launch_run="))]
    return [
        # quoted: Hydra's grammar would read an all-digit run id as an int (losing leading zeros) and
        # one like 39932545e435 as a float (inf), and the job would launch a run that does not exist
        [*base, f"sweep.launch_run='{rid}'", f"hydra.sweep.dir='{sweep_dir / 'launcher'}'"]
        for rid in run_ids
    ]


def launch(launcher: Any, overrides: list[list[str]], initial_job_idx: int) -> list[dict[str, Any]]:
    """Run one batch of jobs; a job whose task raised is reported, not re-raised (the sweep goes on)."""
    out = []
    for ret in launcher.launch(overrides, initial_job_idx=initial_job_idx):
        if ret.status == JobStatus.COMPLETED:
            out.append(ret.return_value)
        else:
            out.append({"error": repr(ret._return_value)})
    return out

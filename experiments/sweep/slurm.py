"""The sweep's SLURM launcher (``hydra/launcher=slurm``): Hydra's submitit launcher, with the ending
of every job taken from the scheduler instead of raised.

Hydra's ``SlurmLauncher`` submits one job array per batch and then calls ``job.results()`` on each
job in turn: a job that SLURM ended without a result (scancel, time limit, a node failure, a
preemption) raises there and takes the whole sweep down with it, and submitit's wait asks ``sacct``,
which a cluster without an accounting database cannot answer. Here the batch is submitted the same
way (the same executor parameters, the same pickled task), then:

- the launcher waits on ``squeue`` (every ``sweep.progress_interval_s``), falling back to ``sacct``
  for a job that has left the queue;
- a job SLURM ended without a result comes back as a failed ``JobReturn`` whose error names the job
  and its SLURM state (``CANCELLED``, ``TIMEOUT``, ``NODE_FAIL``, ...). The run itself records its
  own status in its run directory: a run sent SIGTERM (scancel, the time limit, preemption)
  checkpoints and writes ``aborted`` with ``resumable: true``; one killed outright leaves no summary,
  which the sweep records as ``failed``. Rerunning the sweep command resumes both from checkpoint;
- Ctrl-C or SIGTERM of the sweep cancels its jobs (each run checkpoints on SLURM's SIGTERM), so no
  job outlives it (a SIGKILLed sweep cannot: its rerun waits for such a run, see experiments.sweep.launch).

On the compute node the job ignores SIGUSR2: submitit asks SLURM for it ``signal_delay_s`` before the
time limit to requeue a job, and SLURM sends it to every process of the job, which would kill the run
(Python's default) before it can checkpoint. The run stops on SIGTERM instead (the time limit itself,
or earlier with ``additional_parameters.signal=TERM@<s>``). A job is never requeued by submitit
(``max_num_timeout`` is 0): the sweep's rerun is the one way a run continues.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _SubmititSlurmLauncher
from omegaconf import OmegaConf

from common.config import exit_on_config_error, load
from experiments import config as run_config
from experiments.sweep import launch
from experiments.sweep import main as S
from experiments.sweep import plan as P
from experiments.sweep.config import validate

# SLURM job states in which a job may still run (squeue's long names).
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "SUSPENDED",
        "STOPPED",
        "RESV_DEL_HOLD",
    }
)


class SchedulerEnded(RuntimeError):
    """A job that SLURM ended without the task's result (its run dir says what the run recorded)."""


def _run(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout if proc.returncode == 0 else ""


def job_states(job_ids: Sequence[str]) -> dict[str, str]:
    """SLURM state of each job id (``123`` or an array task ``123_4``); a job found nowhere is absent.

    ``squeue -t all`` knows every job slurmctld still holds (MinJobAge after its end); ``sacct`` (an
    accounting database) or ``sacct --completion`` (a job-completion log) knows the older ones.
    """
    if not job_ids:
        return {}
    wanted = set(job_ids)
    arrays = sorted({j.split("_")[0] for j in job_ids})
    states: dict[str, str] = {}
    out = _run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", ",".join(arrays)])
    for line in out.splitlines():
        jid, _, state = line.strip().partition("|")
        if jid in wanted and state:
            states[jid] = state
    missing = wanted - states.keys()
    if missing:
        for extra in ([], ["--completion"]):
            out = _run(["sacct", *extra, "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(arrays)])
            for line in out.splitlines():
                jid, _, state = line.strip().partition("|")
                if jid in missing and state:
                    states[jid] = state.split()[0]  # "CANCELLED by 0" -> CANCELLED
            if wanted <= states.keys():
                break
    return states


class SlurmLauncher(_SubmititSlurmLauncher):
    """``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml): see the module docstring."""

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        # On the node, before the run is started: SIGUSR2 ignored here and (inherited) in the run.
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        start, termed = time.time(), []
        # SIGTERM reaches the run too (SLURM signals every process of the job), which checkpoints and
        # records `aborted`; this process waits for it and says when SLURM asked.
        signal.signal(signal.SIGTERM, lambda *_: termed.append(time.time() - start))
        ret = super().__call__(*args, **kwargs)
        if termed and ret.status == JobStatus.COMPLETED and isinstance(ret._return_value, dict):
            limit = self.params.get("timeout_min")
            ret._return_value = {
                **ret._return_value,
                "error": f"SLURM sent SIGTERM to job {_this_job()} after "
                f"{termed[0]:.0f} s of its {limit} min time limit",
            }
        return ret

    def executor(self, nproc: int = 1, submits: bool = True) -> Any:
        """The submitit executor for this launcher's parameters (the same mapping as Hydra's plugin),
        for a run of ``nproc`` processes: ``gpus_per_node`` and ``cpus_per_task`` are per process,
        so a sharded run (``dist=fsdp2 dist.nproc=n``, one torchrun on one node) asks for n times
        each, in one task. ``submits=False``: only for writing batch scripts, which needs no SLURM
        on this machine (submitit's executor refuses to exist where ``srun`` is not on PATH)."""
        import submitit  # heavy; only when a sweep actually submits
        from submitit.slurm.slurm import SlurmExecutor  # same

        params = dict(self.params)
        folder = params.pop("submitit_folder")
        max_num_timeout = params.pop("max_num_timeout", 0)
        if nproc > 1:
            for key in ("gpus_per_node", "cpus_per_task"):
                if params.get(key):
                    params[key] = int(params[key]) * nproc
            params["tasks_per_node"] = 1  # torchrun starts the ranks, not srun
        with contextlib.ExitStack() as stack:
            if not submits:  # writes a script, submits nothing: do not ask for srun
                stack.enter_context(mock.patch.object(SlurmExecutor, "affinity", return_value=1))
            executor = submitit.AutoExecutor(
                cluster="slurm", folder=folder, slurm_max_num_timeout=max_num_timeout
            )
        generic = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in generic else f"slurm_{k}": v for k, v in params.items()})
        return executor

    def nproc(self, overrides: Sequence[str]) -> int:
        """Processes of the run a job starts (``dist.nproc`` in the sweep's run argv); 1 otherwise."""
        jobs = getattr(self.task_function, "jobs", None)  # experiments.sweep.launch.RunTask
        run = next(
            (o.split("=", 1)[1].strip("'") for o in overrides if o.startswith("sweep.launch_run=")), None
        )
        if not jobs or run not in jobs:
            return 1
        return launch._nproc(jobs[run][0])

    def sbatch_script(self, overrides: Sequence[str]) -> str:
        """The batch script this launcher would submit for one job (for ``sbatch --test-only``)."""
        slurm_executor = self.executor(self.nproc(overrides), submits=False)._executor  # Auto -> Slurm
        return str(slurm_executor._make_submission_file_text(slurm_executor._submitit_command_str, "test"))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.config is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        groups: dict[int, list[int]] = {}  # nproc -> job indices (one job array each)
        for i, o in enumerate(job_overrides):
            groups.setdefault(self.nproc(o), []).append(i)
        jobs: list[Any] = [None] * len(job_overrides)
        for n, idx in sorted(groups.items()):
            params = [
                (
                    list(job_overrides[i]),
                    "hydra.sweep.dir",
                    initial_job_idx + i,
                    f"job_id_for_{initial_job_idx + i}",
                    Singleton.get_state(),
                )
                for i in idx
            ]
            for i, job in zip(idx, self.executor(n).map_array(self, *zip(*params))):
                jobs[i] = job
        poll_s = float(OmegaConf.select(self.config, "sweep.progress_interval_s", default=5.0) or 5.0)
        previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill <sweep>` as Ctrl-C: cancel below
        try:
            final = self.wait(jobs, poll_s)
        except BaseException:  # Ctrl-C, SIGTERM or a bug: the jobs must not run on unobserved
            _run(["scancel", *[j.job_id for j in jobs]])
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
        return [self._job_return(job, final[job.job_id], o) for job, o in zip(jobs, job_overrides)]

    @staticmethod
    def wait(jobs: Sequence[Any], poll_s: float) -> dict[str, str]:
        """Block until no job is in an active state; job id -> final state."""
        pending = {j.job_id for j in jobs}
        final: dict[str, str] = {}
        unseen_since: dict[str, float] = {}
        while pending:
            states = job_states(sorted(pending))
            now = time.time()
            for jid in sorted(pending):
                state = states.get(jid)
                if state is None:
                    # Just submitted (not yet listed) or aged out of slurmctld with no accounting: give
                    # it a grace period, then call it gone.
                    if now - unseen_since.setdefault(jid, now) > 120:
                        final[jid] = "UNKNOWN"
                        pending.discard(jid)
                    continue
                unseen_since.pop(jid, None)
                if state not in ACTIVE_STATES:
                    final[jid] = state
                    pending.discard(jid)
            if pending:
                time.sleep(poll_s)
        return final

    def _job_return(self, job: Any, state: str, overrides: Sequence[str]) -> JobReturn:
        where = f"SLURM job {job.job_id} ended {state}"
        if Path(job.paths.result_pickle).exists():
            try:
                ret = job.results()[0]
            except Exception as exc:  # the task raised on the node
                return _failed(overrides, SchedulerEnded(f"{where}: {type(exc).__name__}: {exc}"[:500]))
            if state == "COMPLETED":
                return ret
            # The task returned (the run recorded its status) but SLURM ended the job otherwise, e.g.
            # scancel while the run was checkpointing: the state is part of the record.
            return _failed(overrides, SchedulerEnded(f"{where} (the task had returned)"))
        log = Path(job.paths.stderr)
        tail = ""
        if log.exists():
            lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
            tail = f"; last line of {log}: {lines[-1][:200]}" if lines else ""
        return _failed(overrides, SchedulerEnded(f"{where} without a result{tail}"))


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"{signal.Signals(signum).name} while waiting for SLURM jobs")


def _this_job() -> str:
    """This job's id as squeue shows it (``<array>_<task>`` for an array task)."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID", "?")


def _failed(overrides: Sequence[str], exc: BaseException) -> JobReturn:
    return JobReturn(
        overrides=list(filter_overrides(list(overrides))), status=JobStatus.FAILED, _return_value=exc
    )


def batch_scripts(argv: Sequence[str]) -> dict[str, str]:
    """run_id -> the batch script ``python -m experiments.sweep <argv>`` would submit for it (nothing
    is submitted; ``argv`` must choose a SLURM launcher, e.g. ``hydra/launcher=slurm``)."""
    overrides = [f"sweep.scale={a.split('=', 1)[1]}" if a.startswith("scale=") else a for a in argv]
    cfg = load("sweep", overrides, multirun=True)
    validate(cfg)
    run_config.register()
    probe, _ = P.compose_run(
        cfg.sweep.run_config,
        [f"scale={cfg.scale}", *cfg.sweep.run_overrides],
        cfg.sweep.run_config_dir or P.CONF_DIR,
    )
    sweep = S.Sweep(cfg, overrides, S._sweep_id(cfg, probe))
    runs = sweep.expand()
    task = launch.RunTask(
        {r.run_id: (sweep._argv(r), str(r.run_dir)) for r in runs}, str(sweep.sweep_dir), "", None
    )
    launcher = launch.make_launcher(cfg, task, sweep.sweep_dir)
    if not hasattr(launcher, "sbatch_script"):  # (as __main__, this module's class is another object)
        raise SystemExit(
            f"experiments.sweep.slurm: the launcher is {type(launcher).__name__}; choose hydra/launcher=slurm"
        )
    jobs = launch.job_overrides(S._task_overrides(overrides), sweep.sweep_dir, [r.run_id for r in runs])
    return {r.run_id: launcher.sbatch_script(o) for r, o in zip(runs, jobs)}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m experiments.sweep.slurm <sweep overrides>``: print the batch script of every run."""
    with exit_on_config_error():
        scripts = batch_scripts(list(sys.argv[1:] if argv is None else argv))
    for run_id, text in scripts.items():
        print(f"# ---- run {run_id}\n{text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

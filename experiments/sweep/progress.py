"""Live progress of a sweep: a table of runs (status, step, ETA), readable on a TTY and in a log.

The state of a run is read from its directory only (the run is another process, maybe another
machine): a terminal ``summary.json`` -> its status; else the last row of ``metrics.jsonl`` -> running
at that step. On a TTY a ``rich`` live table is redrawn; in a non-TTY log (``make mvt > log``) one line
is printed per status change and a compact table every ``table_every_s`` seconds.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from experiments.rundir import read_summary

STATUS_STYLE = {
    "completed": "green",
    "running": "cyan",
    "pending": "white",
    "skipped": "yellow",
    "oom": "red",
    "diverged": "red",
    "aborted": "magenta",
    "failed": "red",
    "interrupted": "yellow",
}


def last_metrics_row(run_dir: Path, tail_bytes: int = 8192) -> dict[str, Any] | None:
    """The last complete JSON line of metrics.jsonl (a torn final line from a live writer is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - tail_bytes))
            chunk = f.read().decode(errors="replace")
    except FileNotFoundError:
        return None
    for line in reversed(chunk.splitlines()):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            return row
    return None


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "-"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Progress:
    """Polls run directories; ``entries`` are the sweep's run records (dicts it updates in place)."""

    def __init__(
        self,
        entries: list[dict[str, Any]],
        on_change: Callable[[], None],
        interval_s: float,
        title: str,
        table_every_s: float = 60.0,
        console: Console | None = None,
        lock: threading.RLock | None = None,
    ) -> None:
        self.entries = entries
        self.on_change = on_change
        self.interval_s = interval_s
        self.title = title
        self.table_every_s = table_every_s
        self.tty = sys.stdout.isatty()
        self.console = console or Console(width=None if self.tty else 160, force_terminal=self.tty)
        self.stage = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Any = None
        self._last_table = 0.0
        self.lock = lock or threading.RLock()

    # -- polling -----------------------------------------------------------------------------------
    def poll_entry(self, e: dict[str, Any]) -> bool:
        """Refresh one running/pending entry from disk; True when its status changed."""
        if e["status"] not in ("running", "pending", "interrupted"):
            return False
        run_dir = Path(e["run_dir"])
        summary = read_summary(run_dir)
        if summary is not None and summary.get("resumable"):
            # a stopped run's summary (scancel, time limit) from an earlier job: it is resumed, so it
            # is no result until this invocation's job rewrites it
            try:
                stale = (run_dir / "summary.json").stat().st_mtime < (e.get("started_t") or float("inf"))
            except OSError:
                stale = True
            if e["status"] != "running" or stale:
                summary = None
        if summary is not None:
            e.update(
                status=summary["status"],
                status_reason=summary.get("status_reason"),
                step=summary.get("steps_completed", e.get("step")),
                eta_s=0,
            )
            if e.get("started_t"):
                e["duration_s"] = time.time() - e["started_t"]
            return True
        if e["status"] != "running":
            return False
        row = last_metrics_row(run_dir)
        if row and isinstance(row.get("step"), int):
            e["step"] = row["step"]
            total = e.get("total_steps")
            step_time = row.get("step_time_s")
            if total and isinstance(step_time, int | float):
                e["eta_s"] = max(0, total - row["step"]) * float(step_time)
        return False

    def poll(self) -> None:
        with self.lock:
            changed = [e for e in self.entries if self.poll_entry(e)]
            for e in changed:
                self.event(e)
            if changed:
                self.on_change()

    def event(self, e: dict[str, Any]) -> None:
        """One line per status change (the log's record of the sweep)."""
        done = sum(1 for x in self.entries if x["status"] not in ("pending", "running", "interrupted"))
        reason = f" ({e['status_reason']})" if e.get("status_reason") else ""
        self._print(
            f"[{done}/{len(self.entries)}] {e['run_id']} {e['arm']} seed={e['seed']} "
            f"{e['setting']}: {e['status']}{reason}"
        )

    def _print(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    # -- rendering ---------------------------------------------------------------------------------
    def sweep_eta_s(self) -> float | None:
        """Median finished-run duration x runs left / runs running at once (None before any finished)."""
        durations = sorted(e["duration_s"] for e in self.entries if e.get("duration_s"))
        left = sum(1 for e in self.entries if e["status"] in ("pending", "running", "interrupted"))
        running = max(1, sum(1 for e in self.entries if e["status"] == "running"))
        if not durations:
            return None
        return durations[len(durations) // 2] * left / running

    def table(self) -> Table:
        done = sum(1 for e in self.entries if e["status"] not in ("pending", "running", "interrupted"))
        head = f"{self.title}: {done}/{len(self.entries)} done, sweep ETA {fmt_duration(self.sweep_eta_s())}"
        t = Table(title=f"{head}\n{self.stage}".strip(), expand=False)
        for col in ("#", "run_id", "arm", "seed", "setting", "status", "step", "ETA"):
            t.add_column(col, no_wrap=col != "setting")
        for e in self.entries:
            step = e.get("step")
            total = e.get("total_steps")
            step_txt = "-" if step is None else f"{step}/{total}" if total else str(step)
            eta = fmt_duration(e.get("eta_s")) if e["status"] == "running" else ""
            style = STATUS_STYLE.get(e["status"], "white")
            t.add_row(
                str(e["index"]),
                e["run_id"],
                e["arm"],
                str(e["seed"]),
                e["setting"],
                f"[{style}]{e['status']}[/{style}]",
                step_txt,
                eta,
            )
        return t

    def show_table(self) -> None:
        with self.lock:
            self.console.print(self.table())
            self._last_table = time.monotonic()

    def set_stage(self, stage: str) -> None:
        self.stage = stage
        self._print(f"stage: {stage}")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
                if self._live is not None:
                    self._live.update(self.table())
                elif time.monotonic() - self._last_table > self.table_every_s:
                    self.show_table()
            except Exception as exc:  # progress must never kill the sweep; say so and go on
                self._print(f"progress: could not refresh ({type(exc).__name__}: {exc})")

    def __enter__(self) -> Progress:
        if self.tty:
            self._live = Live(self.table(), console=self.console, refresh_per_second=1, transient=False)
            self._live.__enter__()
        else:
            self.show_table()
        self._thread = threading.Thread(target=self._loop, name="sweep-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.poll()
        if self._live is not None:
            self._live.update(self.table())
            self._live.__exit__(None, None, None)
            self._live = None
        else:
            self.show_table()

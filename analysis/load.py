"""Read a sweep directory: every run's summary.json and metrics.jsonl, plus sweep.json,
config.yaml and manifest.json when present (provenance and sweep-level gates only).

Nothing here needs the dataset, a GPU or torch: a sweep directory copied from a cluster is enough.
A run directory without summary.json is unfinished (or crashed before writing it): it is listed
in ``Sweep.unfinished`` and shown in the report, never silently dropped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.atomic import read_json, read_jsonl


class SweepInputError(Exception):
    """The sweep directory cannot be analysed; the message is one line for the user."""


STATUSES = ("completed", "oom", "diverged", "aborted", "failed")  # ARCHITECTURE.md run contract
# Summary fields the criteria read: a number, or null where not measured. Anything else is refused
# with the file, key and value, never silently dropped.
NUMERIC_KEYS = (
    "rel_l2_error",
    "val_rel_l2_error",
    "tokens_per_s",
    "final_loss",
    "initial_loss",
    "steps_completed",
    "n_params",
    "peak_mem_allocated_bytes",
    "peak_mem_reserved_bytes",
    "peak_mem_nvml_process_bytes",
)


@dataclass
class Run:
    run_dir: Path
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    config_text: str | None = None
    manifest: dict[str, Any] | None = None

    @property
    def run_id(self) -> str:
        return str(self.summary.get("run_id") or self.run_dir.name)

    @property
    def arm(self) -> str:
        return str(self.summary.get("optimizer"))

    @property
    def seed(self) -> Any:
        return self.summary.get("seed")

    @property
    def status(self) -> str:
        return str(self.summary.get("status"))

    @property
    def grid(self) -> dict[str, Any]:
        """The sweep axes other than optimizer and seed; ``model`` is always among them."""
        grid = dict(self.summary.get("grid") or {})
        grid.setdefault("model", self.summary.get("model"))
        return grid

    @property
    def cell(self) -> tuple[tuple[str, str], ...]:
        """A hashable, ordered key of the grid point (values as strings so that 512 and "512" agree)."""
        return tuple(sorted((k, str(v)) for k, v in self.grid.items()))

    def num(self, key: str) -> float | None:
        """A finite float summary field, or None where it is missing, null, NaN or inf."""
        return finite(self.summary.get(key))

    def device_memory_bytes(self) -> float | None:
        """Total memory of the run's GPU, from the summary or the run manifest (for OOM bounds)."""
        for key in ("device_total_memory_bytes", "device_memory_bytes", "gpu_total_memory_bytes"):
            if finite(self.summary.get(key)) is not None:
                return float(self.summary[key])
        manifest = self.manifest or {}
        hw = manifest.get("hardware") or {}
        for gpu in hw.get("gpus") or []:
            if finite(gpu.get("total_memory_bytes")) is not None:
                return float(gpu["total_memory_bytes"])
        return None


@dataclass
class Sweep:
    sweep_dir: Path
    runs: list[Run]
    sweep_json: dict[str, Any] | None = None
    unfinished: list[Path] = field(default_factory=list)

    @property
    def sweep_id(self) -> str:
        if self.sweep_json and self.sweep_json.get("sweep_id"):
            return str(self.sweep_json["sweep_id"])
        ids = {r.summary.get("sweep_id") for r in self.runs if r.summary.get("sweep_id")}
        return str(ids.pop()) if len(ids) == 1 else self.sweep_dir.name

    @property
    def scale(self) -> str:
        if self.sweep_json and self.sweep_json.get("scale"):
            return str(self.sweep_json["scale"])
        scales = sorted({str(r.summary.get("scale")) for r in self.runs if r.summary.get("scale")})
        return scales[0] if len(scales) == 1 else ("+".join(scales) if scales else "unknown")

    def arms(self) -> list[str]:
        return sorted({r.arm for r in self.runs})

    def model_sizes(self) -> list[str]:
        """Model presets, smallest first (by n_params; by name where n_params is missing)."""
        return sort_models({str(r.grid.get("model")): r.num("n_params") for r in self.runs})


def sort_models(n_params: dict[str, float | None]) -> list[str]:
    return sorted(n_params, key=lambda m: (n_params[m] is None, n_params[m] or 0.0, m))


def finite(x: Any) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _read_run(run_dir: Path) -> Run:
    summary_path = run_dir / "summary.json"
    try:
        summary = read_json(summary_path)
    except (OSError, json.JSONDecodeError) as e:
        raise SweepInputError(f"{summary_path}: unreadable summary.json ({e}); expected a JSON object") from e
    if not isinstance(summary, dict) or "optimizer" not in summary or "status" not in summary:
        raise SweepInputError(
            f"{summary_path}: summary.json lacks `optimizer`/`status` (ARCHITECTURE.md contract)"
        )
    if summary["status"] not in STATUSES:
        raise SweepInputError(
            f"{summary_path}: status={summary['status']!r} is not allowed; allowed: one of {', '.join(STATUSES)}"
        )
    for key in NUMERIC_KEYS:
        v = summary.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise SweepInputError(f"{summary_path}: {key}={v!r} is not allowed; allowed: a number or null")
    metrics_path = metrics_file(run_dir)
    metrics = read_jsonl(metrics_path) if metrics_path is not None else []
    config_path = run_dir / "config.yaml"
    manifest_path = run_dir / "manifest.json"
    manifest = None
    if manifest_path.exists():
        try:
            manifest = read_json(manifest_path)
        except (OSError, json.JSONDecodeError):
            manifest = None  # provenance only: a bad manifest must not stop the analysis
    return Run(
        run_dir=run_dir,
        summary=summary,
        metrics=metrics,
        config_text=config_path.read_text() if config_path.exists() else None,
        manifest=manifest,
    )


def metrics_file(run_dir: Path) -> Path | None:
    """The run's ``metrics.jsonl``, or ``metrics.jsonl.gz`` where an archived run keeps it compressed
    (committed evidence: scripts/archive_runs.py); None when it has neither."""
    for name in ("metrics.jsonl", "metrics.jsonl.gz"):
        if (run_dir / name).is_file():
            return run_dir / name
    return None


def load_sweep(sweep_dir: str | Path) -> Sweep:
    """Load ``sweep_dir`` (results/sweeps/<sweep_id>/); raise SweepInputError with one line if unusable.

    Run directories are ``runs/*/`` (the contract); a directory holding run dirs directly is
    accepted too, so that a hand-copied set of runs can be analysed.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise SweepInputError(
            f"sweep directory {str(sweep_dir)!r} does not exist; "
            "give results/sweeps/<sweep_id>/ holding runs/<run_id>/summary.json"
        )
    runs_root = sweep_dir / "runs" if (sweep_dir / "runs").is_dir() else sweep_dir
    candidates = sorted(
        p for p in runs_root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "report"
    )
    runs = [_read_run(p) for p in candidates if (p / "summary.json").exists()]
    unfinished = [p for p in candidates if not (p / "summary.json").exists()]
    if not runs:
        raise SweepInputError(
            f"no runs/<run_id>/summary.json under {str(sweep_dir)!r}; "
            "analysis needs at least one finished run"
        )
    sweep_json = None
    if (sweep_dir / "sweep.json").exists():
        try:
            sweep_json = read_json(sweep_dir / "sweep.json")
        except (OSError, json.JSONDecodeError) as e:
            raise SweepInputError(f"{sweep_dir / 'sweep.json'}: unreadable ({e})") from e
    return Sweep(sweep_dir=sweep_dir, runs=runs, sweep_json=sweep_json, unfinished=unfinished)

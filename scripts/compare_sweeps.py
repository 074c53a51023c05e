"""Are two runs of the same sweep the same behaviour? For refactors that must not change results.

    python -m scripts.compare_sweeps results_before/sweeps/<id> results_after/sweeps/<id>

Compares the sweep ids, the run ids, every run's deterministic summary fields (status, steps,
losses, errors, parse rates, optimizer-state bytes and dtypes, dataset id, example output), its
per-step training losses (``metrics.jsonl``), its gate outcomes, and the sweep's verdict and
criterion outcomes. Wall-clock figures (step times, tokens/s) and memory peaks read from the
allocator are not compared: they are measurements, not behaviour. Prints one line per run and
exits 0 when everything compared is identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from analysis.load import metrics_file
from common.atomic import read_jsonl
from experiments.rundir import read_summary

DETERMINISTIC = (
    "status",
    "status_reason",
    "steps_completed",
    "n_params",
    "initial_loss",
    "final_loss",
    "rel_l2_error",
    "val_rel_l2_error",
    "parse_failure_rate",
    "val_parse_failure_rate",
    "trivial_rel_l2_error",
    "optimizer_state_bytes",
    "optimizer_state_bytes_per_param",
    "optimizer_state_dtypes",
    "state_materialised",
    "param_bytes_per_param",
    "dataset_id",
    "example_output",
    "tokenizer_vocab_size",
)


def _losses(run: Path) -> list[float]:
    path = metrics_file(run)
    if path is None:
        return []
    return [row["loss"] for row in read_jsonl(path)]


def _gates(summary: dict[str, Any]) -> list[tuple[Any, Any, Any]]:
    return [(g.get("gate"), g.get("outcome"), g.get("fired")) for g in summary.get("gates", [])]


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def compare(a: Path, b: Path) -> list[str]:
    """Lines describing the comparison; the last one is ``IDENTICAL`` or ``DIFFERENT: ...``."""
    out: list[str] = []
    problems: list[str] = []
    if a.name != b.name:
        problems.append(f"sweep id {a.name} != {b.name}")
    ids_a = sorted(p.name for p in (a / "runs").iterdir()) if (a / "runs").is_dir() else []
    ids_b = sorted(p.name for p in (b / "runs").iterdir()) if (b / "runs").is_dir() else []
    out.append(f"run ids: {' '.join(ids_a)}")
    if ids_a != ids_b:
        problems.append(
            f"run ids differ: only before {sorted(set(ids_a) - set(ids_b))}, only after {sorted(set(ids_b) - set(ids_a))}"
        )
    for rid in sorted(set(ids_a) & set(ids_b)):
        ra, rb = a / "runs" / rid, b / "runs" / rid
        sa, sb = read_summary(ra) or {}, read_summary(rb) or {}  # the run-directory contract's reader
        bad = [k for k in DETERMINISTIC if sa.get(k) != sb.get(k)]
        if not sa or not sb:
            bad.append("summary.json missing")
        if _losses(ra) != _losses(rb):
            bad.append("metrics.jsonl losses")
        if _gates(sa) != _gates(sb):
            bad.append("gates")
        out.append(
            f"{rid} {sa.get('optimizer', '?'):<12} seed={sa.get('seed', '?')} {sa.get('status', '?'):<10} "
            f"final_loss={sa.get('final_loss')} -> {'identical' if not bad else 'differ: ' + ', '.join(bad)}"
        )
        if bad:
            problems.append(f"run {rid}: {', '.join(bad)}")
    va, vb = _read(a / "report" / "verdict.json"), _read(b / "report" / "verdict.json")
    ca = [(c.get("id"), c.get("outcome")) for c in va.get("criteria", [])]
    cb = [(c.get("id"), c.get("outcome")) for c in vb.get("criteria", [])]
    out.append(f"verdict: {va.get('verdict')} / {vb.get('verdict')}; criteria: {ca}")
    if va.get("verdict") != vb.get("verdict") or ca != cb:
        problems.append("verdict or criterion outcomes differ")
    out.append("IDENTICAL" if not problems else "DIFFERENT: " + "; ".join(problems))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path, help="a sweep directory (results/sweeps/<id>)")
    parser.add_argument("after", type=Path, help="the same sweep, run by the other code")
    args = parser.parse_args(argv)
    for d in (args.before, args.after):
        if not (d / "runs").is_dir():
            print(f"compare_sweeps: {d} is not a sweep directory (no runs/ in it)", file=sys.stderr)
            return 2
    lines = compare(args.before, args.after)
    print("\n".join(lines))
    return 0 if lines[-1] == "IDENTICAL" else 1


if __name__ == "__main__":
    raise SystemExit(main())

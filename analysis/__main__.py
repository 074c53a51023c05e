"""``python -m analysis <sweep_dir> [key=value ...] [--cfg]``: criteria, verdict and report of a sweep.

Prints a few reason lines, then ``VERDICT: <GO|NO-GO|INCONCLUSIVE> (<scale> scale) — report: <path>``.
Bad input (no such directory, no finished runs, a config mistake) is one line on stderr and exit 2.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from analysis.load import SweepInputError, load_sweep
from common.config import EXIT_CONFIG_ERROR, load_validated
from common.logs import setup_logging

# pandas, scipy, matplotlib and Hydra are imported only after the cheap input checks: a mistyped
# directory should fail in a fraction of a second, not after seconds of imports.

USAGE = "usage: python -m analysis <sweep_dir> [key=value ...] [--cfg]"
log = logging.getLogger("analysis")


def _stale_default_report(sweep_dir: str, why: str) -> None:
    """A re-analysis refused its input: the sweep's earlier verdict.json must not look current."""
    report = Path(sweep_dir) / "report"
    if (report / "verdict.json").is_file():
        from analysis.build import mark_stale  # the heavy report modules, only on this path

        mark_stale(report, f"the last re-analysis failed: {why}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    show_cfg = "--cfg" in argv
    argv = [a for a in argv if a != "--cfg"]
    positional = [a for a in argv if "=" not in a and not a.startswith("-")]
    overrides = [a for a in argv if "=" in a]
    unknown = [a for a in argv if a not in positional and a not in overrides]
    if not show_cfg and (len(positional) != 1 or unknown):
        print(f"expected exactly one sweep directory, got {positional + unknown}; {USAGE}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    t0 = time.perf_counter()
    sweep = None
    if not show_cfg:
        try:
            sweep = load_sweep(positional[0])
        except SweepInputError as e:
            print(str(e), file=sys.stderr)
            _stale_default_report(positional[0], str(e))
            return EXIT_CONFIG_ERROR
    from analysis.config import register, validate

    register()
    cfg = load_validated("analysis", overrides, validate)
    if sweep is None:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(cfg))
        return 0
    setup_logging()
    from analysis.build import OutputDirError, build_context, check_output_dir, mark_stale, write_report
    from analysis.wandb_log import log_summary_run
    from common.provenance import git_state

    out_dir = Path(cfg.output_dir) if cfg.output_dir else sweep.sweep_dir / "report"
    try:
        check_output_dir(out_dir, sweep.sweep_id)
    except OutputDirError as e:
        print(str(e), file=sys.stderr)
        return EXIT_CONFIG_ERROR
    # The code version the report names, read before marking the old report stale: that edits its
    # verdict.json, and a committed report would make a clean checkout read as dirty.
    here = git_state()
    # Until the new report is swapped in whole, the old one says it is not current (a crash, a kill
    # or a bad input below leaves it so).
    mark_stale(out_dir, f"a re-analysis started at {time.strftime('%Y-%m-%dT%H:%M:%S')} has not finished")
    ctx = build_context(sweep, cfg, here)
    write_report(ctx, out_dir)
    log_summary_run(ctx, out_dir)
    log.info("analysed %d runs in %.1f s", len(sweep.runs), time.perf_counter() - t0)
    for reason in ctx.primary.reasons[:8]:
        print(f"  - {reason}")
    if len(ctx.primary.reasons) > 8:
        print(f"  - ... {len(ctx.primary.reasons) - 8} more in {out_dir / 'verdict.json'}")
    print(f"VERDICT: {ctx.primary.verdict} ({ctx.scale} scale) — report: {out_dir / 'report.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

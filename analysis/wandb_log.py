"""Log the criteria table and figures to one W&B summary run in the sweep's group (when enabled)."""

from __future__ import annotations

import logging
from pathlib import Path

from analysis.context import ReportContext
from analysis.tables import criteria_frame

log = logging.getLogger(__name__)


def log_summary_run(ctx: ReportContext, report_dir: Path) -> str | None:
    """Returns the W&B run directory, or None when ``wandb.mode`` is disabled."""
    cfg = ctx.cfg
    if cfg.wandb.mode == "disabled":
        return None
    import wandb  # imported only when used: it is slow to import and spawns a service process

    group = cfg.wandb.group or ctx.sweep.sweep_id
    run = wandb.init(
        project=cfg.wandb.project,
        entity=cfg.wandb.entity,
        mode=cfg.wandb.mode,
        group=group,
        job_type="analysis",
        name=f"{ctx.sweep.sweep_id}-analysis",
        dir=str(ctx.sweep.sweep_dir),
        config={"scale": ctx.scale, "design": ctx.design, "treatment_arm": ctx.primary.arm},
    )
    try:
        frame = criteria_frame(ctx.primary.criteria + [c for av in ctx.secondary for c in av.criteria], cfg)
        frame = frame.astype(object).where(frame.notna(), None)
        payload: dict[str, object] = {"criteria": wandb.Table(dataframe=frame)}
        for f in ctx.figures:
            payload[f"figures/{f.name}"] = wandb.Image(
                str(report_dir / "figures" / f"{f.name}.png"), caption=f.title
            )
        run.log(payload)
        run.summary["verdict"] = ctx.primary.verdict
        run.summary["scale"] = ctx.scale
        for c in ctx.primary.criteria:
            run.summary[f"criteria/{c.id}"] = c.outcome
        run_dir = str(Path(run.dir).parent)
    finally:
        run.finish()
    log.info("logged the analysis to W&B (%s, group %s): %s", cfg.wandb.mode, group, run_dir)
    return run_dir

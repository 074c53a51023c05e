"""The report's figures (matplotlib, Agg backend), each saved as PNG and returned with a caption.

A figure whose data are missing (peak memory on CPU, no completed runs) is a panel that says why,
never an empty axis or a broken image.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on a cluster login node or in CI
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.criteria import label
from analysis.load import Sweep, finite, sort_models
from analysis.pairs import GIB
from analysis.tables import BREAKDOWN

COMPONENT_COLOURS = ("#4c72b0", "#55a868", "#c44e52", "#8172b2", "#bbbbbb")
ARM_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


class PlaceholderPNG(bytes):
    """PNG bytes of a panel that explains why there is no plot; ``message`` says why."""

    message: str


@dataclass
class Figure:
    name: str  # file stem under report/figures/
    title: str
    caption: str
    png: bytes
    placeholder: str | None = None  # the reason when the figure is a "no data" panel

    def __post_init__(self) -> None:
        if self.placeholder is None and isinstance(self.png, PlaceholderPNG):
            self.placeholder = self.png.message


def _arm_colour(arms: list[str], arm: str) -> str:
    return ARM_COLOURS[arms.index(arm) % len(ARM_COLOURS)] if arm in arms else "#333333"


def _png(fig: Any, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def placeholder(title: str, message: str, dpi: int) -> PlaceholderPNG:
    fig, ax = plt.subplots(figsize=(6.4, 2.2))
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(
        0.5,
        0.5,
        message,
        ha="center",
        va="center",
        fontsize=12,
        wrap=True,
        bbox={"boxstyle": "round", "facecolor": "#f3f3f3", "edgecolor": "#999999"},
    )
    png = PlaceholderPNG(_png(fig, dpi))
    png.message = message
    return png


def _models(runs: pd.DataFrame) -> list[str]:
    """Model sizes smallest first (1b, 7b, 13b), not in string order (13b, 1b, 7b)."""
    sizes = runs.groupby(runs["model"].astype(str))["n_params"].median()
    return sort_models({m: (None if pd.isna(v) else float(v)) for m, v in sizes.items()})


def _mem_unmeasurable_msg(runs: pd.DataFrame) -> str:
    if (runs["mem_measurable"] == False).any():  # noqa: E712 (pandas elementwise comparison)
        return "not measurable on CPU (mem_measurable=false): run on a GPU to measure peak memory"
    return "no peak memory recorded in any finished run"


def _cells(sweep: Sweep, max_cells: int) -> tuple[list[Any], int]:
    """Up to ``max_cells`` grid cells to draw: for each model size (smallest first) its most central
    cell (numeric axes nearest their median, on a log scale) first, then the next, round-robin."""
    cells = sorted({r.cell for r in sweep.runs})
    axes_values: dict[str, list[float]] = {}
    for cell in cells:
        for k, v in cell:
            x = finite(v)
            if k != "model" and x is not None and x > 0:
                axes_values.setdefault(k, []).append(math.log2(x))
    medians = {k: float(np.median(v)) for k, v in axes_values.items()}

    def off_centre(cell: Any) -> float:
        return sum(
            abs(math.log2(float(v)) - medians[k])
            for k, v in cell
            if k in medians and finite(v) is not None and float(v) > 0
        )

    per_model = {
        m: sorted((c for c in cells if dict(c).get("model") == m), key=lambda c: (off_centre(c), c))
        for m in sweep.model_sizes()
    }
    chosen: list[Any] = []
    for rank in range(max((len(v) for v in per_model.values()), default=0)):
        chosen += [v[rank] for v in per_model.values() if rank < len(v)]
    return chosen[:max_cells], len(cells)


def _curve_panels(
    sweep: Sweep, cfg: Any, arms: list[str], key: str, scale: float, ylabel: str, title: str
) -> tuple[bytes, str] | None:
    cells, n_cells = _cells(sweep, cfg.figures.max_cells)
    has_any = any(finite(row.get(key)) is not None for r in sweep.runs for row in r.metrics)
    if not has_any:
        return None
    ncols = min(3, len(cells))
    nrows = int(np.ceil(len(cells) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(5.0 * ncols, 3.4 * nrows), squeeze=False, constrained_layout=True
    )
    for ax, cell in zip(axes.flat, cells):
        for arm in arms:
            series = []
            for r in sweep.runs:
                if r.arm == arm and r.cell == cell:
                    s = {
                        int(row["step"]): finite(row.get(key))
                        for row in r.metrics
                        if finite(row.get("step")) is not None
                    }
                    series.append(pd.Series({k: (np.nan if v is None else v / scale) for k, v in s.items()}))
            if not series:
                continue
            frame = pd.concat(series, axis=1).sort_index()
            mean, lo, hi = frame.mean(axis=1), frame.min(axis=1), frame.max(axis=1)
            colour = _arm_colour(arms, arm)
            ax.plot(mean.index, mean.values, color=colour, label=f"{label(cfg, arm)} (n={frame.shape[1]})")
            ax.fill_between(mean.index, lo.values, hi.values, color=colour, alpha=0.2, linewidth=0)
        ax.set_title(", ".join(f"{k}={v}" for k, v in cell), fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(cells) :]:
        ax.set_axis_off()
    fig.suptitle(title)
    shown = (
        f"showing {len(cells)} of {n_cells} grid cells (all runs are in tables/runs.csv)"
        if n_cells > len(cells)
        else f"all {n_cells} grid cell(s)"
    )
    return _png(fig, cfg.figures.dpi), shown


def loss_curves(sweep: Sweep, runs: pd.DataFrame, cfg: Any, arms: list[str]) -> Figure:
    out = _curve_panels(sweep, cfg, arms, "loss", 1.0, "training loss", "Training loss per arm")
    caption = "Mean over seeds (line) and min-max band over seeds (shaded)"
    if out is None:
        return Figure(
            "loss_curves",
            "Training loss",
            caption,
            placeholder("Training loss", "no loss logged in any metrics.jsonl", cfg.figures.dpi),
        )
    return Figure("loss_curves", "Training loss", f"{caption}; {out[1]}.", out[0])


def memory_over_steps(sweep: Sweep, runs: pd.DataFrame, cfg: Any, arms: list[str]) -> Figure:
    out = _curve_panels(
        sweep,
        cfg,
        arms,
        "mem_allocated_bytes",
        GIB,
        "allocated memory (GiB)",
        "Allocated GPU memory over steps",
    )
    if out is None:
        return Figure(
            "memory_over_steps",
            "Memory over steps",
            "Allocated memory logged per step.",
            placeholder("Memory over steps", _mem_unmeasurable_msg(runs), cfg.figures.dpi),
        )
    return Figure(
        "memory_over_steps",
        "Memory over steps",
        f"torch.cuda allocated memory per logged step, mean and min-max over seeds; {out[1]}.",
        out[0],
    )


def peak_memory_breakdown(sweep: Sweep, runs: pd.DataFrame, cfg: Any, arms: list[str]) -> Figure:
    title = "Peak memory by arm and model size"
    measured = runs.dropna(subset=["peak_mem_gib"])
    ooms = runs.dropna(subset=["oom_device_mem_gib"])
    if measured.empty and ooms.empty:
        return Figure(
            "peak_memory",
            title,
            "Peak allocated memory stacked by component.",
            placeholder(title, _mem_unmeasurable_msg(runs), cfg.figures.dpi),
        )
    models = _models(runs)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(models) * len(arms)), 4.2))
    width = 0.8 / max(1, len(arms))
    comp_cols = [k.replace("_bytes", "_gib") for k in BREAKDOWN]
    for mi, model in enumerate(models):
        for ai, arm in enumerate(arms):
            x = mi + (ai - (len(arms) - 1) / 2) * width
            sub = measured[(measured["model"].astype(str) == model) & (measured["arm"] == arm)]
            oom = ooms[(ooms["model"].astype(str) == model) & (ooms["arm"] == arm)]
            if not sub.empty:
                comps = sub[comp_cols].mean(skipna=True)
                if comps.notna().any():
                    bottom = 0.0
                    for ci, col in enumerate(comp_cols):
                        v = float(comps[col]) if pd.notna(comps[col]) else 0.0
                        ax.bar(
                            x,
                            v,
                            width,
                            bottom=bottom,
                            color=COMPONENT_COLOURS[ci],
                            label=col.replace("_gib", "") if mi == 0 and ai == 0 else None,
                        )
                        bottom += v
                else:
                    ax.bar(
                        x,
                        sub["peak_mem_gib"].mean(),
                        width,
                        color="#999999",
                        label="peak (no breakdown)" if mi == 0 and ai == 0 else None,
                    )
                ax.plot(
                    [x - width / 2, x + width / 2], [sub["peak_mem_gib"].mean()] * 2, color="black", lw=1.5
                )
            elif not oom.empty:
                ax.bar(
                    x, oom["oom_device_mem_gib"].max(), width, color="white", edgecolor="#c44e52", hatch="//"
                )
                ax.text(
                    x,
                    oom["oom_device_mem_gib"].max(),
                    "OOM",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color="#c44e52",
                )
            ax.text(x, 0, label(cfg, arm), rotation=90, ha="center", va="bottom", fontsize=7, color="white")
    ax.set_xticks(range(len(models)), models)
    ax.set_xlabel("model size")
    ax.set_ylabel("peak memory (GiB)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(title)
    caption = (
        "Bars: mean over seeds and the other grid axes, stacked by component (summary mem_breakdown); "
        "black tick: measured peak allocated memory. Hatched 'OOM': the run needed more than the "
        f"device memory. Arms left to right: {', '.join(label(cfg, a) for a in arms)}."
    )
    return Figure("peak_memory", title, caption, _png(fig, cfg.figures.dpi))


def _bars(
    runs: pd.DataFrame,
    cfg: Any,
    arms: list[str],
    col: str,
    ylabel: str,
    title: str,
    baseline_col: str | None = None,
) -> bytes:
    data = runs.dropna(subset=[col])
    if data.empty:
        return placeholder(title, f"no {col} in any finished run", cfg.figures.dpi)
    models = [m for m in _models(runs) if m in set(data["model"].astype(str))]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(models) * len(arms)), 3.8))
    width = 0.8 / max(1, len(arms))
    for mi, model in enumerate(models):
        for ai, arm in enumerate(arms):
            sub = data[(data["model"].astype(str) == model) & (data["arm"] == arm)][col]
            if sub.empty:
                continue
            x = mi + (ai - (len(arms) - 1) / 2) * width
            ax.bar(
                x, sub.mean(), width, color=_arm_colour(arms, arm), label=label(cfg, arm) if mi == 0 else None
            )
            ax.scatter(np.full(len(sub), x), sub.values, color="black", s=8, zorder=3)
    if baseline_col and runs[baseline_col].notna().any():
        level = float(runs[baseline_col].mean())
        ax.axhline(level, color="#c44e52", ls="--", label="trivial predictor")
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, max(hi, level * 1.08))  # else a line at the top edge hides behind the frame
    ax.set_xticks(range(len(models)), models)
    ax.set_xlabel("model size")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    return _png(fig, cfg.figures.dpi)


def tokens_per_s(sweep: Sweep, runs: pd.DataFrame, cfg: Any, arms: list[str]) -> Figure:
    done = runs[runs["status"].isin(list(cfg.quality_statuses))]
    return Figure(
        "tokens_per_s",
        "Throughput",
        "Mean tokens/s over seeds and other grid axes; dots: runs.",
        _bars(done, cfg, arms, "tokens_per_s", "tokens / s", "Training throughput"),
    )


def rel_l2(sweep: Sweep, runs: pd.DataFrame, cfg: Any, arms: list[str]) -> Figure:
    done = runs[runs["status"].isin(list(cfg.quality_statuses))]
    return Figure(
        "rel_l2_error",
        "Relative L2 error",
        "Held-out relative L2 error of predicted stress (lower "
        "is better); dashed: the trivial predictor (training mean).",
        _bars(done, cfg, arms, "rel_l2_error", "relative L2 error", "Accuracy", "trivial_rel_l2_error"),
    )


def checkpoint_size(sweep: Sweep, runs: pd.DataFrame, cfg: Any, arms: list[str]) -> Figure:
    return Figure(
        "checkpoint_size",
        "Checkpoint size",
        "Bytes of a saved checkpoint (weights + optimizer state).",
        _bars(runs, cfg, arms, "checkpoint_gib", "checkpoint size (GiB)", "Checkpoint size by arm"),
    )


def pareto(sweep: Sweep, runs: pd.DataFrame, cfg: Any, arms: list[str]) -> Figure:
    title = "Memory vs accuracy"
    done = runs[runs["status"].isin(list(cfg.quality_statuses))].dropna(
        subset=["peak_mem_gib", "rel_l2_error"]
    )
    if done.empty:
        msg = _mem_unmeasurable_msg(runs) if runs["peak_mem_gib"].isna().all() else "no run has both numbers"
        return Figure(
            "pareto",
            title,
            "Pareto frontier of peak memory vs relative L2 error.",
            placeholder(title, msg, cfg.figures.dpi),
        )
    pts = done.groupby(["arm", "cell"], as_index=False)[["peak_mem_gib", "rel_l2_error"]].mean()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for arm in arms:
        sub = pts[pts["arm"] == arm]
        ax.scatter(
            sub["peak_mem_gib"], sub["rel_l2_error"], color=_arm_colour(arms, arm), label=label(cfg, arm)
        )
    order = pts.sort_values(["peak_mem_gib", "rel_l2_error"])
    frontier, best = [], np.inf
    for _, p in order.iterrows():
        if p["rel_l2_error"] < best:
            frontier.append((p["peak_mem_gib"], p["rel_l2_error"]))
            best = p["rel_l2_error"]
    fx, fy = zip(*frontier)
    ax.step(fx, fy, where="post", color="black", lw=1, label="Pareto frontier")
    ax.set_xlabel("peak memory (GiB)")
    ax.set_ylabel("relative L2 error")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return Figure(
        "pareto",
        title,
        "One point per arm and grid cell (mean over seeds); the frontier joins the "
        "points no other point beats on both memory and error.",
        _png(fig, cfg.figures.dpi),
    )


def reduction_by_axis(cells: pd.DataFrame, cfg: Any, axis: str, arms: list[str], order: list[str]) -> Figure:
    title = f"Memory reduction vs {label(cfg, cfg.reference_arm)} by {axis}"
    name = f"reduction_by_{axis}"
    if cells.empty or "reduction" not in cells or axis not in cells:
        return Figure(name, title, "", placeholder(title, "no measured memory pairs", cfg.figures.dpi))
    data = cells[(cells["reference_arm"] == cfg.reference_arm)].dropna(subset=["reduction"]).copy()
    if data.empty:
        return Figure(name, title, "", placeholder(title, "no measured memory pairs", cfg.figures.dpi))
    data[axis] = pd.to_numeric(data[axis], errors="coerce")
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    styles, markers = ["-", "--", ":", "-."], ["o", "s", "^", "D"]
    for arm in (a for a in arms if a != cfg.reference_arm):
        sub_arm = data[data["arm"] == arm]
        for mi, model in enumerate(m for m in order if m in set(sub_arm["model"].astype(str))):
            g = sub_arm[sub_arm["model"].astype(str) == model].groupby(axis)["reduction"].mean() * 100
            ax.plot(
                g.index,
                g.values,
                marker=markers[mi % len(markers)],
                ls=styles[mi % len(styles)],
                color=_arm_colour(arms, arm),
                label=f"{label(cfg, arm)}, {model}",
                alpha=0.85,
            )
    ax.set_xscale("log", base=2)
    for spec, style in zip(reduction_thresholds(cfg), ("--", ":")):
        ax.axhline(
            100 * spec.threshold,
            color="#c44e52",
            ls=style,
            lw=1,
            label=f"{spec.id} ({spec.kind}: {spec.text})",
        )
    if axis == "seq_len":
        ax.axvline(cfg.long_seq_len, color="#777", lw=0.8)
    ax.set_xlabel(axis)
    ax.set_ylabel("peak memory reduction (%)")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return Figure(
        name,
        title,
        "Mean over seeds and the other axes; dashed: the criteria's thresholds (conf/criteria). The "
        "protocol asks whether savings vanish at long sequences, where activations dominate; the table "
        "above decides it cell by cell on bounds.",
        _png(fig, cfg.figures.dpi),
    )


def reduction_thresholds(cfg: Any) -> list[Any]:
    """The criteria on the memory reduction vs the reference arm (S1's success bar, F1's failure bar):
    the figure draws the configured thresholds, never a number of its own."""
    return [
        c
        for c in cfg.criteria.entries
        if c.metric in ("peak_mem_reduction", "min_peak_mem_reduction_by_model")
        and (c.reference_arm or cfg.reference_arm) == cfg.reference_arm
    ]


FigureFn = Callable[[Sweep, pd.DataFrame, Any, list[str]], Figure]
RUN_FIGURES: tuple[FigureFn, ...] = (
    loss_curves,
    peak_memory_breakdown,
    tokens_per_s,
    rel_l2,
    pareto,
    memory_over_steps,
    checkpoint_size,
)


def all_figures(
    sweep: Sweep, runs: pd.DataFrame, cells: pd.DataFrame, cfg: Any, arms: list[str], design: str
) -> list[Figure]:
    figs = [fn(sweep, runs, cfg, arms) for fn in RUN_FIGURES]
    if design == "full":
        order = _models(runs)
        figs += [reduction_by_axis(cells, cfg, axis, arms, order) for axis in ("seq_len", "global_batch")]
    return figs

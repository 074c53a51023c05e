"""The run directory's life: data preparation, opening, failure classification, the summary.

Files (ARCHITECTURE.md): ``config.yaml`` (resolved), ``manifest.json`` (provenance, start/end),
``metrics.jsonl`` (appended per step), ``run.log``, ``tokenizer.json`` (random init), ``checkpoint.pt``,
``traceback.txt`` (failed runs), ``wandb/`` and, written last and atomically, ``summary.json``: its
presence with a terminal status means the run is finished.
"""

from __future__ import annotations

import logging
import shutil
import statistics
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from common.atomic import write_json, write_text
from common.config import ConfigError
from common.logs import setup_logging
from common.provenance import now_iso, provenance
from datagen.dataset import dataset_dir, dataset_id, load_split
from experiments import pretrained, rundir
from experiments.eval import accuracy, baselines
from experiments.eval.evaluate import SplitMeta
from experiments.eval.textdata import (
    EncodedSample,
    TextCodec,
    encode_samples,
    prompt_text,
    split_samples,
    target_text,
)
from experiments.run import checkpoint
from experiments.run.trainer import RunState
from experiments.run.wandb_log import WandbLogger
from experiments.rundir import Stop

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    dataset_id: str
    codec: TextCodec
    train: list[EncodedSample]
    val: list[EncodedSample]
    test: list[EncodedSample]
    train_stress: np.ndarray
    val_stress: np.ndarray
    test_stress: np.ndarray
    max_new_tokens: int
    val_available: int
    test_available: int
    prep_s: float = 0.0  # wall time of prepare_data: load, tokenizer, encode (s)
    pretrained: dict[str, Any] | None = None  # the weights' source and sha256 (manifest)
    # The accuracy endpoint (docs/accuracy-endpoint.md): the metric's context from the dataset's
    # baselines.json, each evaluated split's labels/strata, and the baselines on the same samples.
    metric_ctx: accuracy.MetricContext | None = None
    split_meta: dict[str, SplitMeta] | None = None
    baselines: dict[str, Any] | None = None  # baselines.for_summary(...) plus its "path"
    number_format: str = "sci"  # train.text.number_format: how targets are written and parsed
    # train.text.significant_digits: the digits targets are written with; a generated value the
    # format cannot write with them is a parse failure (textdata.fields_writable)
    significant_digits: int | None = None


def prepare_data(cfg: Any, run_dir: Path) -> PreparedData:
    """Load the splits through the manifest, build/load the tokenizer, encode. ConfigError if a
    sample cannot fit ``train.max_seq_len`` (raised before any directory is created)."""
    prep_start = time.perf_counter()
    d = dataset_dir(cfg.data, cfg.results_root)
    t = cfg.train
    sig, zero, fmt = t.text.significant_digits, t.text.zero_below_kpa, t.text.number_format
    splits = {s: load_split(d, s) for s in ("train", "val", "test")}
    names = list(splits["train"]["param_names"])
    samples = {s: split_samples(v) for s, v in splits.items()}
    weights = pretrained.resolve(cfg.model)  # fetched/converted now: a problem exits 2 before any work
    if weights is not None:
        codec = TextCodec.from_pretrained(str(weights.hf_dir))
    elif cfg.resume and (run_dir / "tokenizer.json").is_file():
        codec = TextCodec.load(run_dir / "tokenizer.json")
    else:
        texts = [
            prompt_text(s, names, sig) + target_text(s["stress"], sig, zero, fmt) for s in samples["train"]
        ]
        codec = TextCodec.train_bpe(texts, t.text.tokenizer_vocab_size)
    n_val = min(t.eval.val_samples, len(samples["val"]))
    n_test = min(t.eval.test_samples, len(samples["test"]))
    train = encode_samples(codec, samples["train"], names, sig, zero, fmt)
    longest = max(len(e.prompt_ids) + len(e.target_ids) for e in train)
    if longest > t.max_seq_len:
        raise ConfigError(
            "train.max_seq_len",
            t.max_seq_len,
            f">= {longest} (the longest training sample in tokens), or fewer train.text.significant_digits",
        )
    max_new = t.eval.max_new_tokens or max(len(e.target_ids) for e in train) + 8
    counts = {"val": n_val, "test": n_test}
    endpoint = run_baselines(cfg.baselines, d, {k: n for k, n in counts.items() if n > 0})
    ctx = accuracy.MetricContext.from_json(endpoint["metric_context"])
    meta = {
        k: SplitMeta(
            labels=accuracy.group_labels(_head(splits[k], n), ctx.scale_group),
            strata={f: np.asarray(splits[k][f][:n]) for f in cfg.baselines.strata},
        )
        for k, n in counts.items()
        if n > 0
    }
    return PreparedData(
        dataset_id=dataset_id(cfg.data),
        codec=codec,
        train=train,
        val=encode_samples(codec, samples["val"][:n_val], names, sig, zero, fmt),
        test=encode_samples(codec, samples["test"][:n_test], names, sig, zero, fmt),
        train_stress=np.asarray(splits["train"]["stress"], dtype=np.float64),
        val_stress=np.asarray(splits["val"]["stress"][:n_val], dtype=np.float64),
        test_stress=np.asarray(splits["test"]["stress"][:n_test], dtype=np.float64),
        max_new_tokens=max_new,
        val_available=len(samples["val"]),
        test_available=len(samples["test"]),
        prep_s=time.perf_counter() - prep_start,
        pretrained=weights.provenance() if weights is not None else None,
        metric_ctx=ctx,
        split_meta=meta,
        baselines=endpoint["summary"],
        number_format=fmt,
        significant_digits=int(sig),
    )


def _head(split: dict[str, Any], n: int) -> dict[str, Any]:
    return {f: split[f][:n] for f in (*accuracy.GROUP_FIELDS, "sample_id")}


def run_baselines(b: Any, d: Path, counts: dict[str, int]) -> dict[str, Any]:
    """The dataset's baselines scored on exactly the samples this run evaluates (the first
    ``counts[split]`` of each split), from ``baselines.json`` (computed once per dataset and these
    settings, cached: :func:`experiments.eval.baselines.load_or_compute`)."""
    node = OmegaConf.create(OmegaConf.to_container(b, resolve=True))
    node.splits = list(counts)
    node.max_samples = dict(counts)
    result, cached = baselines.load_or_compute(d, node)
    log.info(
        "baselines %s (%s): best non-learned %s",
        baselines.baselines_path(d, node),
        "cached" if cached else "computed",
        {k: v[result["primary"]] for k, v in result["trivial"].items()},
    )
    summary = baselines.for_summary(result)
    summary["path"] = str(baselines.baselines_path(d, node))
    return {"metric_context": result["metric_context"], "summary": summary}


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    # CPU allocator failures are plain RuntimeErrors ("DefaultCPUAllocator: can't allocate memory").
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


class RunSession:
    def __init__(self, cfg: Any, run_dir: Path, run_id: str) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.run_id = run_id
        self.wandb: Any = None
        self.manifest: dict[str, Any] = {}
        self.status: str | None = None
        self.status_reason: str | None = None
        self.traceback_file: str | None = None
        self.resumable = True  # False for an ending that is a result (a gate's abort), even with a checkpoint

    def open(self, data: PreparedData) -> None:
        rd = self.run_dir
        resuming = self.cfg.resume and (rd / checkpoint.CHECKPOINT_NAME).is_file()
        if rd.exists() and not resuming:  # an unfinished or failed earlier attempt: start over
            for child in rd.iterdir():
                if child.name == rundir.LOCK:  # held by this process (experiments.run.main)
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        rd.mkdir(parents=True, exist_ok=True)
        (rd / rundir.SUMMARY).unlink(missing_ok=True)  # live again: must not look finished
        setup_logging(rd / "run.log")
        write_text(rd / "config.yaml", OmegaConf.to_yaml(self.cfg, resolve=True))
        if not data.codec.hf:
            data.codec.save(rd)
        self.manifest = {
            "run_id": self.run_id,
            "sweep_id": self.cfg.sweep_id,
            "dataset_id": data.dataset_id,
            "seed": self.cfg.seed,
            "start_time": now_iso(),
            "end_time": None,
            "resumed": bool(resuming),
            "pretrained": data.pretrained,
            **provenance(),
        }
        write_json(rd / "manifest.json", self.manifest)
        log.info("run %s -> %s%s", self.run_id, rd, " (resuming)" if resuming else "")
        try:
            self.wandb = WandbLogger(
                self.cfg, rd, self.run_id, OmegaConf.to_container(self.cfg, resolve=True)
            )
        except Exception as exc:  # W&B is a mirror; metrics.jsonl is the record. Say so, go on.
            log.error("W&B init failed (%s): logging to metrics.jsonl only", exc)
            self.manifest["wandb_error"] = str(exc)[:500]
            self.wandb = NoWandb()

    def record(self, exc: BaseException) -> None:
        """Classify how the run ended. Called from the wrapper's except clause."""
        if isinstance(exc, Stop):
            self.status, self.status_reason, self.resumable = exc.status, exc.reason, exc.resumable
        elif is_oom(exc):
            self.status, self.status_reason = "oom", f"out of memory: {str(exc).splitlines()[0][:300]}"
        elif isinstance(exc, KeyboardInterrupt):
            self.status, self.status_reason = (
                "aborted",
                "interrupted twice (KeyboardInterrupt): no checkpoint",
            )
        else:
            self.status, self.status_reason = "failed", f"{type(exc).__name__}: {str(exc)[:300]}"
            self.traceback_file = "traceback.txt"
            write_text(
                self.run_dir / self.traceback_file,
                "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
            )
        log.log(
            logging.INFO if self.status == "aborted" else logging.ERROR,
            "run ended %s: %s",
            self.status,
            self.status_reason,
        )

    def close(self, trainer: Any, data: PreparedData) -> bool:
        """Write the summary last (atomically) and close W&B; False if the summary could not be written."""
        summary: dict[str, Any] = {}
        try:
            summary = build_summary(self, trainer, data)
            if self.status == "completed" and trainer.state.gates is not None:
                trainer.state.gates.at_end(summary)
                summary["gates"] = trainer.state.gates.decisions()
        except Exception as exc:  # the summary must still be written, with what is known
            log.exception("summary incomplete")
            summary.setdefault("status", self.status or "failed")
            summary["summary_error"] = repr(exc)[:500]
        try:
            if self.wandb is not None:
                self.wandb.summary(summary)
                self.wandb.finish(exit_code=0 if self.status == "completed" else 1)
        except Exception as exc:
            log.error("W&B finish failed: %s", exc)
        try:
            self.manifest["end_time"] = now_iso()
            write_json(self.run_dir / "manifest.json", self.manifest)
            rundir.write_summary(self.run_dir, summary)
        except Exception:
            log.exception("summary.json could not be written")
            return False
        log.info("phase times (s): %s", summary.get("phase_times_s"))
        log.info(
            "summary: status=%s final_loss=%s rel_l2_error=%s",
            summary.get("status"),
            summary.get("final_loss"),
            summary.get("rel_l2_error"),
        )
        return True


class NoTrainer:
    """Stands in for a trainer that could not even be constructed (the summary is still written)."""

    def __init__(self) -> None:
        self.state = RunState()

    def median_step_time(self) -> None:
        return None


class NoWandb:
    def log(self, row: dict[str, Any]) -> None: ...
    def summary(self, summary: dict[str, Any]) -> None: ...
    def finish(self, exit_code: int = 0) -> None: ...


def phase_times(st: Any, data: PreparedData) -> dict[str, float | None]:
    """Wall time of each phase of the run (s); null for a phase that did not run (or ran in an
    earlier, resumed-from process: training then counts this process's steps only)."""
    val, test = st.eval.get("val") or {}, st.eval.get("test") or {}
    return {
        "data_prep": data.prep_s,
        "model_build": getattr(st, "setup_s", None),
        "training": st.train_s if st.train_s > 0 else None,
        "validation_generation": val.get("wall_s"),
        "test_generation": test.get("wall_s"),
    }


ACCURACY_KEYS = (
    "rel_l2_error",
    "rel_l2_metric",
    *(f"rel_l2_{m}" for m in accuracy.METRICS),
    "parse_failures",
    "parse_failure_rate",
    "parse_failure_term",
    "parse_failure_share",
    "eval_samples",
    "target_nll",
    "target_nll_sample_mean",
    "target_nll_tokens",
)


def accuracy_fields(
    test: dict[str, Any], val: dict[str, Any], endpoint: dict[str, Any] | None
) -> dict[str, Any]:
    """The summary's accuracy endpoint: every key of :data:`ACCURACY_KEYS` for test (bare) and val
    (``val_`` prefix), the best non-learned baseline on the same samples under the primary
    definition (``best_baseline_rel_l2_error``, ``best_baseline_name``, and ``val_`` ones; the
    report's trivial line, ``trivial_rel_l2_error``, is the same number), the arm's strata
    (``accuracy_strata``) and the baselines' (``baselines``)."""
    out: dict[str, Any] = {}
    for prefix, split in (("", test), ("val_", val)):
        out.update({f"{prefix}{k}": split.get(k) for k in ACCURACY_KEYS})
    splits = (endpoint or {}).get("splits", {})
    for prefix, name in (("", "test"), ("val_", "val")):
        best = (splits.get(name) or {}).get("best_non_learned") or {}
        out[f"{prefix}best_baseline_rel_l2_error"] = best.get("value")
        out[f"{prefix}best_baseline_name"] = best.get("baseline")
    out["trivial_rel_l2_error"] = (
        out["best_baseline_rel_l2_error"] if endpoint else test.get("trivial_rel_l2_error")
    )
    out["accuracy_strata"] = {k: v["strata"] for k, v in (("test", test), ("val", val)) if v.get("strata")}
    out["baselines"] = endpoint
    return out


def build_summary(session: RunSession, trainer: Any, data: PreparedData) -> dict[str, Any]:
    cfg, st = session.cfg, trainer.state
    t = cfg.train
    peak_alloc, peak_reserved, peak_nvml = st.peaks
    median_step = trainer.median_step_time()
    tps = st.tokens_per_step / median_step if median_step else None
    mfu = tps * st.flops_per_token / st.peak_flops if tps and st.flops_per_token and st.peak_flops else None
    val, test = st.eval.get("val") or {}, st.eval.get("test") or {}
    audit = st.audit
    measurable = st.mem_measurable
    breakdown = st.mem_breakdown or dict.fromkeys(
        ("params_bytes", "grads_bytes", "optimizer_state_bytes", "activations_bytes", "other_bytes")
    )
    if not measurable:
        breakdown = dict.fromkeys(breakdown)
    return {
        "run_id": session.run_id,
        "sweep_id": cfg.sweep_id,
        "optimizer": cfg.optimizer.name,
        "model": cfg.model.name,
        "n_params": st.n_params,
        "seed": cfg.seed,
        "scale": cfg.scale,
        "device": st.device_label or st.device,
        "status": session.status or "failed",
        "status_reason": session.status_reason,
        "resumable": (session.run_dir / checkpoint.CHECKPOINT_NAME).is_file()
        and session.status == "aborted"
        and session.resumable,
        "gates": st.gates.decisions() if st.gates is not None else [],
        "grid": {
            "model": cfg.model.name,
            "seq_len": t.max_seq_len,
            "global_batch": t.micro_batch_size * t.grad_accum_steps,
            "behaviour": ",".join(cfg.data.behaviours),
        },
        "dataset_id": data.dataset_id,
        "model_init": st.model_init,
        "compute_dtype": st.compute_dtype,
        "compute_path": st.compute_path,
        "mem_measurable": measurable,
        "cuda_memory_cap_gib": cfg.harness.cuda_memory_cap_gib if measurable else None,
        "peak_mem_allocated_bytes": peak_alloc if measurable else None,
        "peak_mem_reserved_bytes": peak_reserved if measurable else None,
        "peak_mem_nvml_process_bytes": peak_nvml if measurable else None,
        # the peaks above end with training; this one also covers evaluation (generation's KV cache)
        "peak_mem_allocated_with_eval_bytes": getattr(st, "eval_peak_alloc", None) if measurable else None,
        "mem_breakdown": breakdown,
        # Counted from the state tensors themselves (device-independent, so also given on CPU).
        "optimizer_state_bytes_per_param": audit.bytes_per_param if audit else None,
        "optimizer_state_bytes": audit.state_bytes if audit else None,
        "param_bytes_per_param": st.param_bytes_per_param,
        "grad_bytes_per_param": st.grad_bytes_per_param,
        "optimizer_state_dtypes": audit.dtypes if audit else [],
        "state_materialised": audit.materialised if audit else False,
        "state_problem": audit.problem if audit else "no optimizer step was taken",
        "tokens_per_s": tps,
        "median_step_time_s": median_step,
        # tokens per second of process CPU time (median after timing warm-up): gate E's load-independent clock
        "tokens_per_cpu_s": (
            st.tokens_per_step / statistics.median(st.cpu_step_times.values()) if st.cpu_step_times else None
        ),
        "mfu": mfu,
        "tokens_per_step": st.tokens_per_step,
        "harness_time_fraction": st.harness_s / st.train_s if st.train_s > 0 else None,
        "phase_times_s": phase_times(st, data),
        "train_wall_s": st.train_s,
        "initial_loss": st.initial_loss,
        "final_loss": st.final_loss,
        "steps_completed": st.step,
        "max_steps": t.max_steps,
        **accuracy_fields(test, val, data.baselines),
        "eval_samples_requested": {"val": t.eval.val_samples, "test": t.eval.test_samples},
        "eval_samples_available": {"val": data.val_available, "test": data.test_available},
        "example_output": test.get("example_output"),
        "checkpoint_bytes": st.checkpoint_bytes,
        "traceback_file": session.traceback_file,
        "tokenizer": "pretrained" if data.codec.hf else "bpe:tokenizer.json",
        "tokenizer_vocab_size": data.codec.vocab_size,
    }


__all__ = ["NoTrainer", "NoWandb", "PreparedData", "RunSession", "is_oom", "prepare_data"]

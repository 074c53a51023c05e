"""The training loop and its evaluation: one arm, one model, one seed.

Every way a run can end is a :class:`Stop` (completed, diverged, aborted by a gate, a signal or an
operator stop) or an exception the wrapper in :mod:`experiments.run` classifies (OOM, failure).
:attr:`Trainer.state` always holds what is known so far, so the summary written on failure is as
complete as the run got.

Host-device syncs: the losses of ``harness.sync_every_steps`` steps are read back in one
``tolist()`` (the only sync in the loop); step time is the wall time of that interval divided by its
steps. The memory breakdown step (``harness.measure_step``) syncs a few times more, once per run.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import math
import signal
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from common.atomic import append_jsonl, read_jsonl, write_bytes, write_text
from common.provenance import device_label
from experiments import identity
from experiments.eval import evaluate
from experiments.eval.textdata import PackedStream
from experiments.gates import InRunGates
from experiments.run import arms as optim_arms
from experiments.run import checkpoint, memory, models
from experiments.run.dist import DistContext
from experiments.rundir import Stop

log = logging.getLogger(__name__)


class StopFlag:
    """SIGINT/SIGTERM set a flag the loop checks between steps (a second SIGINT interrupts at once)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: signals stay as they were
                self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        log.warning("%s received: stopping after this step (checkpoint, status aborted)", self.signal_name)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


@dataclass
class RunState:
    status: str | None = None
    status_reason: str | None = None
    step: int = 0
    micro_batches: int = 0
    n_params: int | None = None
    model_init: str | None = None
    compute_dtype: str | None = None  # the dtype forward/backward matmuls compute in (arms.Compute)
    compute_path: str | None = None  # autocast | param_dtype | fp32_upcast
    device: str | None = None
    device_label: str | None = None
    param_bytes_per_param: float | None = None  # from the parameter tensors (device-independent)
    grad_bytes_per_param: float | None = None  # gradient dtype size; 0 with gradient release
    initial_loss: float | None = None
    final_loss: float | None = None
    step_times: dict[int, float] = field(default_factory=dict)  # step -> s (interval mean)
    cpu_step_times: dict[int, float] = field(default_factory=dict)  # step -> process CPU s (interval mean)
    tokens_per_step: int = 0
    flops_per_token: float | None = None
    peak_flops: float | None = None
    audit: optim_arms.StateAudit | None = None
    mem_breakdown: dict[str, int | None] | None = None
    checkpoint_bytes: int | None = None
    eval: dict[str, Any] = field(default_factory=dict)
    gates: Any = None
    mem_measurable: bool = False
    peaks: tuple[int | None, int | None, int | None] = (None, None, None)
    # Peaks when training ended, before evaluation: the run's memory figures. Generation (its KV
    # cache at eval batch size) can exceed the training peak and must not count as the arm's cost.
    training_peaks: tuple[int | None, int | None, int | None] | None = None
    eval_peak_alloc: int | None = None  # allocator peak over the whole run incl. evaluation (bytes)
    harness_s: float = 0.0  # host time spent logging after the loss read-back (s)
    train_s: float = 0.0  # wall time of the training loop (s)
    setup_s: float | None = None  # wall time of model build, arm, optimizer (and resume) set-up (s)


def lr_at(step: int, t: Any) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine from lr to ``min_lr_ratio * lr`` at max_steps."""
    if t.warmup_steps and step <= t.warmup_steps:
        return t.lr * step / t.warmup_steps
    span = max(t.max_steps - t.warmup_steps, 1)
    progress = min((step - t.warmup_steps) / span, 1.0)
    return t.lr * (t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def pick_device(h: Any) -> torch.device:
    if h.device == "cpu" or (h.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


class Trainer:
    def __init__(
        self, cfg: Any, run_dir: Path, data: Any, wandb_logger: Any, stop: StopFlag, dist_ctx: Any = None
    ) -> None:
        self.cfg = cfg
        self.dist = dist_ctx if dist_ctx is not None else DistContext()  # FSDP2 rank, or inactive
        self.run_dir = run_dir
        self.data = data
        self.wandb = wandb_logger
        self.stop = stop
        self.state = RunState()
        self.device = pick_device(cfg.harness)
        self.state.device = str(self.device)
        self.meter = memory.MemoryMeter(self.device)
        self.state.mem_measurable = self.meter.measurable
        self.model: Any = None
        self.train_model: Any = None  # self.model, or its torch.compile wrapper (train.compile)
        self.optimizer: Any = None
        self._release_handle: Any = None
        self._pending: list[tuple[int, torch.Tensor, float]] = []
        self._interval_start = self._interval_cpu = 0.0
        self.metrics_path = run_dir / "metrics.jsonl"
        self._agreed_stop = False  # dist: some rank was asked to stop (from the last exchange)

    # -- set-up ---------------------------------------------------------------------------------
    def _gates(self) -> Any:
        ref = self.cfg.gates.reference_arm
        ref_dir = identity.reference_run_dir(self.cfg, ref) if ref != self.cfg.optimizer.name else None
        return InRunGates(
            self.cfg.gates,
            arm=self.cfg.optimizer.name,
            reference_run_dir=ref_dir,
            total_steps=self.cfg.train.max_steps,
        )

    def setup(self) -> int:
        """Build model, arm and optimizer; restore a checkpoint when resuming. Returns the start step."""
        setup_start = time.perf_counter()
        cfg, t, o = self.cfg, self.cfg.train, self.cfg.optimizer
        cap = cfg.harness.cuda_memory_cap_gib
        if self.device.type == "cpu" and cfg.harness.cpu_threads:
            torch.set_num_threads(cfg.harness.cpu_threads)
        if self.device.type == "cuda" and cap:
            total = torch.cuda.get_device_properties(self.device).total_memory
            torch.cuda.set_per_process_memory_fraction(min(cap * 2**30 / total, 1.0), self.device)
            log.info("CUDA allocator capped at %.1f GiB of %.1f GiB", cap, total / 2**30)
        self.state.gates = self._gates()
        vocab = cfg.model.vocab_size or self.data.codec.vocab_size
        if self.device.type == "cpu" and not cfg.model.pretrained_path:
            self._check_host_memory(models.estimated_n_params(cfg.model, vocab))
        seed = cfg.seed + o.seed_offset  # a replicate arm's own seed stream (init and data order)
        self.model, self.state.model_init = models.build_model(
            cfg.model, vocab, self.device, seed, sharded=self.dist.active
        )
        optim_arms.apply_param_dtype(self.model, o)
        self.compute = optim_arms.compute(o, self.device, t)
        if self.compute.fp32_upcast:
            models.compute_in_fp32(self.model)
        if self.dist.active:
            self.dist.shard(self.model, o, self.compute.autocast, cfg.dist.reduce_dtype)
        self.model.train()
        # The training forward/backward only: decoding in evaluation changes shapes every token.
        # dynamic=False: every micro-batch has the same shape, so one graph, compiled at step 1.
        self.train_model = torch.compile(self.model, dynamic=False) if t.compile else self.model
        self.state.n_params = models.n_params(self.model)
        self.state.device_label = device_label()
        local_numel = sum(getattr(p, "_local_tensor", p).numel() for p in self.model.parameters())
        self.state.param_bytes_per_param = memory.tensor_bytes(self.model.parameters()) / local_numel
        self.state.grad_bytes_per_param = 0.0 if o.gradient_release else self.state.param_bytes_per_param
        arms: Any = self.dist if self.dist.active else optim_arms  # dist: sharded variants, same arms
        self.optimizer = arms.build_optimizer(self.model, o, t, self.device)
        if o.gradient_release:
            self._release_handle = arms.enable_gradient_release(self.model, self.optimizer)
        self.autocast = self.compute.autocast
        self.stream = PackedStream(
            self.data.train,
            max_seq_len=t.max_seq_len,
            micro_batch_size=t.micro_batch_size,
            seed=seed,
            pad_id=self.data.codec.pad_id,
            packed=t.packing,
        )
        self.state.tokens_per_step = t.micro_batch_size * t.max_seq_len * t.grad_accum_steps
        self.state.flops_per_token = models.flops_per_token(self.model, t.max_seq_len)
        self.state.peak_flops = models.peak_flops_per_s(self.device, dict(cfg.harness.peak_tflops))
        if self.state.peak_flops is not None:  # dist: tokens/s is the job's, so is the peak (MFU)
            self.state.peak_flops *= self.dist.world_size
        self.state.compute_dtype, self.state.compute_path = self.compute.dtype, self.compute.path
        log.info(
            "model %s (%s init): %.3fM params on %s; arm %s; computes in %s (%s)",
            cfg.model.name,
            self.state.model_init,
            self.state.n_params / 1e6,
            self.device,
            o.name,
            self.compute.dtype,
            self.compute.path,
        )
        start = 0
        if cfg.resume:
            start = self._resume()
        if start == 0:
            self.meter.reset_all()
        self.state.setup_s = time.perf_counter() - setup_start
        return start

    def _check_host_memory(self, n: int) -> None:
        """On CPU a model too large for RAM would not raise: the kernel's OOM killer would end this
        process (and maybe a neighbour's). Refuse it as a recorded oom instead, before allocating."""
        need = n * (4 + max(self.cfg.optimizer.nominal_bytes_per_param, 16.0))  # fp32 build + training
        available = psutil.virtual_memory().available
        if need > available:
            raise Stop(
                "oom",
                f"out of memory (host): {n / 1e9:.2f}B parameters need about {need / 2**30:.1f} GiB, "
                f"{available / 2**30:.1f} GiB available; not allocated",
            )

    def _resume(self) -> int:
        if self.dist.active:
            ck = checkpoint.load_sharded(
                self.run_dir, model=self.model, optimizer=self.optimizer, dist_ctx=self.dist
            )
        else:
            ck = checkpoint.load(self.run_dir, model=self.model, optimizer=self.optimizer, device=self.device)
        if ck is None:
            return 0
        step = int(ck["step"])
        self.state.step, self.state.micro_batches = step, int(ck["micro_batches"])
        self.state.checkpoint_bytes = ck["checkpoint_bytes"]
        p = ck["progress"]
        self.meter.reset_all()
        self.meter.restore_peaks(*p.get("peaks", (None, None, None)))
        self.state.mem_breakdown = p.get("mem_breakdown")
        self.state.audit = optim_arms.StateAudit(**p["audit"]) if p.get("audit") else None
        # Metrics after the checkpoint are redone: keep rows up to it, replay them into the gates.
        rows = (
            [r for r in read_jsonl(self.metrics_path) if r.get("step", 0) <= step]
            if self.metrics_path.exists()
            else []
        )
        if self.dist.is_main:
            write_text(self.metrics_path, "".join(_jsonl(r) for r in rows))
        for r in rows:
            self._account(r)
            self.state.gates.on_step(r["step"], r)
        log.info("resumed from step %d (micro-batch %d)", step, self.state.micro_batches)
        return step

    # -- the loop -------------------------------------------------------------------------------
    def train(self, start: int) -> None:
        self._interval_start = loop_start = time.perf_counter()
        self._interval_cpu = time.process_time()
        try:
            self._loop(start)
        finally:
            self.state.train_s += time.perf_counter() - loop_start
            log.info(
                "training: %d steps in %.1f s", self.state.step - start, time.perf_counter() - loop_start
            )

    def _loop(self, start: int) -> None:
        t, h = self.cfg.train, self.cfg.harness
        for step in range(start + 1, t.max_steps + 1):
            loss = self._step(step)
            self._pending.append((step, loss, lr_at(step, t)))
            last = step == t.max_steps
            operator_stop = h.stop_after_steps is not None and step >= h.stop_after_steps and not last
            ckpt_due = h.checkpoint_every_steps and step % h.checkpoint_every_steps == 0 and not last
            # dist: the flush cadence must not depend on a rank's own signal (it is a collective)
            local_stop = self.stop.requested and not self.dist.active
            if len(self._pending) >= h.sync_every_steps or last or local_stop or operator_stop or ckpt_due:
                self._flush()
            requested = self._agreed_stop if self.dist.active else self.stop.requested
            if requested or operator_stop:
                why = (
                    f"{self.stop.signal_name or 'a stop signal (on another rank)'} received"
                    if requested
                    else f"harness.stop_after_steps={step}"
                )
                self._checkpoint(step)
                raise Stop(
                    "aborted",
                    f"{why} at step {step}; checkpoint saved, resumable with resume=true",
                    resumable=True,
                )
            if ckpt_due:
                self._checkpoint(step)
        self.state.step = max(self.state.step, start)

    def _step(self, step: int) -> torch.Tensor:
        t, h = self.cfg.train, self.cfg.harness
        for g in self.optimizer.param_groups:
            g["lr"] = lr_at(step, t)
        measure = step == h.measure_step or (
            step == t.max_steps and self.state.mem_breakdown is None and step >= 2
        )
        probe = memory.StepProbe(
            self.meter,
            self.model,
            enabled=measure,
            snapshot=h.memory_snapshot,
            breakdown=not self.dist.active,
            release=self._release_handle is not None,
            state_bytes=lambda: self.state.audit.state_bytes,
            snapshot_path=self.run_dir / "memory_snapshot.html",
        )
        with probe:
            loss_sum = self._forward_backward()
            with probe.optimizer_step():
                if t.grad_clip_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip_norm)
                if self._release_handle is None:
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
            if self.state.audit is None:
                self.state.audit = optim_arms.audit_state(self.optimizer, self.cfg.optimizer)
                self.state.gates.note_state_dtypes(self.state.audit.dtypes)
                if not self.state.audit.materialised:
                    log.warning("optimizer state not as the arm promises: %s", self.state.audit.problem)
        if measure:
            self.state.mem_breakdown = probe.breakdown
        self.state.step = step
        return loss_sum

    def _forward_backward(self) -> torch.Tensor:
        """The step's micro-batches: forward under the arm's autocast, backward; the summed loss."""
        t = self.cfg.train
        ctx = (
            torch.autocast(self.device.type, dtype=self.autocast)
            if self.autocast is not None
            else contextlib.nullcontext()
        )
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float32)
        for _ in range(t.grad_accum_steps):
            ids, labels = self.stream.micro_batch(self.state.micro_batches)
            self.state.micro_batches += 1
            kw, scale = {}, 1
            if self.dist.active:  # this rank's rows; normalised by the whole micro-batch's tokens
                ids, labels, kw["num_items_in_batch"] = self.dist.rank_rows(ids, labels)
                scale = self.dist.world_size  # FSDP2 averages gradients over the ranks
            ids_t = torch.from_numpy(ids).to(self.device, non_blocking=True)
            labels_t = torch.from_numpy(labels).to(self.device, non_blocking=True)
            with ctx:
                loss = self.train_model(input_ids=ids_t, labels=labels_t, **kw).loss / t.grad_accum_steps
            (loss * scale if scale != 1 else loss).backward()
            loss_sum += loss.detach().float()
        return loss_sum

    def _flush(self) -> None:
        if not self._pending:
            return
        if self.dist.active:  # global losses, agreed stop, every rank's memory: one collective
            mem = (*self.meter.current(), *self.meter.peaks())
            stacked = torch.stack([p[1] for p in self._pending])
            losses, self._agreed_stop = self.dist.exchange(stacked, self.stop.requested, mem)
        else:
            losses = torch.stack([p[1] for p in self._pending]).tolist()  # the loop's one device sync
        now = time.perf_counter()
        self._flush_started = now
        step_time = (now - self._interval_start) / len(self._pending)
        self._interval_start = now
        # Process CPU time (all threads): what a step costs whatever else the machine runs (gate E's
        # clock at smoke scale, conf/scale/smoke.yaml); on a GPU it counts only the host's share.
        cpu_now = time.process_time()
        cpu_step_time = (cpu_now - self._interval_cpu) / len(self._pending)
        self._interval_cpu = cpu_now
        alloc, reserved = self.meter.current()
        peak_alloc, peak_reserved = self.meter.peaks()
        if self.dist.active and self.meter.measurable:  # rows carry the per-GPU worst case
            alloc, reserved, peak_alloc, peak_reserved = (max(col) for col in zip(*self.dist.mem_per_rank))
        pending, self._pending = self._pending, []
        rows = [
            {
                "step": step,
                "loss": loss,
                "lr": lr,
                "step_time_s": step_time,
                "tokens_per_s": self.state.tokens_per_step / step_time,
                "cpu_step_time_s": cpu_step_time,
                "tokens_per_cpu_s": self.state.tokens_per_step / cpu_step_time if cpu_step_time > 0 else None,
                "mem_allocated_bytes": alloc,
                "mem_reserved_bytes": reserved,
                "peak_mem_allocated_bytes": peak_alloc,
                "peak_mem_reserved_bytes": peak_reserved,
            }
            for (step, _, lr), loss in zip(pending, losses)
        ]
        # Every computed step is recorded before any verdict on it, so metrics.jsonl always reaches
        # steps_completed even when divergence or a gate ends the run inside this interval.
        for row in rows:
            if self.dist.is_main:
                append_jsonl(self.metrics_path, row)
                self.wandb.log(row)
            self._account(row)
        try:
            verdict = None
            if self.dist.is_main:
                try:
                    self._judge(rows)
                except Stop as stop:
                    verdict = (stop.status, stop.reason)
            verdict = self.dist.broadcast(verdict)  # dist: rank 0 decides, every rank stops together
            if verdict is not None:
                raise Stop(*verdict)
        finally:
            # Host-side cost of logging (rows, W&B, gates): it lands in the next interval's step time.
            self.state.harness_s += time.perf_counter() - self._flush_started

    def _judge(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self._check_divergence(row["step"], row["loss"])
            decision = self.state.gates.on_step(row["step"], row)
            if decision is not None and decision.fired:
                raise Stop("aborted", f"gate {decision.gate}: {decision.reason}")

    def _account(self, row: dict[str, Any]) -> None:
        if row["step"] == 1:
            self.state.initial_loss = row["loss"]
        self.state.final_loss = row["loss"]
        if row["step"] > self.cfg.train.timing_warmup_steps and row.get("step_time_s"):
            self.state.step_times[row["step"]] = row["step_time_s"]
        if row["step"] > self.cfg.train.timing_warmup_steps and row.get("cpu_step_time_s"):
            self.state.cpu_step_times[row["step"]] = row["cpu_step_time_s"]

    def _check_divergence(self, step: int, loss: float | None) -> None:
        d = self.cfg.train.divergence
        if loss is None or not math.isfinite(loss):
            raise Stop("diverged", f"loss is {loss} at step {step}")
        init = self.state.initial_loss
        if init is not None and step > d.after_step and loss > d.factor * init:
            raise Stop(
                "diverged",
                f"loss {loss:.4g} > {d.factor} x initial {init:.4g} at step {step} "
                f"(after step {d.after_step})",
            )

    def _checkpoint(self, step: int) -> None:
        audit = self.state.audit.__dict__ if self.state.audit else None
        progress = {
            # a checkpoint taken during evaluation keeps the training peaks (see RunState)
            "peaks": self.state.training_peaks or (*self.meter.peaks(), self.meter.peak_nvml()),
            "mem_breakdown": self.state.mem_breakdown,
            "audit": audit,
        }
        try:
            save: Any = checkpoint.save
            if self.dist.active:  # every rank writes its shards (DCP); rank 0 the small index
                save = functools.partial(checkpoint.save_sharded, dist_ctx=self.dist)
            self.state.checkpoint_bytes = save(
                self.run_dir,
                model=self.model,
                optimizer=self.optimizer,
                step=step,
                micro_batches=self.state.micro_batches,
                progress=progress,
            )
            log.info("checkpoint at step %d: %.1f MB", step, self.state.checkpoint_bytes / 1e6)
        except OSError as exc:  # disk full: the run goes on; the summary says no checkpoint
            log.error("checkpoint at step %d failed: %s", step, exc)
        self._interval_start = time.perf_counter()  # saving is not step time
        self._interval_cpu = time.process_time()

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self) -> None:
        if self.state.training_peaks is None:  # not on a resumed evaluation: restored from the checkpoint
            self.state.training_peaks = (*self.meter.peaks(), self.meter.sample_nvml())
        t0 = time.perf_counter()
        self._evaluate()
        log.info(
            "evaluation: %d val + %d test samples in %.1f s",
            len(self.data.val),
            len(self.data.test),
            time.perf_counter() - t0,
        )

    def _evaluate(self) -> None:
        d = self.data
        # CPU fp32 compute path: cast the bf16 weights to fp32 once for the whole evaluation, not at
        # every decode step (a no-op for a model without fp32-compute modules, e.g. on a GPU)
        with models.fp32_weights_held(self.model):
            results = evaluate.evaluate_held_out(
                self.model,
                d,
                self.cfg.train.eval,
                device=self.device,
                autocast=self.autocast,
                # dist: every rank must leave generation at the same batch (it is collective under FSDP2)
                should_stop=lambda: self.dist.any(self.stop.requested),
            )
        # gate D is decided on validation alone; a fired D still reports the test set it scored, so
        # the analysis has the number of the endpoint the gate failed (never missing data)
        self._stopped_in_eval(results)
        assert results is not None
        self._write_predictions(results)
        self.state.eval["test"] = results["test"]
        if d.val:
            self.state.eval["val"] = results["val"]
            decision = self.state.gates.after_validation(results["val"]["rel_l2_error"])
            if decision is not None and decision.fired:
                raise Stop("aborted", f"gate {decision.gate}: {decision.reason}; test set scored")

    def _write_predictions(self, results: dict[str, dict[str, Any]]) -> None:
        """Each evaluated split's generated texts and parsed predictions ((N, P, 6) kPa, NaN where a
        text did not parse) to ``predictions.npz``, so that every accuracy number of the summary can be
        recomputed from the run directory (and other metric definitions scored on the same outputs)."""
        arrays: dict[str, np.ndarray] = {}
        for name, r in results.items():
            pred, texts = r.pop("_pred", None), r.pop("_texts", None)
            if pred is not None:
                arrays[f"{name}_pred"] = np.asarray(pred, dtype=np.float64)
            if texts is not None:
                arrays[f"{name}_texts"] = np.array(texts, dtype=np.str_)
        if arrays and self.dist.is_main:
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            write_bytes(self.run_dir / "predictions.npz", buf.getvalue())

    def _stopped_in_eval(self, result: Any) -> None:
        if result is None:
            self._checkpoint(self.state.step)
            raise Stop(
                "aborted",
                f"{self.stop.signal_name} received during evaluation; checkpoint saved, "
                "resume=true re-runs the evaluation",
                resumable=True,
            )

    def finish(self) -> None:
        self.meter.sample_nvml()
        if not self.cfg.harness.keep_checkpoint and self.dist.is_main:
            checkpoint.remove(self.run_dir)

    def release(self) -> None:
        """Free the device after any ending (OOM included) so the summary can be written."""
        with contextlib.suppress(Exception):
            run_peaks = (*self.meter.peaks(), self.meter.sample_nvml())
            self.state.eval_peak_alloc = run_peaks[0]
            self.state.peaks = self.state.training_peaks or run_peaks
        if self._release_handle is not None:
            self._release_handle.remove()
        self.model = self.train_model = self.optimizer = self._release_handle = None
        self._pending = []
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def median_step_time(self) -> float | None:
        times = list(self.state.step_times.values())
        return statistics.median(times) if times else None


def _jsonl(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True) + "\n"


__all__ = ["RunState", "StopFlag", "Trainer", "lr_at"]

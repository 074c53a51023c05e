"""The static-cache greedy decoder against ``model.generate`` on small random Llamas (CPU, fp32)."""

from __future__ import annotations

from typing import Any

import pytest
import run_helpers  # noqa: F401  (puts the repo's packages ahead of tests/ namespace shadows)
import torch

from experiments.eval import decode
from experiments.eval.evaluate import generate


def _llama(n_kv: int, layers: int = 2, seed: int = 0) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=61,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=n_kv,
        tie_word_embeddings=False,
        max_position_embeddings=512,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # larger weights than the default init: peaked, seed-specific logits
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(8.0)
    return model


def _batch(lengths: list[int], pad: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.full((len(lengths), width), pad, dtype=torch.long)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, width - n :] = torch.randint(3, 61, (n,), generator=g)
        mask[i, width - n :] = 1
    return ids, mask


def _hf(model: Any, ids: torch.Tensor, mask: torch.Tensor, n: int, eos: int, pad: int) -> torch.Tensor:
    return model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=n,
        do_sample=False,
        use_cache=True,
        eos_token_id=eos,
        pad_token_id=pad,
    )


@pytest.mark.parametrize("n_kv", [4, 2, 1])  # multi-head, grouped and multi-query attention
def test_static_decoder_emits_the_tokens_of_model_generate(
    n_kv: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _llama(n_kv)
    pad = 0
    ids, mask = _batch([9, 3, 14, 1, 14, 6], pad)
    # an eos that some rows emit mid-way (found from a run without one): exercises eos padding
    free = _hf(model, ids, mask, 24, eos=-1, pad=pad)[:, ids.shape[1] :]
    eos = int(free[0, 5])
    ref = _hf(model, ids, mask, 24, eos=eos, pad=pad)
    assert (ref[:, ids.shape[1] :] == pad).any(), "some row ended on eos and was padded"
    assert len({tuple(r) for r in ref[:, ids.shape[1] :].tolist()}) > 3, "rows decode differently"

    ours = decode.StaticCacheDecoder(model).generate(ids, mask, max_new_tokens=24, eos_id=eos, pad_id=pad)
    assert torch.equal(ours, ref)

    # prompts prefilled a few rows at a time give the same tokens
    monkeypatch.setattr(decode, "PREFILL_TOKENS", 2 * ids.shape[1])
    chunked = decode.StaticCacheDecoder(model).generate(ids, mask, max_new_tokens=24, eos_id=eos, pad_id=pad)
    assert torch.equal(chunked, ref)


@pytest.mark.parametrize("n_kv", [4, 2])
def test_the_graph_capturable_step_emits_the_same_tokens(n_kv: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The step a CUDA graph captures (whole cache buffer masked, slot and mask updated on the
    device), run uncaptured on CPU, against ``model.generate``, eos and ``is_done`` included."""
    model = _llama(n_kv)
    ids, mask = _batch([9, 3, 14, 1, 6], pad=0, seed=11)
    free = _hf(model, ids, mask, 20, eos=-1, pad=0)[:, ids.shape[1] :]
    eos = int(free[1, 4])
    ref = _hf(model, ids, mask, 20, eos=eos, pad=0)
    monkeypatch.setattr(decode, "_graphs_on", lambda dev: True)
    calls: list[int] = []

    def spy(self: Any, *a: Any) -> Any:
        calls.append(1)
        return real(self, *a)

    real = decode.StaticCacheDecoder._graphed_step
    monkeypatch.setattr(decode.StaticCacheDecoder, "_graphed_step", spy)
    ours = decode.StaticCacheDecoder(model).generate(ids, mask, max_new_tokens=20, eos_id=eos, pad_id=0)
    assert calls == [1], "one capture per generate call"
    assert torch.equal(ours, ref)
    off = decode.StaticCacheDecoder(model).generate(
        ids, mask, max_new_tokens=20, eos_id=eos, pad_id=0, cuda_graph=False
    )
    assert calls == [1] and torch.equal(off, ref)


def test_prefill_logits_match_the_model_forward() -> None:
    model = _llama(2)
    ids, mask = _batch([7, 12, 2], pad=0, seed=3)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask).logits[:, -1]
        dec = decode.StaticCacheDecoder(model)
        shape = (3, 2, ids.shape[1] + 1, dec.head_dim)
        caches = [(torch.empty(shape), torch.empty(shape)) for _ in model.model.layers]
        w = ids.shape[1]
        keep = (torch.ones(w, w, dtype=torch.bool).tril() & mask.bool()[:, None, :]) | torch.eye(
            w, dtype=torch.bool
        )
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        ours = dec._forward(ids, pos, caches, slice(0, 3), 0, keep[:, None])
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_rows_marked_done_are_padded_and_decoding_ends_when_all_are() -> None:
    model = _llama(2)
    pad = 0
    ids, mask = _batch([5, 8, 3], pad, seed=7)
    full = decode.StaticCacheDecoder(model).generate(ids, mask, max_new_tokens=30, eos_id=-1, pad_id=pad)
    calls: list[int] = []

    def is_done(new: torch.Tensor) -> torch.Tensor:
        calls.append(new.shape[1])
        return torch.tensor([True, new.shape[1] >= 8, new.shape[1] >= 12])

    out = decode.StaticCacheDecoder(model).generate(
        ids, mask, max_new_tokens=30, eos_id=-1, pad_id=pad, is_done=is_done, every=4
    )
    w = ids.shape[1]
    assert calls == [4, 8, 12], "checked every 4 tokens, stopped once every row was done"
    assert out.shape[1] == w + 12
    assert torch.equal(out[0, w : w + 4], full[0, w : w + 4]) and (out[0, w + 4 :] == pad).all()
    assert torch.equal(out[1, w : w + 8], full[1, w : w + 8]) and (out[1, w + 8 :] == pad).all()
    assert torch.equal(out[2], full[2, : w + 12])


def test_unsupported_models_fall_back_or_fail_clearly() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=61, n_embd=32, n_layer=1, n_head=2, n_positions=64)).eval()
    why = decode.supported(gpt2)
    assert why is not None and "gpt2" in why
    assert decode.supported(_llama(2)) is None

    class Codec:
        tok = None
        eos_id, pad_id = 1, 0

        def decode(self, row: list[int]) -> str:
            return " ".join(map(str, row))

    kw: dict[str, Any] = {
        "max_new_tokens": 5,
        "batch_size": 2,
        "device": torch.device("cpu"),
        "autocast": None,
    }
    prompts = [[5, 6, 7], [8, 9]]
    with pytest.raises(ValueError, match="decoder=static cannot decode this model: model_type 'gpt2'"):
        generate(gpt2, Codec(), prompts, decoder="static", **kw)
    auto = generate(gpt2, Codec(), prompts, decoder="auto", **kw)  # model.generate
    assert auto == generate(gpt2, Codec(), prompts, decoder="hf", **kw)
    assert auto is not None and all(len(t.split()) == 5 for t in auto)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cuda_graph", [True, False])
@pytest.mark.parametrize("setting", ["fp32", "fp32-autocast-bf16", "bf16"])
def test_on_cuda_the_static_decoder_follows_model_generate(setting: str, cuda_graph: bool) -> None:
    """fp32: the same tokens. bf16 (autocast, as AdamW runs; or a bf16 model, as FlashOptim runs):
    both decoders round differently (attention kernels and masks differ), so greedy paths may part
    after a near-tie; the first new token (from the prompt pass) must agree on nearly every row and
    whole rows on most."""
    import contextlib

    dev = torch.device("cuda")
    model = _llama(2, layers=3).to(dev)
    if setting == "bf16":
        model = model.to(torch.bfloat16)
    ids, mask = _batch([40, 7, 33, 12, 64, 5, 50, 21] * 4, pad=0, seed=5)
    ids, mask = ids.to(dev), mask.to(dev)
    ctx = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if setting == "fp32-autocast-bf16"
        else contextlib.nullcontext()
    )
    with ctx:
        ref = _hf(model, ids, mask, 32, eos=-1, pad=0)
        ours = decode.StaticCacheDecoder(model).generate(
            ids, mask, max_new_tokens=32, eos_id=-1, pad_id=0, cuda_graph=cuda_graph
        )
    assert ours.shape == ref.shape
    w = ids.shape[1]
    if setting == "fp32":
        assert torch.equal(ours, ref)
        return
    first = (ours[:, w] == ref[:, w]).float().mean().item()
    rows = (ours[:, w:] == ref[:, w:]).all(dim=1).float().mean().item()
    assert first >= 0.95 and rows >= 0.75, (first, rows)

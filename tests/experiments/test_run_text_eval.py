"""Text format, tokenizer, packing and the accuracy metric, on small hand-made inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import run_helpers  # noqa: F401  (puts the repo's packages ahead of tests/ namespace shadows)
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.eval.evaluate import (
    evaluate_split,
    evaluate_splits,
    generate,
    parse_decided,
    rel_l2_error,
    trivial_rel_l2_error,
)
from experiments.eval.textdata import (
    IGNORE_INDEX,
    EncodedSample,
    PackedStream,
    TextCodec,
    format_number,
    parse_stress,
    target_text,
)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_number_format_round_trips_to_its_significant_digits(x: float) -> None:
    s = format_number(x, 3)
    assert "+" not in s and " " not in s and len(s) <= 10
    assert float(s) == pytest.approx(x, rel=5e-3, abs=1e-300)


def test_parse_inverts_target_text_and_rejects_short_or_garbled_output() -> None:
    stress = np.array([[1.0, -2.5, 3.25e-3, 0.0, 12345.0, -0.5], [7.0, 8.0, 9.0, 10.0, 11.0, 12.0]])
    back = parse_stress(target_text(stress, 4), 2)
    assert back is not None and np.allclose(back, stress, rtol=1e-3)
    assert parse_stress(target_text(stress, 4) + " 1.0e0 9.9e9", 2) is not None  # extra values ignored
    assert parse_stress(target_text(stress[:1], 4), 2) is None  # short
    assert parse_stress(target_text(stress, 4).replace("e", "x", 1), 2) is None  # garbled
    assert parse_stress(" nan" * 12, 2) is None  # not finite


def test_rel_l2_error_is_sum_of_norms_over_sum_of_norms() -> None:
    true = np.zeros((2, 1, 6))
    true[0, 0, 0], true[1, 0, :2] = 3.0, (4.0, 0.0)
    pred = true.copy()
    pred[0, 0, 0] = 0.0  # error norm 3 on a sample of norm 3
    # sum ||e|| / sum ||t|| = (3 + 0) / (3 + 4)
    assert rel_l2_error(pred, true) == pytest.approx(3 / 7)
    assert rel_l2_error(np.zeros_like(true), true) == pytest.approx(1.0)  # the parse-failure rule
    # trivial predictor: the mean field of a training set equal to `true` is (3.5, 0, ...),
    # 0.5 away from each sample: (0.5 + 0.5) / 7
    assert trivial_rel_l2_error(true, true) == pytest.approx(1 / 7)


def test_bpe_keeps_digits_single_and_decodes_exactly() -> None:
    texts = ["BC: liver | mu=1.87e0 -> STRESS: 1.23e0 -4.56e-1 7.89e2"] * 20
    codec = TextCodec.train_bpe(texts, 300)
    ids = codec.encode(" 1234.5e-67", first=False)
    pieces = [codec.decode([i]) for i in ids]
    assert all(not (len(p.strip()) > 1 and any(c.isdigit() for c in p)) for p in pieces), pieces
    assert codec.decode(codec.encode(texts[0], first=True)) == texts[0]


def test_packing_is_deterministic_full_length_and_masks_prompts() -> None:
    samples = [EncodedSample([1] * (3 + i % 4), [10 + i, 2]) for i in range(30)]
    a = PackedStream(samples, max_seq_len=16, micro_batch_size=2, seed=0, pad_id=0)
    b = PackedStream(samples, max_seq_len=16, micro_batch_size=2, seed=0, pad_id=0)
    for k in (0, 1, 7, 40, 3):  # random access, across epoch boundaries, and back
        ia, la = a.micro_batch(k)
        ib, lb = b.micro_batch(k)
        assert ia.shape == (2, 16) and np.array_equal(ia, ib) and np.array_equal(la, lb)
        target = la != IGNORE_INDEX
        assert np.all(ia[target] == la[target])  # labels are the tokens themselves
        assert not np.any(np.isin(la[target], [1, 0]))  # never a prompt (1) or pad (0) token
    fresh = PackedStream(samples, max_seq_len=16, micro_batch_size=2, seed=0, pad_id=0)
    fresh.micro_batch(40)
    assert fresh.epochs_started() >= 2  # k=40 lies beyond the first epoch
    c = PackedStream(samples, max_seq_len=16, micro_batch_size=2, seed=1, pad_id=0)
    assert not np.array_equal(c.micro_batch(0)[0], a.micro_batch(0)[0])


# --------------------------------------------------------------------- generation stops when decided
_FIELD_PIECES = [
    "1",
    "2.5",
    "-3e-1",
    ".5",
    "1_0",
    "e-1",
    "x",
    "nan",
    "1e999",
    "<eos>",
    "<e",
    "os>",
    "\ufffd",
    "9.",
]


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from([*_FIELD_PIECES, " ", "  "]), max_size=24),
    st.lists(st.sampled_from([*_FIELD_PIECES, " "]), max_size=24),
)
def test_a_decided_parse_is_the_same_whatever_follows(prefix: list[str], more: list[str]) -> None:
    text, tail = "".join(prefix), "".join(more)
    if parse_decided(text, 1):  # P = 1: the first 6 fields
        a, b = parse_stress(text, 1), parse_stress(text + tail, 1)
        assert (a is None) == (b is None) and (a is None or np.array_equal(a, b)), (text, tail)


def test_rows_are_decided_by_complete_fields_or_a_field_that_cannot_be_a_number() -> None:
    assert parse_decided(" 1.0e0" * 6 + " ", 1)  # six closed numbers: the parse is fixed
    assert not parse_decided(" 1.0e0" * 6, 1)  # the sixth may still grow ("1.0e05")
    assert parse_decided("e-1.e-1.e-1", 1)  # an exponent without a mantissa: never a number
    assert parse_decided(" 1.0 x 2.0", 1) and parse_decided(" 1.0 nan ", 1)  # a closed non-finite field
    assert not parse_decided(" 1.0 2.5e", 1) and not parse_decided(" 1.0<eo", 1)
    assert not parse_decided("", 1) and not parse_decided("1.\ufffd", 1)


def _bigram_llama(codec: TextCodec, chains: dict[int, list[int]], default: list[int]) -> Any:
    """A 1-layer Llama whose greedy next token is a fixed function of the current token: attention
    and MLP outputs are zeroed, so the last hidden state is RMSNorm(one-hot(token)) and the LM head
    maps it to the chosen successor. ``chains[t]`` is the cycle generated after a prompt ending in t."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    v = codec.vocab_size
    h = v + v % 2  # rotary embeddings need an even head size
    cfg = LlamaConfig(
        vocab_size=v,
        hidden_size=h,
        intermediate_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        num_key_value_heads=1,
        tie_word_embeddings=False,
        max_position_embeddings=4096,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    nxt = {}
    for start, cycle in [*chains.items(), (None, default)]:
        if start is not None:
            nxt[start] = cycle[0]
        for a, b in zip(cycle, cycle[1:] + cycle[:1]):
            nxt.setdefault(a, b)
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(v, h))
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        head = torch.zeros(v, h)
        for a in range(v):
            head[nxt.get(a, default[0]), a] = 1.0
        model.lm_head.weight.copy_(head)
    return model


@pytest.mark.parametrize("decoder", ["static", "hf"])
def test_stopping_decided_rows_keeps_the_metrics_bit_identical(
    monkeypatch: pytest.MonkeyPatch, decoder: str
) -> None:
    import torch

    from experiments.eval import evaluate

    monkeypatch.setattr(evaluate, "DECIDE_EVERY_TOKENS", 4)  # short outputs: check often
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: extra OpenMP threads only spin on a shared 2-core box
    try:
        _check_stopping_keeps_metrics(torch, decoder)
    finally:
        torch.set_num_threads(threads)


def _check_stopping_keeps_metrics(torch: Any, decoder: str) -> None:

    texts = ["BC: a -> STRESS: 1.5e0 -2.0e-1 x y z <eos>", "BC: b -> STRESS: 3.0e1 7.0e0"] * 10
    codec = TextCodec.train_bpe(texts, 96)
    enc = lambda s: codec.encode(s, first=False)  # noqa: E731
    numbers, garbage = enc(" 1e0"), enc("x")
    later_garbage = enc(" -2e-1 -2e-1 y")
    short = [*enc(" 1e0 1e0"), codec.eos_id]  # eos after two numbers: a short output
    a, b, z, w = (enc(t)[-1] for t in "abzw")
    model = _bigram_llama(codec, {a: numbers, b: garbage, z: later_garbage, w: short}, numbers)
    # Prompts ending in a (numbers: parses), b (garbage at once), z (fails at its third field),
    # w (eos too early) and c (the default chain), in one batch and across batches.
    prompts = [enc(f"BC: {t} q {'r ' * (i % 3)}{t}") for i, t in enumerate("abzwcab")]
    rng = np.random.default_rng(0)
    true = rng.normal(size=(len(prompts), 1, 6))
    train = rng.normal(size=(50, 1, 6))
    samples = [EncodedSample(p, []) for p in prompts]
    kw = {
        "max_new_tokens": 36,
        "batch_size": 4,
        "device": torch.device("cpu"),
        "autocast": None,
        "decoder": decoder,
    }
    full = evaluate_split(model, codec, samples, true, train, stop_when_decided=False, **kw)
    fast = evaluate_split(model, codec, samples, true, train, **kw)
    assert full is not None and fast is not None
    for key in ("rel_l2_error", "parse_failure_rate", "trivial_rel_l2_error", "eval_samples"):
        assert fast[key] == full[key], key  # bit-identical, not approx
    assert 0 < full["parse_failure_rate"] < 1, "both outcomes are exercised"
    # validation and test pooled into one generation score each split as evaluating it alone
    pooled = evaluate_splits(
        model, codec, {"v": (samples[:3], true[:3]), "t": (samples[3:], true[3:])}, train, **kw
    )
    assert pooled is not None
    for name, part in (("v", slice(0, 3)), ("t", slice(3, None))):
        alone = evaluate_split(model, codec, samples[part], true[part], train, **kw)
        assert alone is not None
        for key in ("rel_l2_error", "parse_failure_rate", "trivial_rel_l2_error", "eval_samples"):
            assert pooled[name][key] == alone[key], (name, key)
    texts_full = generate(model, codec, prompts, n_probes=None, **kw)
    texts_fast = generate(model, codec, prompts, n_probes=1, **kw)
    assert texts_full is not None and texts_fast is not None
    for f, s in zip(texts_full, texts_fast):
        if f.count(" ") == 2:  # the eos row: generate itself stopped it, as before
            assert s == f
            continue
        assert f.startswith(s) and len(s) < len(f), "rows stop early, on a prefix of the full output"
        assert (parse_stress(f, 1) is None) == (parse_stress(s, 1) is None)

"""Text format, tokenizer, packing and the accuracy metric, on small hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest
import run_helpers  # noqa: F401  (puts the repo's packages ahead of tests/ namespace shadows)
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.evaluate import rel_l2_error, trivial_rel_l2_error
from experiments.textdata import (
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

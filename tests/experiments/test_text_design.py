"""Issue 14's text design knobs: the shared-exponent target format, unpacked rows (attention masked at
sample boundaries), and that neither changes the run id of a run that does not set it."""

from __future__ import annotations

import numpy as np
import pytest
import run_helpers  # noqa: F401  (puts the repo's packages ahead of tests/ namespace shadows)
from hypothesis import given, settings
from hypothesis import strategies as st

from common.config import ConfigError, compose
from experiments import identity
from experiments.config import register, validate
from experiments.eval.evaluate import parse_decided
from experiments.eval.textdata import (
    IGNORE_INDEX,
    EncodedSample,
    PackedStream,
    fields_needed,
    parse_stress,
    target_text,
)


def test_shared_exp_known_answers() -> None:
    # largest |value| 0.742 -> exponent -1, minus (3 - 1) digits -> unit 1e-3: -742; 3.1e-5 rounds to 0
    s = np.zeros((1, 6))
    s[0, :3] = [-0.742, 0.0153, 3.1e-5]
    assert target_text(s, 3, 1e-6, "shared_exp") == " 1e-3 -742 15 0 0 0 0"
    # 9.996 at 3 digits would round to 1000 units of 1e-2 (four digits): one unit up, 100 x 1e-1
    s = np.full((1, 6), 9.996)
    assert target_text(s, 3, 1e-6, "shared_exp") == " 1e-1" + " 100" * 6
    # all zeros: a scale is still written, every value 0
    assert target_text(np.zeros((1, 6)), 3, 1e-6, "shared_exp") == " 1e-2" + " 0" * 6
    # kPa in the thousands
    s = np.full((1, 6), -1234.5)
    assert target_text(s, 3, 1e-6, "shared_exp") == " 1e1" + " -123" * 6


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=-1e4, max_value=1e4, allow_nan=False), min_size=12, max_size=12),
    st.integers(min_value=1, max_value=5),
)
def test_shared_exp_round_trips_within_half_a_unit_of_the_largest_values_last_digit(
    values: list[float], sig: int
) -> None:
    s = np.array(values).reshape(2, 6)
    back = parse_stress(target_text(s, sig, 1e-6, "shared_exp"), 2, "shared_exp")
    assert back is not None and back.shape == (2, 6)
    top = np.max(np.abs(s))
    if top < 1e-6:
        assert np.all(back == 0)
        return
    # the unit is 10**(floor(log10 top) - (sig - 1)), or ten times that when top rounds up to sig + 1
    # digits (9.996 at 3 digits): every value is off by at most half of it
    unit = 10.0 ** (np.floor(np.log10(top)) - (sig - 1))
    err = np.max(np.abs(back - s))
    assert err <= 0.5 * unit * (1 + 1e-9) or (err <= 5 * unit * (1 + 1e-9) and top / unit >= 10**sig - 0.5)


def test_shared_exp_parse_needs_the_scale_and_every_value() -> None:
    text = " 1e-3 -742" + " 0" * 11
    assert fields_needed(2, "shared_exp") == 13 and fields_needed(2, "sci") == 12
    got = parse_stress(text, 2, "shared_exp")
    assert got is not None and got[0, 0] == pytest.approx(-0.742) and np.all(got.ravel()[1:] == 0)
    assert parse_stress(" 1e-3 -742" + " 0" * 10, 2, "shared_exp") is None  # one value short
    assert parse_stress(" 1e-3 -742 x" + " 0" * 10, 2, "shared_exp") is None  # not a number
    # the same text read as sci takes the scale for the first value
    assert parse_stress(text, 2, "sci")[0, 0] == pytest.approx(1e-3)
    # a parse is decided only once the extra field is closed
    twelve = " 1e-3" + " 5" * 11 + " "
    assert parse_decided(twelve, 2, "sci") and not parse_decided(twelve, 2, "shared_exp")
    assert parse_decided(twelve + "7 ", 2, "shared_exp")


def test_unknown_number_format_is_refused() -> None:
    with pytest.raises(ValueError, match="number_format must be one of"):
        target_text(np.zeros((1, 6)), 3, 0.0, "hex")
    register()
    cfg = compose("run", ["train.text.number_format=hex"])
    with pytest.raises(ConfigError) as e:
        validate(cfg, dataset=False)
    assert "train.text.number_format" in str(e.value) and "sci | shared_exp" in str(e.value)


def test_unpacked_rows_hold_one_sample_each_from_position_zero() -> None:
    samples = [EncodedSample([1] * (2 + i % 3), [10 + i, 2]) for i in range(9)]
    s = PackedStream(samples, max_seq_len=16, micro_batch_size=3, seed=0, pad_id=0, packed=False)
    seen = []
    for k in range(3):  # one epoch: 9 samples, 3 rows a micro-batch
        ids, labels = s.micro_batch(k)
        assert ids.shape == (3, 16)
        for row, lab in zip(ids, labels):
            assert row[0] == 1  # every row starts with its own prompt at position 0
            n = int(np.count_nonzero(row))
            assert np.all(row[n:] == 0) and np.all(lab[n:] == IGNORE_INDEX)  # right padding, no loss
            targets = lab[lab != IGNORE_INDEX]
            assert len(targets) == 2 and targets[1] == 2  # exactly one sample's target and eos
            seen.append(int(targets[0]) - 10)
    assert sorted(seen) == list(range(9))
    packed = PackedStream(samples, max_seq_len=16, micro_batch_size=3, seed=0, pad_id=0)
    assert sum((packed.micro_batch(0)[1] == 2).sum(axis=1)) > 3  # packing puts several samples in a row


def test_new_text_knobs_keep_run_ids_at_their_defaults_and_change_them_when_set() -> None:
    register()
    base = compose("run", ["scale=smoke"])
    same = compose("run", ["scale=smoke", "train.packing=true", "train.text.number_format=sci"])
    assert identity.run_settings(base) == identity.run_settings(same)
    assert "packing" not in identity.run_settings(base)["train"]
    assert "number_format" not in identity.run_settings(base)["train"]["text"]
    for over in ("train.packing=false", "train.text.number_format=shared_exp"):
        assert identity.run_settings(compose("run", ["scale=smoke", over])) != identity.run_settings(base), (
            over
        )

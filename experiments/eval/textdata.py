"""Samples as text for a causal language model, the tokenizer, and packed training batches.

One sample becomes ``prompt + target``::

    BC: liver hyperelastic neo_hookean uniaxial | neo_hookean.mu=1.87e0 ... load.stretch=9.12e-1 -> STRESS:
     1.23e0 -4.56e-1 ... <eos>

Numbers use one fixed compact format (``d.dd e<exp>``, ``significant_digits`` digits, no ``+``, no
leading exponent zeros, no ``e0``), so a value costs a handful of tokens whatever its magnitude
(stresses span kPa fractions to tens of kPa); stress magnitudes below ``zero_below_kpa`` (solver
round-off) are written ``0``. Parameters that do not apply to a sample
(NaN in ``params``) are left out of its prompt. The target is the Cauchy stress at every probe,
Voigt order xx, yy, zz, yz, xz, xy, probe after probe: ``P * 6`` numbers separated by spaces.

Training sequences are packed (``train.packing: true``): samples (prompt+target+eos) are
concatenated in a seeded order into sequences of exactly ``max_seq_len`` tokens (the remainder of a
sequence that cannot take the next whole sample is padding), so every micro-batch has the same
shape and memory/throughput are those of full-length sequences. Attention is not masked across
packed samples (standard packing). With ``packing: false`` each row holds one sample from position
0, right-padded to ``max_seq_len``: under causal attention a sample then sees only itself, exactly
as generation and the NLL co-endpoint see it (attention masked at sample boundaries, positions
restarted). The loss is on target tokens (stress values and eos) only: prompt and padding positions
get label -100.

``train.text.number_format`` picks how target stresses are written (:func:`target_text`): ``sci``
(every value ``d.dd e<exp>``) or ``shared_exp`` (one ``1e<E>`` scale per sample, then integers).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from common.atomic import write_text

IGNORE_INDEX = -100
PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
STRESS_MARK = " -> STRESS:"


def format_number(x: float, significant_digits: int, zero_below: float = 0.0) -> str:
    """``1234.5 -> '1.23e3'``, ``-0.00123 -> '-1.23e-3'``, ``1.5 -> '1.50'`` (3 significant digits;
    the exponent is left out when it is 0); ``|x| < zero_below`` -> ``'0'`` (solver round-off such as
    1e-17 kPa in a component the load does not excite would otherwise cost 8 tokens of noise)."""
    if abs(x) < zero_below:
        return "0"
    mantissa, _, exponent = f"{float(x):.{significant_digits - 1}e}".partition("e")
    e = int(exponent)
    return mantissa if e == 0 else f"{mantissa}e{e}"


def prompt_text(sample: dict[str, Any], param_names: list[str], sig: int) -> str:
    head = " ".join(str(sample[k]) for k in ("tissue", "behaviour", "material_model", "scenario"))
    params = " ".join(
        f"{n}={format_number(v, sig)}" for n, v in zip(param_names, sample["params"]) if not math.isnan(v)
    )
    return f"BC: {head} | {params}{STRESS_MARK}"


NUMBER_FORMATS = ("sci", "shared_exp")


def fields_needed(n_probes: int, number_format: str = "sci") -> int:
    """Whitespace-separated fields a target holds: ``P * 6`` values, plus the scale in ``shared_exp``."""
    return n_probes * 6 + (number_format == "shared_exp")


def target_text(stress: np.ndarray, sig: int, zero_below: float = 0.0, number_format: str = "sci") -> str:
    """Stress (P, 6) in kPa, row-major, each field preceded by one space.

    ``sci``: every value in its own compact scientific form (:func:`format_number`).
    ``shared_exp``: one scale for the sample, then every value as an integer in its units: the
    scale is ``1e<E>`` with ``E = exponent(max |value|) - (sig - 1)``, so the largest value has
    ``sig`` digits and a value ``v`` is written ``round(v / 10**E)`` (``0`` when that rounds to
    zero). Small components then cost one token instead of a full exponent form; the absolute
    rounding error of every value is at most half a unit of the largest value's last digit.
    """
    v = np.asarray(stress, dtype=np.float64).ravel()
    if number_format == "sci":
        return "".join(" " + format_number(x, sig, zero_below) for x in v)
    if number_format != "shared_exp":
        raise ValueError(f"number_format must be one of {NUMBER_FORMATS}; got {number_format!r}")
    top = float(np.max(np.abs(v))) if v.size else 0.0
    nonzero = top >= max(zero_below, 1e-300)
    e = (math.floor(math.log10(top)) if nonzero else 0) - (sig - 1)
    if nonzero and round(top / 10.0**e) >= 10**sig:  # 9.995 -> 1000: one digit more
        e += 1
    ints = np.rint(v / 10.0**e).astype(np.int64)
    return f" 1e{e}" + "".join(f" {int(i)}" for i in ints)


_SCALE = re.compile(r"1e[+-]?\d+")
_INTEGER = re.compile(r"[+-]?\d+")


def fields_writable(fields: list[str], number_format: str, significant_digits: int) -> bool:
    """Whether generated fields hold values :func:`target_text` can write with
    ``significant_digits``. ``shared_exp``: the scale is a power of ten (``1e<E>``) and every value an
    integer below ``10**significant_digits`` in magnitude (the writer's largest has exactly that many
    digits): two integers run together (``-315212100210``) or a value past the scale (``1255`` at 3
    digits) are not outputs of the format. Spellings of a value the format can write (``-0``,
    ``007``) are accepted. ``sci``: every finite float is a value the format writes, and two numbers
    run together do not parse as one (a second point or exponent), so nothing more is checked."""
    if significant_digits < 1:
        raise ValueError(f"significant_digits must be >= 1; got {significant_digits}")
    if number_format == "sci":
        return True
    if number_format != "shared_exp":
        raise ValueError(f"number_format must be one of {NUMBER_FORMATS}; got {number_format!r}")
    if not fields or not _SCALE.fullmatch(fields[0]):
        return False
    top = 10**significant_digits
    return all(_INTEGER.fullmatch(f) and abs(int(f)) < top for f in fields[1:])


def parse_stress(
    text: str, n_probes: int, number_format: str = "sci", significant_digits: int | None = None
) -> np.ndarray | None:
    """Inverse of :func:`target_text`: (P, 6) kPa, or None when the text does not hold the first
    :func:`fields_needed` fields as finite numbers (extra trailing fields after them are ignored).
    With ``significant_digits`` (the run's ``train.text.significant_digits``) those fields must also
    hold values the format writes (:func:`fields_writable`), else None: a parse failure, scored with
    the stated penalty, never as the huge value run-together digits happen to spell."""
    fields = text.replace(EOS, " ").split()
    need = fields_needed(n_probes, number_format)
    if len(fields) < need:
        return None
    if significant_digits is not None and not fields_writable(
        fields[:need], number_format, significant_digits
    ):
        return None
    try:
        values = np.array([float(f) for f in fields[:need]], dtype=np.float64)
    except ValueError:
        return None
    if number_format == "shared_exp":
        values = values[1:] * values[0]
    if not np.all(np.isfinite(values)):
        return None
    return values.reshape(n_probes, 6)


def split_samples(split: dict[str, Any]) -> list[dict[str, Any]]:
    n = len(split["sample_id"])
    keys = ("sample_id", "tissue", "material_model", "scenario", "behaviour", "params", "stress")
    return [{k: split[k][i] for k in keys} for i in range(n)]


class TextCodec:
    """Text <-> token ids: a BPE tokenizer trained on the train split, or a pretrained model's.

    Digits are always single tokens (the BPE pre-tokenizer isolates them; Llama's tokenizer splits
    digits itself), so a number's tokens are its characters and the model cannot memorise whole values.
    """

    def __init__(self, tokenizer: Any, *, hf: bool) -> None:
        self.tok = tokenizer
        self.hf = hf
        if hf:
            self.eos_id = int(tokenizer.eos_token_id)
            pad = tokenizer.pad_token_id
            self.pad_id = int(pad if pad is not None else tokenizer.eos_token_id)
            self.vocab_size = len(tokenizer)
        else:
            self.eos_id = int(tokenizer.token_to_id(EOS))
            self.pad_id = int(tokenizer.token_to_id(PAD))
            self.vocab_size = int(tokenizer.get_vocab_size())

    @classmethod
    def train_bpe(cls, texts: list[str], vocab_size: int) -> TextCodec:
        tok = Tokenizer(models.BPE(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[PAD, EOS, UNK],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        return cls(tok, hf=False)

    @classmethod
    def load(cls, path: Path) -> TextCodec:
        return cls(Tokenizer.from_file(str(path)), hf=False)

    @classmethod
    def from_pretrained(cls, path: str) -> TextCodec:
        from transformers import AutoTokenizer  # seconds to import: only for a pretrained model

        return cls(AutoTokenizer.from_pretrained(path), hf=True)

    def save(self, run_dir: Path) -> Path:
        if self.hf:
            out = run_dir / "tokenizer"
            self.tok.save_pretrained(str(out))
            return out
        return write_text(run_dir / "tokenizer.json", self.tok.to_str())

    def encode(self, text: str, *, first: bool) -> list[int]:
        if self.hf:
            return list(self.tok(text, add_special_tokens=first)["input_ids"])
        return list(self.tok.encode(text).ids)

    def decode(self, ids: list[int]) -> str:
        return str(self.tok.decode(ids, skip_special_tokens=True))


@dataclass
class EncodedSample:
    prompt_ids: list[int]
    target_ids: list[int]  # ends with eos


def encode_samples(
    codec: TextCodec,
    samples: list[dict[str, Any]],
    param_names: list[str],
    sig: int,
    zero_below: float,
    number_format: str = "sci",
) -> list[EncodedSample]:
    return [
        EncodedSample(
            codec.encode(prompt_text(s, param_names, sig), first=True),
            [
                *codec.encode(target_text(s["stress"], sig, zero_below, number_format), first=False),
                codec.eos_id,
            ],
        )
        for s in samples
    ]


class PackedStream:
    """Deterministic stream of packed sequences: micro-batch ``k`` is a pure function of
    (samples, seed, k), so the data position in a checkpoint is one integer.

    Epoch ``e`` shuffles the samples with ``np.random.default_rng([seed, e])`` and packs them
    greedily; epochs are concatenated, so a micro-batch may straddle two epochs and no sample is lost
    at an epoch boundary.
    """

    def __init__(
        self,
        samples: list[EncodedSample],
        *,
        max_seq_len: int,
        micro_batch_size: int,
        seed: int,
        pad_id: int,
        packed: bool = True,
    ) -> None:
        too_long = max(len(s.prompt_ids) + len(s.target_ids) for s in samples)
        if too_long > max_seq_len:
            raise ValueError(f"a sample needs {too_long} tokens > max_seq_len {max_seq_len}")
        self.samples = samples
        self.max_seq_len = max_seq_len
        self.micro_batch_size = micro_batch_size
        self.seed = seed
        self.pad_id = pad_id
        self.packed = packed
        self._seqs: list[tuple[np.ndarray, np.ndarray]] = []
        self._first = 0  # global index of self._seqs[0]; consumed sequences are dropped (memory)
        self._epochs = 0

    def _pack_epoch(self) -> None:
        order = np.random.default_rng([self.seed, self._epochs]).permutation(len(self.samples))
        ids: list[int] = []
        labels: list[int] = []
        for i in order:
            s = self.samples[int(i)]
            n = len(s.prompt_ids) + len(s.target_ids)
            if ids and (not self.packed or len(ids) + n > self.max_seq_len):
                self._flush(ids, labels)
                ids, labels = [], []
            ids += s.prompt_ids + s.target_ids
            labels += [IGNORE_INDEX] * len(s.prompt_ids) + s.target_ids
        if ids:
            self._flush(ids, labels)
        self._epochs += 1

    def _flush(self, ids: list[int], labels: list[int]) -> None:
        pad = self.max_seq_len - len(ids)
        self._seqs.append(
            (
                np.array(ids + [self.pad_id] * pad, dtype=np.int64),
                np.array(labels + [IGNORE_INDEX] * pad, dtype=np.int64),
            )
        )

    def micro_batch(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, labels), each (micro_batch_size, max_seq_len) int64."""
        start, end = k * self.micro_batch_size, (k + 1) * self.micro_batch_size
        if start < self._first:  # asked to go back: rebuild from epoch 0 (deterministic)
            self._seqs, self._first, self._epochs = [], 0, 0
        while self._first + len(self._seqs) < end:
            self._pack_epoch()
        drop = start - self._first
        del self._seqs[:drop]
        self._first = start
        seqs = self._seqs[: self.micro_batch_size]
        return np.stack([s[0] for s in seqs]), np.stack([s[1] for s in seqs])

    def epochs_started(self) -> int:
        return self._epochs

"""Accuracy on held-out samples: greedy generation with a KV cache, parse, relative L2 error; and
the decoding-free co-endpoint, the teacher-forced NLL of the held-out target tokens.

A run scores with the accuracy endpoint of :mod:`experiments.eval.accuracy` (``ctx``: a
:class:`~experiments.eval.accuracy.MetricContext` from the dataset's ``baselines.json``, and each
split's group labels and strata, :class:`SplitMeta`): ``rel_l2_error`` is then the primary
definition (``rel_l2_metric`` names it), every definition is given as ``rel_l2_<definition>``,
stratified in ``strata``, and a parse failure is scored with the endpoint's penalty (the worse of
zeros and the training-median field, never a free answer), counted in ``parse_failures`` with
its scored size (``parse_failure_term``, ``parse_failure_share``).

Without ``ctx`` (unit tests of decoding): the pooled definition

    rel_l2_error = sum_i ||pred_i - true_i||_2 / sum_i ||true_i||_2

with an unparsable output taken as all zeros, and ``trivial_rel_l2_error`` the training-mean field's.

Generation stops a row as soon as its parse is decided (:class:`DecidedRows`), not only at eos or
``max_new_tokens``: :func:`~experiments.eval.textdata.parse_stress` reads the whitespace-separated fields
of the text and only the first ``P*6`` of them, so once those are all closed (followed by
whitespace), or one of them (or the field being written) can no longer be a finite number, nothing
the model adds can change the parse. The metric is the same as with full-length generation; only
the stored ``example_output`` ends where its row was decided.

Decoding: :class:`experiments.eval.decode.StaticCacheDecoder` (the model's own modules, a KV cache
allocated once) for Llama models, ``model.generate`` otherwise or with ``train.eval.decoder=hf``;
both greedy, same semantics (tests compare them token for token).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from experiments.config import DECODERS
from experiments.eval import accuracy, decode
from experiments.eval.textdata import EOS, IGNORE_INDEX, EncodedSample, TextCodec, fields_needed, parse_stress

log = logging.getLogger(__name__)


def rel_l2_error(pred: np.ndarray, true: np.ndarray) -> float:
    """pred, true: (N, P, 6). Sum of per-sample L2 norms of the error over sum of true norms."""
    n = true.shape[0]
    num = np.linalg.norm((pred - true).reshape(n, -1), axis=1).sum()
    den = np.linalg.norm(true.reshape(n, -1), axis=1).sum()
    return float(num / den) if den > 0 else float("nan")


def trivial_rel_l2_error(train_stress: np.ndarray, true: np.ndarray) -> float:
    mean_field = train_stress.mean(axis=0, keepdims=True)
    return rel_l2_error(np.broadcast_to(mean_field, true.shape), true)


# A superset of the prefixes of finite decimal literals Python's float() accepts (digits with
# underscores, optional fraction, optional exponent after a mantissa with a digit). A field whose
# start matches none of them cannot become a finite number whatever follows. Hazard: it must stay
# a superset (a false "dead" would stop a row whose parse could still succeed).
_NO_EXPONENT = re.compile(r"[+-]?(\d[\d_]*(\.[\d_]*)?|\.[\d_]*)?")
_WITH_EXPONENT = re.compile(r"[+-]?(\d[\d_]*(\.[\d_]*)?|\.\d[\d_]*)[eE][+-]?[\d_]*")

# Rows are checked every this many new tokens: each check reads the tokens back to the host
# (a device sync), so checking every token would stall generation; later only costs tokens.
DECIDE_EVERY_TOKENS = 16


def _is_finite_number(field: str) -> bool:
    try:
        return math.isfinite(float(field))
    except ValueError:
        return False


def parse_decided(text: str, n_probes: int, number_format: str = "sci") -> bool:
    """True when ``parse_stress(text + more, n_probes)`` is the same for every continuation ``more``.

    With ``spaced = text.replace(EOS, " ")`` and its fields (maximal non-whitespace runs), a field
    followed by whitespace is *closed*: no continuation changes it (``<eos>`` holds no whitespace,
    so one that would split it is already complete). Decided when the first ``P*6`` fields are all
    closed (the parse is then fixed, success or failure), when a closed one among them is not a
    finite number, or when the field being written (among the first ``P*6``) already cannot become
    one: its part before any ``<`` (which could start an ``<eos>`` that ends it) is not a prefix of
    a finite literal. Trailing U+FFFD (an incomplete UTF-8 sequence at the end of a decoded prefix,
    which more bytes may complete into a digit) is left undecided.

    Assumes ``decode(prefix)`` is a prefix of ``decode(full)`` up to that tail: true for the BPE
    codec (ByteLevel decoder) and Llama's; not with clean-up of tokenization spaces, which
    :func:`generate` therefore never combines with early stopping.
    """
    need = fields_needed(n_probes, number_format)
    spaced = text.replace(EOS, " ")
    fields = spaced.split()
    closed = len(fields) if spaced[-1:].isspace() else max(len(fields) - 1, 0)
    if any(not _is_finite_number(f) for f in fields[: min(closed, need)]):
        return True
    if closed >= need:
        return True
    if closed < len(fields):  # the field being written is among the first P*6
        start = fields[closed].split("<", 1)[0]
        if start.endswith("\ufffd"):
            return False
        if start and not (_NO_EXPONENT.fullmatch(start) or _WITH_EXPONENT.fullmatch(start)):
            return True
    return False


class DecidedRows:
    """Which rows' parses are decided (:func:`parse_decided`) or that emitted eos, from their new
    tokens; a row once decided stays so. Called as a per-row ``StoppingCriteria`` by
    ``model.generate`` (checks every ``every`` new tokens) or through :meth:`rows` by the
    static-cache decoder (which calls it at its own interval)."""

    def __init__(
        self,
        codec: TextCodec,
        prompt_width: int,
        n_probes: int,
        every: int | None = None,
        number_format: str = "sci",
    ) -> None:
        self.codec = codec
        self.width = prompt_width
        self.n_probes = n_probes
        self.number_format = number_format
        self.every = every or DECIDE_EVERY_TOKENS
        self._done: torch.Tensor | None = None
        self._rows: list[bool] | None = None

    def rows(self, new_tokens: torch.Tensor) -> torch.Tensor:
        """(B,) bool on ``new_tokens``' device for the (B, n) tokens generated so far."""
        done = self._rows if self._rows is not None else [False] * new_tokens.shape[0]
        for i, row in enumerate(new_tokens.tolist()):  # the check's device sync
            if not done[i]:  # a row that emitted eos is finished (generate pads it from there)
                done[i] = self.codec.eos_id in row or parse_decided(
                    self.codec.decode(row), self.n_probes, self.number_format
                )
        self._rows = done
        return torch.tensor(done, dtype=torch.bool, device=new_tokens.device)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        new = input_ids.shape[1] - self.width
        if self._done is None:
            self._done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if new % self.every:
            return self._done
        self._done = self.rows(input_ids[:, self.width :])
        return self._done


@torch.no_grad()
def generate(
    model: Any,
    codec: TextCodec,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    batch_size: int,
    device: torch.device,
    autocast: torch.dtype | None,
    should_stop: Callable[[], bool] = lambda: False,
    n_probes: int | None = None,
    decoder: str = "auto",
    number_format: str = "sci",
) -> list[str] | None:
    """Greedy continuation of each prompt (left-padded batches, KV cache); None if stopped early.

    With ``n_probes``, a row also stops once its parse is decided (:class:`DecidedRows`), unless the
    tokenizer cleans up tokenization spaces (decoded prefixes would then not be prefixes).
    ``decoder``: ``static`` (:class:`experiments.eval.decode.StaticCacheDecoder`, a ValueError if the
    model is not supported), ``hf`` (``model.generate``), ``auto`` (static where supported)."""
    if n_probes is not None and getattr(codec.tok, "clean_up_tokenization_spaces", False):
        n_probes = None
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}; got {decoder!r}")
    why = decode.supported(model) if decoder != "hf" else "decoder=hf"
    if decoder == "static" and why is not None:
        raise ValueError(f"decoder=static cannot decode this model: {why}")
    static = decode.StaticCacheDecoder(model) if why is None else None
    was_training = model.training
    model.eval()
    texts: list[str] = []
    try:
        for i in range(0, len(prompts), batch_size):
            if should_stop():
                return None
            batch = prompts[i : i + batch_size]
            width = max(len(p) for p in batch)
            ids = torch.full((len(batch), width), codec.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for j, p in enumerate(batch):
                ids[j, width - len(p) :] = torch.tensor(p)
                mask[j, width - len(p) :] = 1
            ctx = (
                torch.autocast(device.type, dtype=autocast)
                if autocast is not None
                else contextlib.nullcontext()
            )
            decided = (
                DecidedRows(codec, width, n_probes, number_format=number_format)
                if n_probes is not None
                else None
            )
            with ctx:
                if static is not None:
                    out = static.generate(
                        ids.to(device),
                        mask.to(device),
                        max_new_tokens=max_new_tokens,
                        eos_id=codec.eos_id,
                        pad_id=codec.pad_id,
                        is_done=decided.rows if decided is not None else None,
                        every=DECIDE_EVERY_TOKENS,
                    )
                else:
                    out = model.generate(
                        input_ids=ids.to(device),
                        attention_mask=mask.to(device),
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        use_cache=True,
                        eos_token_id=codec.eos_id,
                        pad_token_id=codec.pad_id,
                        stopping_criteria=[decided] if decided is not None else None,
                    )
            for row in out[:, width:].tolist():
                if codec.eos_id in row:
                    row = row[: row.index(codec.eos_id)]
                texts.append(codec.decode(row))
    finally:
        model.train(was_training)
    return texts


def score_texts(
    texts: list[str],
    true_stress: np.ndarray,
    train_stress: np.ndarray,
    number_format: str = "sci",
    significant_digits: int | None = None,
) -> dict[str, Any]:
    """Parse and score generated texts against ``true_stress`` (N, P, 6) with the module's rule."""
    n_probes = true_stress.shape[1]
    pred = np.zeros_like(true_stress)
    failures = 0
    for i, text in enumerate(texts):
        parsed = parse_stress(text, n_probes, number_format, significant_digits)
        if parsed is None:
            failures += 1  # scored as zeros: adds ||true_i|| to the numerator
        else:
            pred[i] = parsed
    return {
        "rel_l2_error": rel_l2_error(pred, true_stress),
        "parse_failure_rate": failures / len(texts) if texts else float("nan"),
        "trivial_rel_l2_error": trivial_rel_l2_error(train_stress, true_stress),
        "eval_samples": len(texts),
        "example_output": texts[0][:300] if texts else None,
    }


@dataclass(frozen=True)
class SplitMeta:
    """What the accuracy endpoint needs of a split beside its true stress: each sample's group label
    over ``ctx.scale_group`` (:func:`experiments.eval.accuracy.group_labels`) and the values of the
    stratifying fields (field -> (N,) values)."""

    labels: np.ndarray
    strata: dict[str, np.ndarray] = field(default_factory=dict)


def score_accuracy(
    texts: list[str],
    true_stress: np.ndarray,
    ctx: accuracy.MetricContext,
    meta: SplitMeta,
    number_format: str = "sci",
    significant_digits: int | None = None,
) -> dict[str, Any]:
    """Parse and score generated texts with the accuracy endpoint (module docstring); the parsed
    predictions ((N, P, 6) kPa, NaN where a text did not parse) under the key ``_pred``, which the
    caller pops before anything is written to the summary (the run keeps it in predictions.npz)."""
    true = np.asarray(true_stress, dtype=np.float64)
    pred, parsed = accuracy.parse_texts(texts, true.shape[1], true.shape, number_format, significant_digits)
    s = accuracy.score(pred, true, meta.labels, ctx, parsed=parsed)
    return {
        "rel_l2_error": s["rel_l2_primary"],
        "rel_l2_metric": ctx.primary,
        **{f"rel_l2_{m}": s[m] for m in accuracy.METRICS},
        "parse_failures": s["parse_failures"],
        "parse_failure_rate": s["parse_failure_rate"],
        "parse_failure_term": s["parse_failure_term"],
        "parse_failure_share": s["parse_failure_share"],
        "strata": accuracy.score_strata(pred, true, meta.labels, ctx, meta.strata, parsed=parsed),
        "eval_samples": len(texts),
        "example_output": texts[0][:300] if texts else None,
        "_pred": np.where(parsed[:, None, None], pred, np.nan),
        "_texts": list(texts),
    }


@torch.no_grad()
def target_nll(
    model: Any,
    encoded: list[EncodedSample],
    *,
    batch_size: int,
    device: torch.device,
    autocast: torch.dtype | None,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, Any] | None:
    """Teacher-forced negative log-likelihood of the target tokens (stress values and eos) given
    the prompt, the decoding-free co-endpoint: ``target_nll`` = summed NLL over all target tokens
    / their count (nats per token), ``target_nll_sample_mean`` = mean over samples of each
    sample's per-token NLL, ``target_nll_tokens``. Each sample alone from position 0 (right-padded
    batches of ``batch_size``, padding masked), as generation sees it. None if stopped."""
    was_training = model.training
    model.eval()
    total, tokens, per_sample = 0.0, 0, []
    try:
        for i in range(0, len(encoded), batch_size):
            if should_stop():
                return None
            batch = encoded[i : i + batch_size]
            width = max(len(e.prompt_ids) + len(e.target_ids) for e in batch)
            ids = torch.zeros((len(batch), width), dtype=torch.long)
            labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for j, e in enumerate(batch):
                n, p = len(e.prompt_ids) + len(e.target_ids), len(e.prompt_ids)
                ids[j, :n] = torch.tensor(e.prompt_ids + e.target_ids)
                labels[j, p:n] = torch.tensor(e.target_ids)
                mask[j, :n] = 1
            ctx = (
                torch.autocast(device.type, dtype=autocast)
                if autocast is not None
                else contextlib.nullcontext()
            )
            with ctx:
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            target = labels[:, 1:].to(device)
            valid = target != IGNORE_INDEX
            nll = -logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1) * valid
            total += float(nll.sum())
            tokens += int(valid.sum())
            per_sample += (nll.sum(dim=1) / valid.sum(dim=1)).tolist()
    finally:
        model.train(was_training)
    return {
        "target_nll": total / tokens if tokens else float("nan"),
        "target_nll_sample_mean": float(np.mean(per_sample)) if per_sample else float("nan"),
        "target_nll_tokens": tokens,
    }


def evaluate_splits(
    model: Any,
    codec: TextCodec,
    splits: dict[str, tuple[list[EncodedSample], np.ndarray]],
    train_stress: np.ndarray,
    *,
    max_new_tokens: int,
    batch_size: int,
    device: torch.device,
    autocast: torch.dtype | None,
    should_stop: Callable[[], bool] = lambda: False,
    stop_when_decided: bool = True,
    decoder: str = "auto",
    ctx: accuracy.MetricContext | None = None,
    meta: Mapping[str, SplitMeta] | None = None,
    number_format: str = "sci",
    significant_digits: int | None = None,
) -> dict[str, dict[str, Any]] | None:
    """Metrics per split, ``splits[name] = (encoded, true_stress)``, from ONE generation over all
    their prompts (None if stopped).  Each row is still decoded greedily from its own prompt, so
    pooling changes nothing that is measured (in low precision the last bits of a row can depend on
    the batch it shares, as with any batch size); what it saves is decode steps: on a GPU a step is
    host-bound and costs about the same at batch 100 and 600 (pilot, H100: one split of 100 took
    44 s), so one pooled generation replaces one per split.  ``wall_s``
    of each split is the shared generation time (and its own scoring). With ``ctx`` and ``meta``
    (split -> :class:`SplitMeta`) each split is scored with the accuracy endpoint
    (:func:`score_accuracy`), else with the pooled rule (:func:`score_texts`); with
    ``significant_digits`` a field the number format cannot write is a parse failure."""
    n_probes = {true.shape[1] for _enc, true in splits.values()}
    assert len(n_probes) == 1, "splits with different probe counts"
    prompts = [e.prompt_ids for enc, _true in splits.values() for e in enc]
    t0 = time.perf_counter()
    texts = generate(
        model,
        codec,
        prompts,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        device=device,
        autocast=autocast,
        should_stop=should_stop,
        n_probes=n_probes.pop() if stop_when_decided else None,
        decoder=decoder,
        number_format=number_format,
    )
    if texts is None:
        return None
    gen_s = time.perf_counter() - t0
    out, start = {}, 0
    for name, (enc, true) in splits.items():
        t1 = time.perf_counter()
        part = texts[start : start + len(enc)]
        if ctx is not None and meta is not None:
            out[name] = score_accuracy(part, true, ctx, meta[name], number_format, significant_digits)
        else:
            out[name] = score_texts(part, true, train_stress, number_format, significant_digits)
        out[name]["wall_s"] = gen_s + time.perf_counter() - t1
        start += len(enc)
    return out


def evaluate_split(
    model: Any,
    codec: TextCodec,
    encoded: list[EncodedSample],
    true_stress: np.ndarray,
    train_stress: np.ndarray,
    **kw: Any,
) -> dict[str, Any] | None:
    """Metrics on ``encoded`` (the first N samples of a split); None if stopped (SIGTERM).

    Keyword arguments as :func:`evaluate_splits`; ``stop_when_decided=False`` generates every row
    to eos or ``max_new_tokens`` (same metrics, slower: the reference the tests compare with).
    ``wall_s``: wall time of generation, parse and scoring (s)."""
    result = evaluate_splits(model, codec, {"split": (encoded, true_stress)}, train_stress, **kw)
    return None if result is None else result["split"]


def evaluate_held_out(
    model: Any,
    data: Any,
    eval_cfg: Any,
    *,
    device: torch.device,
    autocast: torch.dtype | None,
    should_stop: Callable[[], bool],
) -> dict[str, dict[str, Any]] | None:
    """A run's evaluation: validation (when the run has any) and test prompts of ``data`` (the run's
    ``PreparedData``) in one generation (:func:`evaluate_splits`: half the decode steps), decoded as
    ``train.eval`` says, scored with the accuracy endpoint when ``data.metric_ctx`` is set; then the
    teacher-forced target NLL of each split (:func:`target_nll`, ``eval_cfg.nll_batch_size`` rows at
    a time). Metrics per split, or None when ``should_stop`` ended generation or the NLL pass."""
    splits = {"val": (data.val, data.val_stress)} if data.val else {}
    splits["test"] = (data.test, data.test_stress)
    out = evaluate_splits(
        model,
        data.codec,
        splits,
        data.train_stress,
        max_new_tokens=data.max_new_tokens,
        batch_size=eval_cfg.batch_size,
        device=device,
        autocast=autocast,
        decoder=eval_cfg.decoder,
        should_stop=should_stop,
        ctx=getattr(data, "metric_ctx", None),
        meta=getattr(data, "split_meta", None),
        number_format=getattr(data, "number_format", "sci"),
        significant_digits=getattr(data, "significant_digits", None),
    )
    if out is None:
        return None
    for name, (enc, _true) in splits.items():
        t0 = time.perf_counter()
        nll = target_nll(
            model,
            enc,
            batch_size=eval_cfg.nll_batch_size,
            device=device,
            autocast=autocast,
            should_stop=should_stop,
        )
        if nll is None:
            return None
        out[name].update(nll, target_nll_wall_s=time.perf_counter() - t0)
    return out

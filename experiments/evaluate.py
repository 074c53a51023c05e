"""Accuracy on held-out samples: greedy generation with a KV cache, parse, relative L2 error.

    rel_l2_error = sum_i ||pred_i - true_i||_2 / sum_i ||true_i||_2

over the evaluated samples, each norm over the sample's P x 6 stress values (kPa).

Scoring rule for outputs that do not parse (fewer than P*6 numbers, or a non-number among the
first P*6): the prediction is taken as all zeros, so the sample adds ||true_i|| to the numerator
(as bad as predicting nothing). Such samples are counted in ``parse_failure_rate``; none is dropped.

The trivial predictor answers every sample with the training-split mean stress field; its error
(``trivial_rel_l2_error``) says whether the model learned anything beyond the average.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from experiments.textdata import EncodedSample, TextCodec, parse_stress

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
) -> list[str] | None:
    """Greedy continuation of each prompt (left-padded batches, KV cache); None if stopped early."""
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
            with ctx:
                out = model.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    use_cache=True,
                    eos_token_id=codec.eos_id,
                    pad_token_id=codec.pad_id,
                )
            for row in out[:, width:].tolist():
                if codec.eos_id in row:
                    row = row[: row.index(codec.eos_id)]
                texts.append(codec.decode(row))
    finally:
        model.train(was_training)
    return texts


def evaluate_split(
    model: Any,
    codec: TextCodec,
    encoded: list[EncodedSample],
    true_stress: np.ndarray,
    train_stress: np.ndarray,
    *,
    max_new_tokens: int,
    batch_size: int,
    device: torch.device,
    autocast: torch.dtype | None,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, Any] | None:
    """Metrics on ``encoded`` (the first N samples of a split); None if stopped (SIGTERM)."""
    n_probes = true_stress.shape[1]
    texts = generate(
        model,
        codec,
        [e.prompt_ids for e in encoded],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        device=device,
        autocast=autocast,
        should_stop=should_stop,
    )
    if texts is None:
        return None
    pred = np.zeros_like(true_stress)
    failures = 0
    for i, text in enumerate(texts):
        parsed = parse_stress(text, n_probes)
        if parsed is None:
            failures += 1  # scored as zeros: adds ||true_i|| to the numerator
        else:
            pred[i] = parsed
    return {
        "rel_l2_error": rel_l2_error(pred, true_stress),
        "parse_failure_rate": failures / len(texts),
        "trivial_rel_l2_error": trivial_rel_l2_error(train_stress, true_stress),
        "eval_samples": len(texts),
        "example_output": texts[0][:300] if texts else None,
    }

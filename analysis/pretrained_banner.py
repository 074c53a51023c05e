"""The report's banner line when the study ran without pretrained weights.

The protocol fine-tunes pretrained models; a run that started from random weights (``model_init`` in
its summary: ``random``, which ``scale=protocol`` allows only with ``model.allow_random_init=true``)
answers a different question, and the report must say so at the top.
"""

from __future__ import annotations

from typing import Any


def random_init_banner(summaries: list[dict[str, Any]]) -> str | None:
    """One sentence when any run's weights were randomly initialised, else None."""
    inits = [s.get("model_init") for s in summaries]
    n_random = sum(i == "random" for i in inits)
    if n_random == 0:
        return None
    which = "every run" if n_random == len(inits) else f"{n_random} of {len(inits)} runs"
    return (
        f"WITHOUT PRETRAINED WEIGHTS: {which} started from randomly initialised weights; the protocol "
        "fine-tunes pretrained models, so this is no evidence about fine-tuning them."
    )

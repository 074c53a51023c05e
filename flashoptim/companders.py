"""Companders: invertible maps applied to group-normalised optimizer states before 8-bit rounding.

A state group ``x`` (32 values) is normalised by its absolute maximum, ``y = x / absmax`` so that
``y`` lies in ``[-1, 1]`` (signed states) or ``[0, 1]`` (unsigned states).  A compander ``f`` maps that
interval onto itself monotonically, ``z = f(y)``, and ``z`` is rounded to ``q = round(z * Q)`` with
``Q = 127`` (int8) or ``Q = 255`` (uint8).  Dequantisation is ``y ≈ f⁻¹(q / Q)``.  A compander with a
steep slope near zero spends more codes on small magnitudes, where the first and second moments of
Adam concentrate.

Families (each includes ``linear`` as a special case):

* ``softsign(a)``: ``f(y) = (1 + a) y / (1 + a |y|)``, ``f⁻¹(z) = z / ((1 + a) - a |z|)``.
  ``a = 1`` is the paper's first-moment compander ``2y / (1 + |y|)``.
* ``power(p)``:   ``f(y) = sign(y) |y|^p``, ``f⁻¹(z) = sign(z) |z|^(1/p)``.  ``p = 1/2`` is the paper's
  second-moment compander ``sqrt``.
* ``mulaw(mu)``:  ``f(y) = sign(y) log(1 + mu |y|) / log(1 + mu)``, the analytic logarithmic
  compander of telephony (``log`` in this package, ``mu = 255`` by default).

All maps fix 0, 1 and -1, are odd, and are evaluated in fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "COMPANDER_NAMES",
    "FAMILY_IDS",
    "Compander",
    "default_compander",
    "learned_candidates",
    "resolve_compander",
]

# Family ids double as the first element of a learned compander's state tensor and as a Triton
# constexpr, so their numbering is part of the checkpoint format: never renumber.
FAMILY_IDS = {"linear": 0, "softsign": 1, "power": 2, "mulaw": 3}
_FAMILY_NAMES = {v: k for k, v in FAMILY_IDS.items()}

COMPANDER_NAMES = ("paper", "linear", "log", "learned")


@dataclass(frozen=True)
class Compander:
    """One invertible map of ``[-1, 1]`` onto itself; ``family`` names the formula, ``param`` its knob."""

    family: str
    param: float = 1.0

    def __post_init__(self) -> None:
        if self.family not in FAMILY_IDS:
            raise ValueError(f"compander family {self.family!r} unknown; allowed: {sorted(FAMILY_IDS)}")
        if self.family != "linear" and not (self.param > 0 and math.isfinite(self.param)):
            raise ValueError(f"compander {self.family} needs a finite positive parameter, got {self.param}")

    @property
    def family_id(self) -> int:
        return FAMILY_IDS[self.family]

    def as_tensor(self) -> torch.Tensor:
        """Two fp32 numbers ``(family_id, param)``: how a learned compander is kept in optimizer state."""
        return torch.tensor([float(self.family_id), float(self.param)], dtype=torch.float32)

    @staticmethod
    def from_tensor(t: torch.Tensor) -> Compander:
        family_id, param = (float(v) for v in t.detach().cpu().tolist())
        return Compander(_FAMILY_NAMES[int(family_id)], param)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """``z = f(y)`` for ``y`` in ``[-1, 1]`` (fp32 in, fp32 out; ``y`` is not modified).

        Written with in-place ops on the temporaries (fewer passes on the CPU path); each value goes
        through the same roundings as the docstring's formula evaluated left to right.
        """
        if self.family == "linear":
            return y
        a = self.param
        if self.family == "softsign":
            return (y * (1.0 + a)).div_(y.abs().mul_(a).add_(1.0))
        if self.family == "power":
            return y.sign().mul_(y.abs().pow_(a))
        return y.sign().mul_(y.abs().mul_(a).log1p_()).div_(math.log1p(a))

    def forward_(self, y: torch.Tensor, *, nonnegative: bool = False) -> torch.Tensor:
        """:meth:`forward` computed in ``y``'s own storage (``y`` is overwritten; same bits).

        The quantiser's temporaries take this path: one allocation fewer per pass on the CPU step.
        ``nonnegative``: ``y`` in ``[0, 1]`` (an unsigned state), where ``sign(y)·|y|^p`` is ``y^p``
        (a ``-0.0`` becomes ``+0.0``: the same code).
        """
        if self.family == "linear":
            return y
        a = self.param
        if self.family == "softsign":
            den = y.abs().mul_(a).add_(1.0)
            return y.mul_(1.0 + a).div_(den)
        if self.family == "power" and nonnegative:
            return y.pow_(a)
        return self.forward(y)

    def inverse_(self, z: torch.Tensor, *, nonnegative: bool = False) -> torch.Tensor:
        """:meth:`inverse` computed in ``z``'s own storage (``z`` is overwritten; same bits).
        ``nonnegative``: the caller knows ``z >= +0`` (an unsigned state's codes), so signs are 1."""
        if self.family == "linear":
            return z
        a = self.param
        if self.family == "softsign":
            return z.div_(z.abs().mul_(-a).add_(1.0 + a))
        if self.family == "power" and nonnegative:
            if a == 0.5:
                return z.mul_(z)  # z * |z| with |z| = z
            return z.pow_(1.0 / a)
        return self.inverse(z)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """``y = f⁻¹(z)`` for ``z`` in ``[-1, 1]`` (``z`` is not modified)."""
        if self.family == "linear":
            return z
        a = self.param
        if self.family == "softsign":
            return z / z.abs().mul_(-a).add_(1.0 + a)
        if self.family == "power":
            if a == 0.5:  # the paper's sqrt: square exactly instead of pow(z, 2.0)
                return z * z.abs()
            return z.sign().mul_(z.abs().pow_(1.0 / a))
        return z.sign().mul_(z.abs().mul_(math.log1p(a)).expm1_()).div_(a)

    def __str__(self) -> str:
        return self.family if self.family == "linear" else f"{self.family}({self.param:g})"


def default_compander(name: str, *, signed: bool) -> Compander:
    """The fixed compander ``name`` for a signed (first moment) or unsigned (second moment) state.

    ``paper`` is softsign for signed states and sqrt for unsigned ones; ``log`` is mu-law with
    ``mu = 255``; ``learned`` starts from the paper's choice and is refitted by the optimizer.
    """
    if name == "linear":
        return Compander("linear")
    if name in ("paper", "learned"):
        return Compander("softsign", 1.0) if signed else Compander("power", 0.5)
    if name == "log":
        return Compander("mulaw", 255.0)
    raise ValueError(f"compander {name!r} unknown; allowed: {list(COMPANDER_NAMES)}")


def learned_candidates(*, signed: bool) -> list[Compander]:
    """The finite search space of the ``learned`` compander.

    It contains every fixed compander (``linear``, ``paper``, ``log``) for the same sign, so the
    refit, which takes the candidate of least reconstruction error, can never do worse than the best
    fixed one on the snapshot it was fitted on.
    """
    fixed = [default_compander(n, signed=signed) for n in ("linear", "paper", "log")]
    grid = [Compander("softsign", a) for a in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)]
    grid += [Compander("power", p) for p in (0.25, 1 / 3, 0.5, 0.75)]
    grid += [Compander("mulaw", mu) for mu in (15.0, 63.0, 255.0, 1023.0)]
    out: list[Compander] = []
    for c in fixed + grid:
        if c not in out:
            out.append(c)
    return out


def resolve_compander(name: str) -> str:
    """Validate a compander name given to an optimizer (one line naming what is allowed)."""
    if name not in COMPANDER_NAMES:
        raise ValueError(f"compander={name!r} is not one of {list(COMPANDER_NAMES)}")
    return name

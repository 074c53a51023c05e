"""Independent closed-form references in numpy (principal stretches, complex-step derivatives).

Not the generator's code: energies are re-written here as functions of principal stretches, and
principal Cauchy stresses are sigma_i = (lambda_i / J) d psi / d lambda_i, the derivative taken by
complex step (exact to rounding, no truncation error).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import brentq

Energy = Callable[[np.ndarray], complex]


def bulk(mu_ref: float, nu: float) -> float:
    return 2 * mu_ref * (1 + nu) / (3 * (1 - 2 * nu))


def psi_neo_hookean(mu: float, nu: float) -> Energy:
    lam = 2 * mu * nu / (1 - 2 * nu)

    def psi(s: np.ndarray) -> complex:
        J = s[0] * s[1] * s[2]
        return mu / 2 * (np.sum(s**2) - 3) - mu * np.log(J) + lam / 2 * np.log(J) ** 2

    return psi


def psi_mooney_rivlin(c10: float, c01: float, nu: float) -> Energy:
    kappa = bulk(2 * (c10 + c01), nu)

    def psi(s: np.ndarray) -> complex:
        J = s[0] * s[1] * s[2]
        I1 = np.sum(s**2)
        I2 = s[0] ** 2 * s[1] ** 2 + s[1] ** 2 * s[2] ** 2 + s[2] ** 2 * s[0] ** 2
        return c10 * (J ** (-2 / 3) * I1 - 3) + c01 * (J ** (-4 / 3) * I2 - 3) + kappa / 2 * np.log(J) ** 2

    return psi


def psi_ogden(mu: float, alpha: float, nu: float) -> Energy:
    kappa = bulk(mu, nu)

    def psi(s: np.ndarray) -> complex:
        J = s[0] * s[1] * s[2]
        sb = J ** (-1 / 3) * s
        return 2 * mu / alpha**2 * (np.sum(sb**alpha) - 3) + kappa / 2 * np.log(J) ** 2

    return psi


def principal_cauchy(psi: Energy, stretches: np.ndarray, h: float = 1e-30) -> np.ndarray:
    s = np.asarray(stretches, dtype=complex)
    J = float(np.prod(stretches))
    out = np.empty(3)
    for i in range(3):
        e = np.zeros(3, dtype=complex)
        e[i] = 1j * h
        out[i] = stretches[i] / J * np.imag(psi(s + e)) / h
    return out


def uniaxial_stress(psi: Energy, stretch: float) -> tuple[float, float]:
    """(axial Cauchy stress, lateral stretch) for stretch along axis 3 with free lateral faces."""

    def lateral(lat: float) -> float:
        return principal_cauchy(psi, np.array([lat, lat, stretch]))[0]

    lat = brentq(lateral, 0.3, 2.0, xtol=1e-15, rtol=1e-15, maxiter=500)
    return principal_cauchy(psi, np.array([lat, lat, stretch]))[2], lat


def confined_stress(psi: Energy, stretch: float) -> np.ndarray:
    return principal_cauchy(psi, np.array([1.0, 1.0, stretch]))

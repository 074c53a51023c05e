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


def incompressible_uniaxial_mooney_rivlin(c10: float, c01: float, stretch: float) -> float:
    """Axial Cauchy stress of incompressible MR, psi = c10 (I1 - 3) + c01 (I2 - 3), lateral
    stretch lambda^-1/2 (J = 1), lateral faces free: sigma = 2 (lambda^2 - 1/lambda)(c10 + c01/lambda)
    (e.g. Ogden, Non-linear elastic deformations, 1984, section 7.2)."""
    lam = stretch
    return 2.0 * (lam**2 - 1.0 / lam) * (c10 + c01 / lam)


def incompressible_uniaxial_ogden(mu: float, alpha: float, stretch: float) -> float:
    """Axial Cauchy stress of incompressible one-term Ogden, psi = 2 mu/alpha^2 sum(lambda_i^alpha - 3):
    sigma_i = lambda_i dpsi/dlambda_i - p; sigma_lateral = 0 fixes p, so
    sigma = 2 mu/alpha (lambda^alpha - lambda^(-alpha/2))."""
    lam = stretch
    return 2.0 * mu / alpha * (lam**alpha - lam ** (-alpha / 2.0))


# ---- energies as functions of F (3 x 3, complex-safe), for homogeneous deformations --------------
EnergyF = Callable[[np.ndarray], complex]


def _iso_C(F: np.ndarray) -> np.ndarray:
    J = np.linalg.det(F)
    return J ** (-2.0 / 3.0) * (F.T @ F)


def psi_guccione(
    C: float, b_f: float, b_t: float, b_fs: float, nu: float, f: np.ndarray, s: np.ndarray
) -> EnergyF:
    """Guccione et al. 1991 in the fibre frame (f, s, n = f x s) on the isochoric strain, plus
    kappa/2 (ln J)^2 with kappa from mu_ref = C b_f / 2 (the generator's convention)."""
    n = np.cross(f, s)
    kappa = bulk(C * b_f / 2, nu)

    def psi(F: np.ndarray) -> complex:
        E = 0.5 * (_iso_C(F) - np.eye(3))
        R = np.stack([f, s, n])  # rows: fibre-frame axes
        Ef = R @ E @ R.T
        Q = (
            b_f * Ef[0, 0] ** 2
            + b_t * (Ef[1, 1] ** 2 + Ef[2, 2] ** 2 + 2 * Ef[1, 2] ** 2)
            + b_fs * (2 * Ef[0, 1] ** 2 + 2 * Ef[0, 2] ** 2)
        )
        return C / 2 * (np.exp(Q) - 1) + kappa / 2 * np.log(np.linalg.det(F)) ** 2

    return psi


def psi_holzapfel_ogden(p: dict[str, float], f: np.ndarray, s: np.ndarray) -> EnergyF:
    """Holzapfel & Ogden 2009 (fibres/sheets bear tension only), isochoric I1, full I4/I8."""
    kappa = bulk(p["a"] + p["a_f"] + p["a_s"], p["nu"])

    def mac(x: complex) -> complex:
        return x if x.real > 0 else 0.0 * x

    def psi(F: np.ndarray) -> complex:
        C = F.T @ F
        I1b = np.trace(_iso_C(F))
        I4f, I4s, I8 = f @ C @ f, s @ C @ s, f @ C @ s
        return (
            p["a"] / (2 * p["b"]) * (np.exp(p["b"] * (I1b - 3)) - 1)
            + p["a_f"] / (2 * p["b_f"]) * (np.exp(p["b_f"] * mac(I4f - 1) ** 2) - 1)
            + p["a_s"] / (2 * p["b_s"]) * (np.exp(p["b_s"] * mac(I4s - 1) ** 2) - 1)
            + p["a_fs"] / (2 * p["b_fs"]) * (np.exp(p["b_fs"] * I8**2) - 1)
            + kappa / 2 * np.log(np.linalg.det(F)) ** 2
        )

    return psi


def cauchy_from_energy(psi: EnergyF, F: np.ndarray, h: float = 1e-30) -> np.ndarray:
    """sigma = J^-1 P F^T with P_ij = d psi / d F_ij by complex step (no truncation error)."""
    P = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            dF = np.zeros((3, 3), dtype=complex)
            dF[i, j] = 1j * h
            P[i, j] = np.imag(psi(F.astype(complex) + dF)) / h
    return P @ F.T / np.linalg.det(F)

"""Strain-energy functions psi(F) in UFL for the tissue laws, in kPa (energy per reference volume).

All constants are `fem.Constant`s (passed in a dict), so one compiled form serves every sample.
Invariants, with C = F^T F, J = det F, and for 2-D meshes the plane-strain embedding C33 = 1:

    I1 = tr C,  I2 = (I1^2 - tr C^2)/2,  bar I1 = J^(-2/3) I1,  bar I2 = J^(-4/3) I2,
    I4f = f0 . C f0,  I4s = s0 . C s0,  I8fs = f0 . C s0.

Laws (kappa = bulk modulus from a reference shear modulus mu_ref and the Poisson ratio nu,
kappa = 2 mu_ref (1 + nu) / (3 (1 - 2 nu)); U(J) = kappa/2 (ln J)^2):

- neo_hookean (compressible, not split): psi = mu/2 (I1 - 3) - mu ln J + lambda/2 (ln J)^2,
  lambda = 2 mu nu / (1 - 2 nu). Uniaxial stress/simple shear closed forms in tests/datagen.
- mooney_rivlin: psi = c10 (bar I1 - 3) + c01 (bar I2 - 3) + U(J), mu_ref = 2 (c10 + c01).
- ogden (one term): psi = 2 mu / alpha^2 (sum_i bar lambda_i^alpha - 3) + U(J), mu_ref = mu.
  sum_i bar lambda_i^alpha = tr(bar C^(alpha/2)) = J^(-alpha/3) tr(C^(alpha/2)), exact and smooth
  for even integer alpha. Hazard: the eigen-decomposition route has undefined derivatives at
  lambda1 = lambda2 = lambda3 (the undeformed state), so alpha is restricted to even integers and
  compiled into the form (one form per alpha value).
- holzapfel_ogden (Holzapfel & Ogden 2009, orthotropic):
  psi = a/(2b)(exp(b(bar I1 - 3)) - 1) + sum_{i=f,s} a_i/(2 b_i)(exp(b_i <I4i - 1>^2) - 1)
        + a_fs/(2 b_fs)(exp(b_fs I8fs^2) - 1) + U(J),  <x> = max(x, 0) (fibres bear no compression),
  mu_ref = a + a_f + a_s (hazard: kappa from `a` alone would make the tissue compressible along fibres).
- guccione (Guccione, McCulloch & Waldman 1991, transversely isotropic Fung-type):
  psi = C/2 (exp(Q) - 1) + U(J), Q = b_f E_ff^2 + b_t (E_ss^2 + E_nn^2 + 2 E_sn^2) + b_fs (2 E_fs^2 + 2 E_fn^2),
  E_ab = a . bar E b, bar E = (J^(-2/3) C - I)/2 the isochoric Green-Lagrange strain, n = f x s;
  mu_ref = C b_f / 2 (the fibre-direction small-strain modulus; the stiffest direction sets kappa).
- mooney_rivlin_incompressible, ogden_incompressible: the isochoric parts above with J = 1 exactly,
  enforced by a pressure Lagrange multiplier (mixed formulation only; no nu). At J = 1 the
  barred invariants equal the plain ones, so the classical closed forms apply.
"""

from __future__ import annotations

from typing import Any

import ufl

INCOMPRESSIBLE_LAWS = ("mooney_rivlin_incompressible", "ogden_incompressible")
LAWS = ("neo_hookean", "mooney_rivlin", "ogden", "holzapfel_ogden", "guccione", *INCOMPRESSIBLE_LAWS)


def _invariants(F: Any) -> tuple[Any, Any, Any, Any]:
    d = F.ufl_shape[0]
    C = F.T * F
    extra = 3 - d  # plane strain: the out-of-plane stretch is 1
    I1 = ufl.tr(C) + extra
    trC2 = ufl.tr(C * C) + extra
    I2 = 0.5 * (I1 * I1 - trC2)
    J = ufl.det(F)
    return C, I1, I2, J


def bulk_modulus(mu_ref: Any, nu: Any) -> Any:
    return 2.0 * mu_ref * (1.0 + nu) / (3.0 * (1.0 - 2.0 * nu))


def _trace_power(C: Any, k: int, d: int) -> Any:
    """tr(C^k) for integer k != 0 by repeated squaring (C^-1 for negative k); plane strain adds 1."""
    base = ufl.inv(C) if k < 0 else C
    n = abs(k)
    result = None
    power = base
    while n:
        if n & 1:
            result = power if result is None else result * power
        n >>= 1
        if n:
            power = power * power
    return ufl.tr(result) + (3 - d)


def strain_energy(
    law: str,
    F: Any,
    c: dict[str, Any],
    *,
    ogden_alpha: int | None = None,
    fibre: Any = None,
    sheet: Any = None,
) -> Any:
    """psi(F) in kPa for a compressible `law` with constants `c` (fem.Constant by parameter name):
    psi = psi_rest + K/2 (ln J)^2 with (psi_rest, K) from `strain_energy_parts`."""
    if law in INCOMPRESSIBLE_LAWS:
        raise ValueError(f"{law} is incompressible: it has no psi(F) alone (use strain_energy_parts)")
    rest, K = strain_energy_parts(law, F, c, ogden_alpha=ogden_alpha, fibre=fibre, sheet=sheet)
    return rest + K / 2 * ufl.ln(ufl.det(F)) ** 2


def strain_energy_parts(
    law: str,
    F: Any,
    c: dict[str, Any],
    *,
    ogden_alpha: int | None = None,
    fibre: Any = None,
    sheet: Any = None,
) -> tuple[Any, Any]:
    """(psi_rest, K) with psi = psi_rest + K/2 (ln J)^2 (kPa); K is None for an incompressible law.

    The split feeds the mixed displacement-pressure formulation (datagen/solid.py), which replaces
    K/2 (ln J)^2 by p ln J - p^2/(2K) (p eliminated pointwise gives back the same psi) and, for
    an incompressible law, by p ln J alone: p is then the Lagrange multiplier of ln J = 0 (J = 1).
    """
    C, I1, I2, J = _invariants(F)
    d = F.ufl_shape[0]
    lnJ = ufl.ln(J)
    if law == "neo_hookean":
        mu, nu = c["mu"], c["nu"]
        lam = 2.0 * mu * nu / (1.0 - 2.0 * nu)
        return mu / 2 * (I1 - 3) - mu * lnJ, lam
    if law in ("mooney_rivlin", "mooney_rivlin_incompressible"):
        I1b = J ** (-2.0 / 3.0) * I1
        I2b = J ** (-4.0 / 3.0) * I2
        rest = c["c10"] * (I1b - 3) + c["c01"] * (I2b - 3)
        if law == "mooney_rivlin_incompressible":
            return rest, None
        return rest, bulk_modulus(2.0 * (c["c10"] + c["c01"]), c["nu"])
    if law in ("ogden", "ogden_incompressible"):
        if ogden_alpha is None or ogden_alpha == 0 or ogden_alpha % 2:
            raise ValueError(f"ogden needs a non-zero even integer alpha, got {ogden_alpha!r}")
        alpha = int(ogden_alpha)
        k = alpha // 2
        sum_stretch = J ** (-alpha / 3.0) * _trace_power(C, k, d)
        rest = 2.0 * c["mu"] / alpha**2 * (sum_stretch - 3)
        if law == "ogden_incompressible":
            return rest, None
        return rest, bulk_modulus(c["mu"], c["nu"])
    if law == "holzapfel_ogden":
        if fibre is None or sheet is None:
            raise ValueError("holzapfel_ogden needs fibre and sheet directions")
        I1b = J ** (-2.0 / 3.0) * I1
        I4f = ufl.dot(fibre, C * fibre)
        I4s = ufl.dot(sheet, C * sheet)
        I8fs = ufl.dot(fibre, C * sheet)
        mac_f = ufl.conditional(ufl.gt(I4f, 1.0), I4f - 1.0, 0.0)
        mac_s = ufl.conditional(ufl.gt(I4s, 1.0), I4s - 1.0, 0.0)
        rest = (
            c["a"] / (2 * c["b"]) * (ufl.exp(c["b"] * (I1b - 3)) - 1)
            + c["a_f"] / (2 * c["b_f"]) * (ufl.exp(c["b_f"] * mac_f**2) - 1)
            + c["a_s"] / (2 * c["b_s"]) * (ufl.exp(c["b_s"] * mac_s**2) - 1)
            + c["a_fs"] / (2 * c["b_fs"]) * (ufl.exp(c["b_fs"] * I8fs**2) - 1)
        )
        return rest, bulk_modulus(c["a"] + c["a_f"] + c["a_s"], c["nu"])
    if law == "guccione":
        if fibre is None or sheet is None:
            raise ValueError("guccione needs fibre and sheet directions")
        normal = ufl.cross(fibre, sheet)
        Eb = 0.5 * (J ** (-2.0 / 3.0) * C - ufl.Identity(d))
        e = {
            (a, b): ufl.dot(va, Eb * vb)
            for (a, va), (b, vb) in (
                (("f", fibre), ("f", fibre)),
                (("s", sheet), ("s", sheet)),
                (("n", normal), ("n", normal)),
                (("f", fibre), ("s", sheet)),
                (("f", fibre), ("n", normal)),
                (("s", sheet), ("n", normal)),
            )
        }
        Q = (
            c["b_f"] * e["f", "f"] ** 2
            + c["b_t"] * (e["s", "s"] ** 2 + e["n", "n"] ** 2 + 2 * e["s", "n"] ** 2)
            + c["b_fs"] * (2 * e["f", "s"] ** 2 + 2 * e["f", "n"] ** 2)
        )
        return c["C"] / 2 * (ufl.exp(Q) - 1), bulk_modulus(c["C"] * c["b_f"] / 2, c["nu"])
    raise ValueError(f"unknown law {law!r}; one of {LAWS}")


def green_lagrange(F: Any) -> Any:
    return 0.5 * (F.T * F - ufl.Identity(F.ufl_shape[0]))


def cauchy_from_pk1(P: Any, F: Any) -> Any:
    """sigma = J^-1 P F^T (kPa)."""
    return P * F.T / ufl.det(F)

"""Step-strain relaxation of the QLV model against the Prony-series closed form.

A homogeneous deformation F is applied in one increment at t = 0 (dt = 0) and held. The exact
internal-variable update relaxes the non-volumetric part and keeps the volumetric part elastic:
sigma(t) = G(t) mu/J (b - I) + lambda ln J / J I, G(t) = 1 - g1 - g2 + g1 exp(-t/tau1) + g2 exp(-t/tau2)
(neo-Hookean psi = mu/2 (I1 - 3) - mu ln J + lambda/2 (ln J)^2; F has J = 1.12, so both parts count).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from datagen.solid import Solid
from datagen.specimen import build_specimen

H = np.array([[0.10, 0.00, 0.05], [0.00, -0.04, 0.00], [0.02, 0.00, 0.06]])  # u = H X


def neo_hookean_cauchy_parts(F: np.ndarray, mu: float, nu: float) -> tuple[np.ndarray, np.ndarray]:
    """(relaxing part, volumetric part) of the neo-Hookean Cauchy stress (kPa)."""
    lam = 2 * mu * nu / (1 - 2 * nu)
    J = np.linalg.det(F)
    b = F @ F.T
    return mu / J * (b - np.eye(3)), lam * np.log(J) / J * np.eye(3)


@pytest.mark.parametrize("pressure_degree", [1, None], ids=["mixed_up", "displacement"])
def test_step_strain_relaxation_matches_prony_closed_form(
    solver_cfg: Any, pressure_degree: int | None
) -> None:
    mu, nu, g, tau = 1.1, 0.46, (0.4, 0.2), (1.5, 20.0)
    sp = build_specimen(10.0, 1, 2)
    solid = Solid(
        sp,
        "neo_hookean",
        degree=2,
        quadrature_degree=4,
        surface_quadrature_degree=4,
        solver_cfg=solver_cfg,
        viscoelastic=True,
        pressure_degree=pressure_degree,  # 1: the production formulation (history relaxes p C^-1 too)
    )
    solid.c["mu"].value, solid.c["nu"].value = mu, nu
    for i in range(2):
        solid.g[i].value, solid.tau[i].value = g[i], tau[i]
    _, vals = solid.problem("homogeneous")

    def set_load(s: float) -> None:
        for fn in vals.values():
            fn.interpolate(lambda x: s * (H @ x))

    solid.reset()
    solid.run_path("homogeneous", set_load, [(0.0, 1.0)])  # the step, dt = 0
    rest, vol = neo_hookean_cauchy_parts(np.eye(3) + H, mu, nu)
    idx = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
    rest_v, vol_v = (np.array([m[i, j] for i, j in idx]) for m in (rest, vol))
    t_prev = 0.0
    for t in (0.5, 2.0, 10.0, 60.0):
        solid.run_path("homogeneous", set_load, [(t, 1.0)], start=(t_prev, 1.0))
        t_prev = t
        G = 1 - g[0] - g[1] + g[0] * np.exp(-t / tau[0]) + g[1] * np.exp(-t / tau[1])
        sigma, _ = solid.probe_outputs()
        expect = G * rest_v + vol_v
        err = np.max(np.abs(sigma - expect)) / np.max(np.abs(expect))
        assert err <= 1e-8, (t, err)
    # relaxed well below the instantaneous response: the history is really used
    assert G < 0.5

"""Step-strain relaxation of the QLV model against the Prony-series closed form.

A homogeneous deformation F is applied in one increment at t = 0 (dt = 0) and held. The exact
internal-variable update gives S(t) = G(t) S_e(F), so sigma(t) = G(t) sigma_e(F) with
G(t) = 1 - g1 - g2 + g1 exp(-t/tau1) + g2 exp(-t/tau2), sigma_e the neo-Hookean stress
sigma_e = mu/J (b - I) + lambda ln J / J I.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from datagen.solid import Solid
from datagen.specimen import build_specimen

H = np.array([[0.10, 0.00, 0.05], [0.00, -0.04, 0.00], [0.02, 0.00, 0.06]])  # u = H X


def neo_hookean_cauchy(F: np.ndarray, mu: float, nu: float) -> np.ndarray:
    lam = 2 * mu * nu / (1 - 2 * nu)
    J = np.linalg.det(F)
    b = F @ F.T
    return mu / J * (b - np.eye(3)) + lam * np.log(J) / J * np.eye(3)


def test_step_strain_relaxation_matches_prony_closed_form(solver_cfg: Any) -> None:
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
    sigma_e = neo_hookean_cauchy(np.eye(3) + H, mu, nu)
    voigt = np.array([sigma_e[i, j] for i, j in ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))])
    t_prev = 0.0
    for t in (0.5, 2.0, 10.0, 60.0):
        solid.run_path("homogeneous", set_load, [(t, 1.0)], start=(t_prev, 1.0))
        t_prev = t
        G = 1 - g[0] - g[1] + g[0] * np.exp(-t / tau[0]) + g[1] * np.exp(-t / tau[1])
        sigma, _ = solid.probe_outputs()
        err = np.max(np.abs(sigma - G * voigt)) / np.max(np.abs(G * voigt))
        assert err <= 1e-8, (t, err)
    # relaxed well below the instantaneous response: the history is really used
    assert G < 0.5

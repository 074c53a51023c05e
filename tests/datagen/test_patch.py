"""Homogeneous patch tests: the FE solution reproduces closed forms to solver tolerance (<= 1e-8).

The uniaxial scenario (symmetry planes, free lateral faces) and confined compression of the dataset
generator are homogeneous states that Q2 elements represent exactly, so the probe stresses must
match the independent references in `reference.py` up to Newton/rounding error.
"""

from __future__ import annotations

from typing import Any

import datagen_reference as ref
import numpy as np
import pytest

from datagen.solid import Solid
from datagen.specimen import build_specimen

L = 10.0
REL_TOL = 1e-8  # worst seen: ~1e-12 (Newton converged to atol 1e-10 kPa mm^2)


def make_solid(solver_cfg: Any, law: str, **kw: Any) -> Solid:
    sp = build_specimen(L, 1, 2)
    return Solid(
        sp, law, degree=2, quadrature_degree=4, surface_quadrature_degree=4, solver_cfg=solver_cfg, **kw
    )


def solve_top_displacement(solid: Solid, scenario: str, uz: float) -> np.ndarray:
    solid.reset()
    _, vals = solid.problem(scenario)
    solid.run_path(scenario, lambda s: setattr(vals["top_uz"], "value", s * uz), [(0.0, 0.5), (0.0, 1.0)])
    return solid.probe_outputs()


CASES = [
    ("neo_hookean", {"mu": 1.7, "nu": 0.47}, None, lambda c: ref.psi_neo_hookean(c["mu"], c["nu"])),
    (
        "mooney_rivlin",
        {"c10": 0.6, "c01": 0.3, "nu": 0.48},
        None,
        lambda c: ref.psi_mooney_rivlin(c["c10"], c["c01"], c["nu"]),
    ),
    ("ogden", {"mu": 0.9, "nu": 0.47}, -20, lambda c: ref.psi_ogden(c["mu"], -20.0, c["nu"])),
]


@pytest.mark.parametrize(("law", "consts", "alpha", "psi"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("stretch", [0.85, 1.15])
def test_uniaxial_stress_matches_lateral_stretch_solution(
    solver_cfg: Any, law: str, consts: dict[str, float], alpha: int | None, psi: Any, stretch: float
) -> None:
    solid = make_solid(solver_cfg, law, ogden_alpha=alpha)
    for k, v in consts.items():
        solid.c[k].value = v
    sigma, strain = solve_top_displacement(solid, "uniaxial", (stretch - 1) * L)
    s_axial, lat = ref.uniaxial_stress(psi(consts), stretch)
    assert np.max(np.abs(sigma[:, 2] - s_axial)) <= REL_TOL * abs(s_axial)
    # lateral faces are traction free and the lateral stretch is the solved one
    assert np.max(np.abs(sigma[:, :2])) <= REL_TOL * abs(s_axial)
    assert np.max(np.abs(strain[:, 0] - 0.5 * (lat**2 - 1))) <= REL_TOL * abs(0.5 * (lat**2 - 1))
    assert np.max(np.abs(strain[:, 2] - 0.5 * (stretch**2 - 1))) <= 1e-12


def test_confined_compression_neo_hookean(solver_cfg: Any) -> None:
    solid = make_solid(solver_cfg, "neo_hookean")
    solid.c["mu"].value, solid.c["nu"].value = 2.0, 0.45
    sigma, _ = solve_top_displacement(solid, "confined_compression", -0.12 * L)
    expect = ref.confined_stress(ref.psi_neo_hookean(2.0, 0.45), 0.88)
    assert np.max(np.abs(sigma[:, :3] - expect) / np.abs(expect)) <= REL_TOL


def test_simple_shear_neo_hookean_sigma12_is_mu_gamma(solver_cfg: Any) -> None:
    """Every face displaced by u = gamma Z e_x: F = I + gamma e_x (x) e_z, J = 1,
    sigma = mu (b - I): sigma_xz = mu gamma, sigma_xx = mu gamma^2, others 0."""
    mu, gamma = 1.3, 0.4
    solid = make_solid(solver_cfg, "neo_hookean")
    solid.c["mu"].value, solid.c["nu"].value = mu, 0.45
    _, vals = solid.problem("homogeneous")

    def set_load(s: float) -> None:
        for g in vals.values():
            g.interpolate(lambda x: np.vstack([s * gamma * x[2], 0 * x[0], 0 * x[0]]))

    solid.reset()
    solid.run_path("homogeneous", set_load, [(0.0, 0.5), (0.0, 1.0)])
    sigma, strain = solid.probe_outputs()
    assert np.max(np.abs(sigma[:, 4] - mu * gamma)) <= REL_TOL * mu * gamma
    assert np.max(np.abs(sigma[:, 0] - mu * gamma**2)) <= REL_TOL * mu * gamma**2
    assert np.max(np.abs(sigma[:, [1, 2, 3, 5]])) <= REL_TOL * mu * gamma
    assert np.max(np.abs(strain[:, 4] - gamma / 2)) <= 1e-12

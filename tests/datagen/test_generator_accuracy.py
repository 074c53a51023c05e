"""Every behaviour x scenario the protocol config generates, solved at the generator's own settings
(`datagen.worker.SampleRunner` with `data=protocol`: its meshes, steps and schemes), is within
`data.solver.error_tolerance` (2%) of an independent reference (issue 17). Error: max over the probes
and Voigt components of |stored - reference| / max |reference| (the sample's stress scale).

References:
- homogeneous scenarios (uniaxial, confined compression and, since generator version 5, simple
  shear with the affine field on the whole boundary): closed forms from numpy energies with
  complex-step derivatives (tests/datagen/datagen_reference.py); viscoelastic: the hereditary
  integral of the generator's QLV law summed on 4000 ramp intervals; viscoelastic uniaxial (lateral
  stretch unknown): the same model on a much finer time grid. Holzapfel-Ogden uniaxial uses the
  closed form since generator version 6 guides the top platen (homogeneous also in compression);
- poroelastic confined compression: the exact series (test_poroelastic.py, fast);
- the inhomogeneous ones (indentation; poroelastic uniaxial): the same problem on much finer meshes
  (and, for Biot, a finer time grid), whose two finest levels must themselves agree well within the
  tolerance (the reference's own convergence).
The table in datagen/README.md ("Verification at the generator's settings") lists the figures.
"""

from __future__ import annotations

import math
from typing import Any

import datagen_reference as ref
import numpy as np
import pytest

import datagen.spec  # noqa: F401  (registers the schemas)
from common.config import compose
from datagen.sampling import SampleInputs, draw_sample

pytestmark = pytest.mark.slow

PROTOCOL = ["data=protocol"]


@pytest.fixture(scope="module")
def gen() -> Any:
    return compose("datagen", PROTOCOL).data


@pytest.fixture(scope="module")
def runner(gen: Any) -> Any:
    from datagen.worker import SampleRunner  # FEniCSx: only when the slow tests run

    return SampleRunner(gen, eager=False)


def refined_runner(cells: int, *, time_factor: int = 1) -> Any:
    """The generator's model on a finer mesh: `cells` per axis for the solids, [cells, cells, 3 cells]
    z-graded for Biot; `time_factor` times as many load/time steps (Biot: step ratio 1.1, cap T_v 0.01).
    Biot references factorise with MUMPS (the same equations as the generator's SuperLU to 1e-9,
    test_poroelastic.py; 3-4x less CPU on these meshes) and skip the step-doubling estimate."""
    from datagen.worker import SampleRunner

    gen = compose("datagen", PROTOCOL).data
    over = [
        f"data.mesh.cells_per_axis={cells}",
        f"data.mesh.indentation_cells={cells}",
        f"data.mesh.poro_cells=[{cells},{cells},{3 * cells}]",
        f"data.mesh.poro_indentation_cells=[{cells},{cells},{3 * cells}]",
        "data.solver.poro_linear_solver=mumps",
        "data.solver.poro_error_estimate=false",
    ]
    if time_factor > 1:
        sv = gen.solver
        over += [
            f"data.solver.initial_load_steps={time_factor * sv.initial_load_steps}",
            f"data.solver.visco_ramp_steps={time_factor * sv.visco_ramp_steps}",
            f"data.solver.visco_hold_steps={time_factor * sv.visco_hold_steps}",
            "data.solver.poro_step_ratio=1.1",
            "data.solver.poro_max_step=0.01",
        ]
    return SampleRunner(compose("datagen", [*PROTOCOL, *over]).data, eager=False)


def draws(gen: Any, behaviour: str, scenario: str, per_law: int = 1, limit: int = 4000) -> list[SampleInputs]:
    """The first `per_law` samples of each material law the protocol draws for (behaviour, scenario)."""
    out: dict[str, list[SampleInputs]] = {}
    for sid in range(limit):
        x = draw_sample(gen, sid)
        if (
            x.behaviour == behaviour
            and x.scenario == scenario
            and len(out.get(x.material_model, [])) < per_law
        ):
            out.setdefault(x.material_model, []).append(x)
    return [x for xs in out.values() for x in xs]


def rel_err(a: np.ndarray, r: np.ndarray) -> float:
    return float(np.max(np.abs(a - r)) / np.max(np.abs(r)))


def consts(x: SampleInputs) -> dict[str, float]:
    pre = f"{x.material_model}."
    return {k[len(pre) :]: v for k, v in x.params.items() if k.startswith(pre)}


def deformation(x: SampleInputs) -> Any:
    """F(s), s in [0, 1] the load factor, of a homogeneous scenario (uniaxial: None, not prescribed)."""
    p = x.params
    if x.scenario == "simple_shear":
        th = math.radians(p["load.load_angle_deg"])
        g = p["load.shear_strain"]

        def F(s: float) -> np.ndarray:
            out = np.eye(3)
            out[0, 2], out[1, 2] = s * g * math.cos(th), s * g * math.sin(th)
            return out

        return F
    if x.scenario == "confined_compression":
        return lambda s: np.diag([1.0, 1.0, 1.0 - s * p["load.compression_strain"]])
    return None


def fibres(x: SampleInputs) -> tuple[np.ndarray, np.ndarray]:
    th = math.radians(x.params["load.fibre_angle_deg"])
    return np.array([math.cos(th), math.sin(th), 0.0]), np.array([-math.sin(th), math.cos(th), 0.0])


def hyperelastic_closed_form(x: SampleInputs) -> np.ndarray | None:
    """(P, 6) expected Cauchy stress of a hyperelastic sample in a homogeneous state, or None."""
    c = consts(x)
    if x.material_model == "holzapfel_ogden":
        psi = ref.psi_holzapfel_ogden(c, *fibres(x))
    else:
        psi = ref.psi_F(x.material_model, c, x.ogden_alpha)
    if x.scenario == "uniaxial":
        s_axial, _ = ref.uniaxial_stress_F(psi, x.params["load.stretch"])
        return np.tile([0.0, 0.0, s_axial, 0.0, 0.0, 0.0], (8, 1))
    return np.tile(ref.to_voigt(ref.cauchy_from_energy(psi, deformation(x)(1.0))), (8, 1))


HYPERELASTIC_LAWS = ("neo_hookean", "mooney_rivlin", "ogden", "holzapfel_ogden")


@pytest.mark.parametrize("scenario", ["uniaxial", "confined_compression", "simple_shear"])
@pytest.mark.parametrize("law", HYPERELASTIC_LAWS)
def test_hyperelastic_homogeneous_scenarios_match_closed_forms(
    gen: Any, runner: Any, scenario: str, law: str
) -> None:
    """Homogeneous states are in the Q2 space: exact up to Newton's tolerance, far below 2%. The
    first two samples of each law (Holzapfel-Ogden uniaxial: one in tension, one in compression)."""
    xs = [x for x in draws(gen, "hyperelastic", scenario, per_law=2) if x.material_model == law]
    assert len(xs) == 2
    for x in xs:
        got, expect = runner.run(x).stress, hyperelastic_closed_form(x)
        err = rel_err(got, expect)
        print(f"hyperelastic {scenario} sample {x.sample_id} ({x.material_model}): {err:.1e}")
        assert err <= 1e-7, (x.sample_id, x.material_model, err, got[0], expect[0])


def test_holzapfel_ogden_uniaxial_compression_stays_homogeneous(gen: Any, runner: Any) -> None:
    """Compression stretches the in-plane fibres (I4 > 1: taut) while the matrix is soft (a ~ 0.06 kPa):
    the first four such samples of the protocol draw must match the homogeneous closed form on the
    guided platens (generator version 6; version 5's unguided top slid into a sheared state, 4.3%)."""
    xs = []
    for sid in range(4000):
        x = draw_sample(gen, sid)
        if (x.behaviour, x.scenario, x.material_model) == (
            "hyperelastic",
            "uniaxial",
            "holzapfel_ogden",
        ) and (x.params["load.stretch"] < 1.0):
            xs.append(x)
        if len(xs) == 4:
            break
    assert len(xs) == 4
    for x in xs:
        err = rel_err(runner.run(x).stress, hyperelastic_closed_form(x))
        print(
            f"hyperelastic uniaxial sample {x.sample_id} (holzapfel_ogden, stretch {x.params['load.stretch']:.3f}): {err:.1e}"
        )
        assert err <= 1e-7, (x.sample_id, err)


@pytest.mark.parametrize("scenario", ["confined_compression", "simple_shear"])
def test_viscoelastic_homogeneous_scenarios_match_hereditary_integral(
    gen: Any, runner: Any, scenario: str
) -> None:
    xs = draws(gen, "viscoelastic", scenario)
    assert {x.material_model for x in xs} >= {"neo_hookean", "ogden"}
    sv = gen.solver
    for x in xs:
        got = runner.run(x).stress
        rest, K = ref.energy_parts_F(x.material_model, consts(x), x.ogden_alpha)
        p = x.params
        sigma = ref.qlv_ramp_hold_cauchy(
            rest,
            K,
            deformation(x),
            (p["prony.g1"], p["prony.g2"]),
            (p["prony.tau1"], p["prony.tau2"]),
            float(sv.visco_ramp_time_s),
            p["load.time_s"],
        )
        err = rel_err(got, np.tile(ref.to_voigt(sigma), (8, 1)))
        assert err <= float(sv.error_tolerance), (x.sample_id, x.material_model, err)


def test_viscoelastic_uniaxial_matches_fine_time_grid(gen: Any, runner: Any) -> None:
    """Homogeneous in space (exact on any mesh); the reference has 16x the ramp and hold steps."""
    fine = refined_runner(int(gen.mesh.cells_per_axis), time_factor=16)
    for x in draws(gen, "viscoelastic", "uniaxial"):
        err = rel_err(runner.run(x).stress, fine.run(x).stress)
        assert err <= float(gen.solver.error_tolerance), (x.sample_id, x.material_model, err)


def test_poroelastic_simple_shear_is_exact(gen: Any, runner: Any) -> None:
    """Isochoric affine shear: p = 0, sigma_xz = mu gamma cos th, sigma_yz = mu gamma sin th."""
    for x in draws(gen, "poroelastic", "simple_shear", per_law=3):
        p = x.params
        th, g, mu = math.radians(p["load.load_angle_deg"]), p["load.shear_strain"], p["biot.mu"]
        expect = np.tile([0, 0, 0, mu * g * math.sin(th), mu * g * math.cos(th), 0], (8, 1))
        assert rel_err(runner.run(x).stress, expect) <= 1e-8


@pytest.mark.parametrize(
    ("behaviour", "scenario", "levels", "time_factor"),
    [
        # Levels 6 and 10 put the probes ((0.25, 0.75) L) at cell centres; at 4, 8, 12 cells they lie
        # on element faces, where the Q2 stress jumps (8 cells made the Holzapfel-Ogden reference
        # look unconverged: 6 vs 8 cells 1.53%, 6 vs 10 cells 0.92%; issue 17, generator version 6).
        ("hyperelastic", "indentation", (6, 10), 1),  # elastic: the load path does not change the answer
        ("viscoelastic", "indentation", (6, 10), 2),
        # Biot reference meshes [c, c, 3c]: 5 and 7 put the probes inside cells (4 did not: faces in
        # x and y); MUMPS factorises them (refined_runner).
        ("poroelastic", "indentation", (5, 7), 2),
        ("poroelastic", "uniaxial", (5, 7), 2),
    ],
)
def test_inhomogeneous_scenarios_match_converged_fine_mesh(
    gen: Any, runner: Any, behaviour: str, scenario: str, levels: tuple[int, int], time_factor: int
) -> None:
    """Reference: the same model on two much finer meshes (`levels` cells per axis) with
    `time_factor` times the steps; the two must agree within half the tolerance (the reference is
    converged), and the generator's sample must be within the tolerance of the finer one."""
    tol = float(gen.solver.error_tolerance)
    xs = draws(gen, behaviour, scenario)[:2]
    coarse, fine = (refined_runner(c, time_factor=time_factor) for c in levels)
    for x in xs:
        a, b = coarse.run(x).stress, fine.run(x).stress
        assert rel_err(a, b) <= tol / 2, (x.sample_id, "reference not converged", rel_err(a, b))
        err = rel_err(runner.run(x).stress, b)
        print(
            f"{behaviour} {scenario} sample {x.sample_id} ({x.material_model}): {100 * err:.2f}% "
            f"(reference levels {levels}: {100 * rel_err(a, b):.2f}%)"
        )
        assert err <= tol, (x.sample_id, x.material_model, err)

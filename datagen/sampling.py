"""Draw one sample's inputs (tissue, law, scenario, constants, loads) from the config; no FEniCSx.

Determinism: sample k of the dataset uses `numpy.random.default_rng([seed, k])`, so its inputs do
not depend on which worker or shard computes it, nor on the order of computation.
Behaviours are assigned round-robin (k mod #behaviours) so that every split is balanced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from datagen.spec import BIOT_PARAMS, FIBRE_LAWS, LAW_PARAMS, OGDEN_LAWS, PRONY_PARAMS


@dataclass
class SampleInputs:
    sample_id: int
    behaviour: str
    tissue: str
    material_model: str  # law name, or "linear_biot" for poroelastic
    scenario: str
    ogden_alpha: int | None
    params: dict[str, float] = field(default_factory=dict)  # "<group>.<name>" -> value (units in manifest)


def _draw(rng: np.random.Generator, r: Any) -> float:
    choices = list(r.get("choices") or [])
    if choices:
        return float(choices[int(rng.integers(len(choices)))])
    return float(rng.uniform(float(r["low"]), float(r["high"])))


def draw_sample(data: Any, sample_id: int) -> SampleInputs:
    rng = np.random.default_rng([int(data.seed), int(sample_id)])
    behaviours = list(data.behaviours)
    behaviour = behaviours[sample_id % len(behaviours)]
    tissue = str(data.tissues[int(rng.integers(len(data.tissues)))])
    tc = data.tissue_library[tissue]
    scenario = str(data.scenarios[int(rng.integers(len(data.scenarios)))])
    params: dict[str, float] = {}
    alpha = None
    if behaviour == "poroelastic":
        model = "linear_biot"
        for p in BIOT_PARAMS:
            params[f"biot.{p}"] = _draw(rng, tc.biot[p])
    else:
        laws = sorted(tc.hyperelastic.keys())
        model = (
            laws[int(rng.integers(len(laws)))] if behaviour == "hyperelastic" else str(tc.viscoelastic_law)
        )
        for p in LAW_PARAMS[model]:
            params[f"{model}.{p}"] = _draw(rng, tc.hyperelastic[model][p])
        if model in OGDEN_LAWS:
            alpha = int(params[f"{model}.alpha"])
        if behaviour == "viscoelastic":
            for p in PRONY_PARAMS:
                params[f"prony.{p}"] = _draw(rng, tc.prony[p])
    ld = data.loads
    scale = float(ld.poro_strain_scale) if behaviour == "poroelastic" else 1.0
    if scenario == "uniaxial":
        params["load.stretch"] = 1.0 + scale * (_draw(rng, ld.stretch) - 1.0)
    elif scenario == "simple_shear":
        params["load.shear_strain"] = scale * _draw(rng, ld.shear_strain)
        params["load.load_angle_deg"] = _draw(rng, ld.load_angle_deg)
    elif scenario == "confined_compression":
        params["load.compression_strain"] = scale * _draw(rng, ld.compression_strain)
    elif scenario == "indentation":
        params["load.pressure_kpa"] = scale * _draw(rng, ld.pressure_kpa)
        params["load.load_angle_deg"] = _draw(rng, ld.load_angle_deg)
        m, L = float(ld.patch_centre_margin_mm), float(data.mesh.specimen_size_mm)
        params["load.patch_x_mm"] = float(rng.uniform(m, L - m))
        params["load.patch_y_mm"] = float(rng.uniform(m, L - m))
    if model in FIBRE_LAWS:
        params["load.fibre_angle_deg"] = _draw(rng, ld.fibre_angle_deg)
    sv = data.solver
    if behaviour == "viscoelastic":
        params["load.time_s"] = float(sv.visco_ramp_time_s) + _draw(rng, sv.visco_hold_time_s)
    elif behaviour == "poroelastic":
        mu, nu, k = params["biot.mu"], params["biot.nu"], params["biot.permeability"]
        lam = 2 * mu * nu / (1 - 2 * nu)
        c_v = k * (lam + 2 * mu)  # mm^2/s
        params["load.time_s"] = _draw(rng, sv.poro_time_factor) * float(data.mesh.specimen_size_mm) ** 2 / c_v
    return SampleInputs(sample_id, behaviour, tissue, model, scenario, alpha, params)

"""`python -m datagen.show <dataset_dir> <index> [--split train] [--out PNG]`: look at one sample.

Shards store probe values only, so the viewer re-solves the sample: its inputs are re-drawn from
the dataset's config and seed (`draw_sample(data, sample_id)`, checked equal to the stored
`params`) and solved by the same worker code; the stored probe stresses are compared with the
re-solved ones (the figure states the difference; a dataset from another generator version may
differ). Panels:

1. the deformed specimen (reference cube edges in grey, faces at X + u(X), true scale) coloured by
   the von Mises equivalent of the Cauchy stress (kPa);
2. the von Mises stress on the mid-slice y = L/2 (reference coordinates), with the probes;
3. the six Cauchy stress and Green-Lagrange strain components stored at every probe.

Needs FEniCSx (re-solving); renders with matplotlib's Agg backend.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datagen.dataset import DatasetError, load_split

VOIGT = ["xx", "yy", "zz", "yz", "xz", "xy"]
FACE_GRID = 9  # points per edge of each face of the deformed surface
SLICE_GRID = 61  # points per edge of the mid-slice image
FIGSIZE_IN, DPI = (15.0, 5.0), 110


@dataclass
class Rendered:
    path: Path
    probe_stress_rel_diff: float  # max |re-solved - stored| / max |stored| at the probes
    slice_von_mises_kpa: np.ndarray  # (SLICE_GRID, SLICE_GRID), rows z, columns x
    max_displacement_mm: float


def von_mises(s: np.ndarray) -> np.ndarray:
    """Equivalent stress from Voigt (..., 6): sqrt(3/2 s_dev : s_dev)."""
    xx, yy, zz, yz, xz, xy = (s[..., i] for i in range(6))
    return np.sqrt(0.5 * ((xx - yy) ** 2 + (yy - zz) ** 2 + (zz - xx) ** 2) + 3 * (yz**2 + xz**2 + xy**2))


def _manifest_data(dataset: Path) -> Any:
    import json

    from omegaconf import OmegaConf

    man = json.loads((dataset / "manifest.json").read_text())
    return OmegaConf.create(man["generator_config"]), man


def resolve_fields(data: Any, sample_id: int, stored_params: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Re-solve sample `sample_id`; return callables u(X) (mm) and von Mises(X) (kPa) and the probes."""
    from datagen.compiled import expression
    from datagen.sampling import draw_sample
    from datagen.worker import SampleRunner

    x = draw_sample(data, sample_id)
    for k, v in x.params.items():
        j = names.index(k)
        if not np.isclose(stored_params[j], v, rtol=1e-12, atol=0.0):
            raise DatasetError(
                f"sample {sample_id}: re-drawn {k}={v} != stored {stored_params[j]} (config drift: the "
                "dataset was written by another generator version); regenerate it with `python -m datagen`"
            )
    runner = SampleRunner(data, eager=False)
    res = runner.run(x)
    model = runner.model(x.behaviour, x.material_model, x.ogden_alpha, x.scenario)
    from dolfinx import fem

    from datagen.specimen import locate_probes

    dom = model.sp.domain
    u = model.state.sub(0) if model.mixed else model.state
    s = model.cauchy
    vm_ufl = ((s[0, 0] - s[1, 1]) ** 2 + (s[1, 1] - s[2, 2]) ** 2 + (s[2, 2] - s[0, 0]) ** 2) / 2 + 3 * (
        s[1, 2] ** 2 + s[0, 2] ** 2 + s[0, 1] ** 2
    )
    Q = fem.functionspace(dom, ("DG", 2))
    vm2 = fem.Function(Q)
    vm2.interpolate(expression(vm_ufl, Q.element.interpolation_points, data.solver))

    def at(fn: Any, pts: np.ndarray) -> np.ndarray:
        cells, _ = locate_probes(dom, pts)
        return np.asarray(fn.eval(pts, cells)).reshape(len(pts), -1)

    return {
        "u": lambda p: at(u, p),
        "von_mises": lambda p: np.sqrt(np.maximum(at(vm2, p)[:, 0], 0.0)),
        "stress": res.stress,
        "inputs": x,
    }


def _face_grids(L: float) -> list[np.ndarray]:
    """(n, n, 3) reference points on each of the six cube faces, slightly inside (point location)."""
    t = np.linspace(0.0, L, FACE_GRID)
    a, b = np.meshgrid(t, t, indexing="ij")
    faces = []
    for axis in range(3):
        for c in (0.0, L):
            pts = np.empty((FACE_GRID, FACE_GRID, 3))
            others = [i for i in range(3) if i != axis]
            pts[..., axis], pts[..., others[0]], pts[..., others[1]] = c, a, b
            faces.append(pts)
    return faces


def render(dataset: Path, index: int, split: str, out: Path) -> Rendered:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    arr = load_split(dataset, split)
    n = len(arr["sample_id"])
    if not 0 <= index < n:
        raise DatasetError(f"index {index} out of range: split {split!r} has {n} samples (0..{n - 1})")
    data, man = _manifest_data(dataset)
    L = float(data.mesh.specimen_size_mm)
    pts = arr["probe_points"]
    stress, strain = arr["stress"][index], arr["strain"][index]
    f = resolve_fields(data, int(arr["sample_id"][index]), arr["params"][index], list(arr["param_names"]))
    rel = float(np.max(np.abs(f["stress"] - stress)) / max(np.max(np.abs(stress)), 1e-300))

    faces = _face_grids(L)
    flat = np.concatenate([g.reshape(-1, 3) for g in faces])
    disp = f["u"](flat)
    vm_faces = f["von_mises"](flat)
    t = np.linspace(0.0, L, SLICE_GRID)
    xs, zs = np.meshgrid(t, t, indexing="xy")
    slice_pts = np.stack([xs.ravel(), np.full(xs.size, L / 2), zs.ravel()], axis=1)
    vm_slice = f["von_mises"](slice_pts).reshape(SLICE_GRID, SLICE_GRID)
    vmax = max(float(vm_faces.max()), float(vm_slice.max()), 1e-12)
    norm = colors.Normalize(vmin=0.0, vmax=vmax)
    cmap = plt.get_cmap("viridis")

    fig = plt.figure(figsize=FIGSIZE_IN)
    ax = fig.add_subplot(1, 3, 1, projection="3d")
    k = 0
    for g in faces:
        m = FACE_GRID * FACE_GRID
        X = (g.reshape(-1, 3) + disp[k : k + m]).reshape(FACE_GRID, FACE_GRID, 3)
        v = vm_faces[k : k + m].reshape(FACE_GRID, FACE_GRID)
        k += m
        quads, cols = [], []
        for i in range(FACE_GRID - 1):
            for j in range(FACE_GRID - 1):
                quads.append([X[i, j], X[i + 1, j], X[i + 1, j + 1], X[i, j + 1]])
                cols.append(cmap(norm(v[i : i + 2, j : j + 2].mean())))
        ax.add_collection3d(Poly3DCollection(quads, facecolors=cols, edgecolors="none"))
    for a, b in [((0, 0, 0), (L, 0, 0)), ((0, 0, 0), (0, L, 0)), ((0, 0, 0), (0, 0, L))]:
        for shift in ([0, 0, 0], [0, L, L], [L, 0, L], [L, L, 0]):
            p0, p1 = np.add(a, shift), np.add(b, shift)
            if np.all((p0 >= 0) & (p0 <= L) & (p1 >= 0) & (p1 <= L)):
                ax.plot(*zip(p0, p1), color="grey", lw=0.6, ls="--")
    lo, hi = min(-0.05 * L, disp.min()), max(1.05 * L, L + disp.max())
    ax.set(xlim=(lo, hi), ylim=(lo, hi), zlim=(lo, hi), xlabel="x (mm)", ylabel="y (mm)", zlabel="z (mm)")
    fig.colorbar(
        cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.6, pad=0.12, label="von Mises (kPa)"
    )
    x = f["inputs"]
    ax.set_title(
        f"{split}[{index}] id={arr['sample_id'][index]} {x.tissue} / {x.material_model}\n"
        f"{x.behaviour}, {x.scenario}: deformed (true scale)",
        fontsize=9,
    )

    ax2 = fig.add_subplot(1, 3, 2)
    im = ax2.imshow(vm_slice, origin="lower", extent=(0, L, 0, L), cmap=cmap, norm=norm)
    ax2.scatter(pts[:, 0], pts[:, 2], c="red", s=12, label="probes (all y)")
    ax2.set(
        xlabel="x (mm)", ylabel="z (mm)", title=f"von Mises Cauchy stress on y = {L / 2:g} mm (reference)"
    )
    ax2.legend(fontsize=7, loc="upper right")
    fig.colorbar(im, ax=ax2, shrink=0.8, label="kPa")

    ax3 = fig.add_subplot(2, 3, 3)
    ax4 = fig.add_subplot(2, 3, 6)
    idx = np.arange(len(pts))
    for c in range(6):
        ax3.plot(idx, stress[:, c], marker="o", label=VOIGT[c])
        ax4.plot(idx, strain[:, c], marker="o", label=VOIGT[c])
    ax3.set_ylabel("Cauchy stress (kPa)")
    ax4.set_ylabel("Green-Lagrange strain")
    ax4.set_xlabel("probe index")
    ax3.legend(ncol=6, fontsize=6)
    given = [f"{nm}={v:.4g}" for nm, v in zip(arr["param_names"], arr["params"][index]) if np.isfinite(v)]
    note = (
        f"re-solved vs stored probe stress: max rel diff {rel:.1e} "
        f"(dataset generator v{man.get('generator_version')}); " + "; ".join(given)
    )
    fig.text(0.01, 0.01, note, fontsize=6, wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI)
    plt.close(fig)
    return Rendered(out, rel, vm_slice, float(np.max(np.linalg.norm(disp, axis=1))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m datagen.show", description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("index", type=int)
    ap.add_argument("--split", default="train", choices=["train", "val", "test"])
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    out = a.out or Path(f"sample-{a.split}-{a.index}.png")
    try:
        r = render(a.dataset, a.index, a.split, out)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(r.path)
    if r.probe_stress_rel_diff > 1e-6:
        print(f"warning: re-solved probe stress differs from the stored by {r.probe_stress_rel_diff:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m datagen.show <dataset_dir> <index> [--split train] [--out PNG]`: look at one sample.

Left: the probe points in the reference configuration, coloured by the von Mises equivalent of
the Cauchy stress (kPa). The deformed shape is not drawn: shards store no displacement field.
Right: the six Cauchy stress components and Green-Lagrange strain components at every probe.
Reads only the dataset files (no FEniCSx); renders with matplotlib's Agg backend.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from datagen.dataset import DatasetError, load_split

VOIGT = ["xx", "yy", "zz", "yz", "xz", "xy"]


def von_mises(s: np.ndarray) -> np.ndarray:
    """Equivalent stress from Voigt (..., 6): sqrt(3/2 s_dev : s_dev)."""
    xx, yy, zz, yz, xz, xy = (s[..., i] for i in range(6))
    return np.sqrt(0.5 * ((xx - yy) ** 2 + (yy - zz) ** 2 + (zz - xx) ** 2) + 3 * (yz**2 + xz**2 + xy**2))


def render(dataset: Path, index: int, split: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = load_split(dataset, split)
    n = len(arr["sample_id"])
    if not 0 <= index < n:
        raise DatasetError(f"index {index} out of range: split {split!r} has {n} samples (0..{n - 1})")
    pts = arr["probe_points"]
    stress, strain = arr["stress"][index], arr["strain"][index]
    vm = von_mises(stress)
    fig = plt.figure(figsize=(12, 5))
    ax = fig.add_subplot(1, 2, 1, projection="3d")
    sc = ax.scatter(pts[:, 0], pts[:, 1], pts[:, 2], c=vm, cmap="viridis", s=120, depthshade=False)
    L = float(np.max(pts) + np.min(pts))  # probes are symmetric in the cube [0, L]
    for a, b in [
        ((0, 0, 0), (L, 0, 0)),
        ((0, 0, 0), (0, L, 0)),
        ((0, 0, 0), (0, 0, L)),
        ((L, L, L), (0, L, L)),
        ((L, L, L), (L, 0, L)),
        ((L, L, L), (L, L, 0)),
    ]:
        ax.plot(*zip(a, b), color="grey", lw=0.8)
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    ax.set_zlabel("z (mm)")
    fig.colorbar(sc, ax=ax, shrink=0.7, label="von Mises Cauchy stress (kPa)")
    names = arr["param_names"]
    given = [f"{nm}={v:.4g}" for nm, v in zip(names, arr["params"][index]) if np.isfinite(v)]
    ax.set_title(
        f"{split}[{index}] id={arr['sample_id'][index]} {arr['tissue'][index]} / "
        f"{arr['material_model'][index]}\n{arr['behaviour'][index]}, {arr['scenario'][index]}",
        fontsize=9,
    )
    ax2 = fig.add_subplot(2, 2, 2)
    ax3 = fig.add_subplot(2, 2, 4)
    x = np.arange(len(pts))
    for c in range(6):
        ax2.plot(x, stress[:, c], marker="o", label=VOIGT[c])
        ax3.plot(x, strain[:, c], marker="o", label=VOIGT[c])
    ax2.set_ylabel("Cauchy stress (kPa)")
    ax3.set_ylabel("Green-Lagrange strain")
    ax3.set_xlabel("probe index")
    ax2.legend(ncol=6, fontsize=7)
    fig.text(0.01, 0.01, "; ".join(given), fontsize=6, wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m datagen.show", description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("index", type=int)
    ap.add_argument("--split", default="train", choices=["train", "val", "test"])
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    out = a.out or Path(f"sample-{a.split}-{a.index}.png")
    try:
        print(render(a.dataset, a.index, a.split, out))
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

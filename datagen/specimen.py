"""The specimen: a cube [0, L]^3 of hexahedra, its faces, and the fixed probe points.

Hazard: import order. `dolfinx_solver` must be imported before dolfinx/petsc4py, and mpi4py first.
Everything here lives on MPI.COMM_SELF: each worker process solves whole samples serially.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dolfinx_solver  # noqa: F401  (must precede dolfinx/petsc4py)
import numpy as np
import ufl
from dolfinx import fem, mesh
from mpi4py import MPI

FACES = {  # name -> (axis, coordinate as a fraction of L)
    "x0": (0, 0.0),
    "x1": (0, 1.0),
    "y0": (1, 0.0),
    "y1": (1, 1.0),
    "z0": (2, 0.0),
    "z1": (2, 1.0),
}
FACE_TAGS = {name: i + 1 for i, name in enumerate(FACES)}
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))  # xx, yy, zz, yz, xz, xy


def voigt(T: Any) -> Any:
    return ufl.as_vector([T[i, j] for i, j in VOIGT])


def probe_points(size_mm: float, probes_per_axis: int) -> np.ndarray:
    """(P, 3) reference coordinates (mm) at fractions (i + 1/2)/n of the cube edge, x fastest."""
    f = (np.arange(probes_per_axis) + 0.5) / probes_per_axis * size_mm
    zz, yy, xx = np.meshgrid(f, f, f, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)


@dataclass
class Specimen:
    domain: Any
    size_mm: float
    facet_tags: Any
    probe_xyz: np.ndarray  # (P, 3) mm, reference configuration
    probe_cells: np.ndarray  # (P,) int32
    probe_ref: np.ndarray  # (P, 3) reference-cell coordinates of each probe
    all_cells: np.ndarray

    def facets(self, face: str) -> np.ndarray:
        return self.facet_tags.find(FACE_TAGS[face])

    def eval_at_probes(self, expr: fem.Expression, ncomp: int) -> np.ndarray:
        """Evaluate an Expression built on `probe_ref` at each probe's own point: (P, ncomp)."""
        vals = expr.eval(self.domain, self.probe_cells)  # (P cells, P points * ncomp)
        P = len(self.probe_cells)
        vals = vals.reshape(P, P, ncomp)
        return vals[np.arange(P), np.arange(P), :].copy()


def build_specimen(
    size_mm: float,
    cells_per_axis: int,
    probes_per_axis: int,
    *,
    cells: tuple[int, int, int] | None = None,
    probes: np.ndarray | None = None,
    z_grading: float = 1.0,
) -> Specimen:
    """Cube of edge `size_mm`; `cells`/`probes` override the uniform division/probe grid (tests).

    `z_grading` > 1 grades the cell layers in z geometrically towards the top face z = L: the
    bottom layer is `z_grading` times as thick as the top one (the Biot model's drained face,
    where the consolidation boundary layer lives). The cells stay axis-aligned boxes.
    """
    n = cells_per_axis
    cells = cells or (n, n, n)
    domain = mesh.create_box(
        MPI.COMM_SELF, [np.zeros(3), np.full(3, size_mm)], list(cells), mesh.CellType.hexahedron
    )
    if z_grading != 1.0:
        nz = cells[2]
        uniform = np.linspace(0.0, size_mm, nz + 1)
        domain.geometry.x[:, 2] = np.interp(
            domain.geometry.x[:, 2], uniform, graded_nodes(size_mm, nz, z_grading)
        )
    fdim = domain.topology.dim - 1
    domain.topology.create_connectivity(fdim, domain.topology.dim)
    ents, tags = [], []
    for name, (axis, frac) in FACES.items():
        f = mesh.locate_entities_boundary(
            domain, fdim, lambda x, a=axis, c=frac * size_mm: np.isclose(x[a], c)
        )
        ents.append(f)
        tags.append(np.full(len(f), FACE_TAGS[name], dtype=np.int32))
    ents_a = np.concatenate(ents)
    order = np.argsort(ents_a, kind="stable")
    # A facet lies on exactly one face of a cube, so entities are unique.
    facet_tags = mesh.meshtags(domain, fdim, ents_a[order], np.concatenate(tags)[order])
    pts = probe_points(size_mm, probes_per_axis) if probes is None else np.asarray(probes, dtype=float)
    cells, refs = locate_probes(domain, pts)
    num_cells = domain.topology.index_map(domain.topology.dim).size_local
    return Specimen(domain, size_mm, facet_tags, pts, cells, refs, np.arange(num_cells, dtype=np.int32))


def graded_nodes(size_mm: float, n: int, grading: float) -> np.ndarray:
    """n + 1 node coordinates on [0, size_mm], layer thickness shrinking geometrically by a total
    factor `grading` from the first layer to the last (grading 1: uniform)."""
    if n == 1 or grading == 1.0:
        return np.linspace(0.0, size_mm, n + 1)
    h = grading ** (-np.arange(n) / (n - 1))
    return np.concatenate([[0.0], np.cumsum(h) / h.sum() * size_mm])


def locate_probes(domain: Any, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cells, reference-cell coordinates) of points (P, 3) in `domain`; raises if one lies outside."""
    from dolfinx import geometry

    tree = geometry.bb_tree(domain, domain.topology.dim)
    cand = geometry.compute_collisions_points(tree, pts)
    coll = geometry.compute_colliding_cells(domain, cand, pts)
    cmap = domain.geometry.cmaps[0]
    cells = np.empty(len(pts), dtype=np.int32)
    refs = np.empty((len(pts), 3))
    for i, p in enumerate(pts):
        links = coll.links(i)
        if len(links) == 0:
            raise ValueError(f"probe point {p} lies outside the specimen")
        c = int(links[0])
        cells[i] = c
        coords = domain.geometry.x[domain.geometry.dofmaps[0][c]]
        refs[i] = cmap.pull_back(p.reshape(1, 3), coords)[0]
    return cells, refs

"""The synthetic grid as an object: labels, holes, interpolation, label sampling.

Labels are (Teff [K], log g [dex], [M/H] [dex]) on the axes of the paper's Table 1; v sin i is
added later by broadening (see :mod:`paper_lib.synthetic.broadening`). Of the 2002 Table-1
nodes, 231 have no Castelli–Kurucz model (hot, low-gravity corner); a point is interpolated
only where every node of its cell exists.

Two interpolations (:data:`INTERPOLATIONS`): ``"linear"``, trilinear between the 8 nodes of
the point's cell (the training spectra), and ``"cubic"``, a Catmull–Rom spline along each axis
through 4 nodes (64 in all), which the grid fit uses: on the `cpu` grid a node left out and
interpolated from its neighbours two steps away comes back 1.6–3× closer with it than with
the linear one (``benchmarks/grid_interpolation.py``). At an axis's end the missing outer node
is extrapolated linearly from the two inside it; a point whose 64 nodes are not all present
(next to the grid's hole) is interpolated trilinearly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..labels import GRID_LABELS, table1_axis
from ..profiles import Profile
from .build import GridPhysicsMismatch, check_grid_physics, default_grid_file

AXIS_NAMES = GRID_LABELS
INTERPOLATIONS = ("linear", "cubic")  # trilinear; Catmull–Rom along each axis (module doc)


class OutsideGridError(ValueError):
    """A label point outside the grid or in one of its holes."""


class Grid:
    """Normalised spectra on the Table-1 nodes that exist.

    Attributes: ``wavelength`` (n_wave,) air Å; ``labels`` (n_nodes, 3); ``flux``
    (n_nodes, n_wave) float32; ``axes`` the three Table-1 axes; ``row_of`` an int array
    (26, 11, 7) giving the row of each node in ``flux`` or −1 where the node is absent.
    """

    def __init__(self, wavelength, labels, flux, *, source: str | None = None):
        self.wavelength = np.asarray(wavelength, dtype=np.float64)
        self.labels = np.asarray(labels, dtype=np.float64).reshape(-1, 3)
        self.flux = np.asarray(flux, dtype=np.float32)
        self.source = source
        if self.flux.shape != (len(self.labels), len(self.wavelength)):
            raise ValueError(f"flux shape {self.flux.shape} does not match "
                             f"{len(self.labels)} labels × {len(self.wavelength)} wavelengths")
        if not np.all(np.isfinite(self.flux)):
            raise ValueError("grid flux contains NaN or inf")
        self.axes = [table1_axis(n) for n in AXIS_NAMES]
        self.row_of = -np.ones([len(a) for a in self.axes], dtype=np.int64)
        for row, label in enumerate(self.labels):
            idx = [self._axis_index(axis, value, name)
                   for axis, value, name in zip(self.axes, label, AXIS_NAMES)]
            self.row_of[tuple(idx)] = row

    @staticmethod
    def _axis_index(axis, value, name) -> int:
        hits = np.flatnonzero(np.isclose(axis, value))
        if hits.size != 1:
            raise ValueError(f"{name}={value} is not a Table-1 node value ({axis[0]}…{axis[-1]})")
        return int(hits[0])

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_fits(cls, path) -> "Grid":
        """Read a grid file (the layout of ``reference_grid.fits`` and of our builds)."""
        from astropy.io import fits

        path = Path(path)
        try:
            with fits.open(path) as hdul:
                flux = np.asarray(hdul[0].data, dtype=np.float32)
                wave = np.asarray(hdul["WAVE"].data, dtype=np.float64)
                table = hdul["LABELS"].data
                labels = np.column_stack([table[n] for n in AXIS_NAMES]).astype(np.float64)
        except (OSError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: not a readable grid file ({error})") from error
        return cls(wave, labels, flux, source=str(path))

    # ------------------------------------------------------------------ nodes
    def has_node(self, teff: float, logg: float, mh: float) -> bool:
        try:
            idx = [self._axis_index(a, v, n) for a, v, n in zip(self.axes, (teff, logg, mh), AXIS_NAMES)]
        except ValueError:
            return False
        return bool(self.row_of[tuple(idx)] >= 0)

    def node_flux(self, teff: float, logg: float, mh: float) -> np.ndarray:
        """Flux of one node; KeyError naming the node if it is not in this grid."""
        idx = [self._axis_index(a, v, n) for a, v, n in zip(self.axes, (teff, logg, mh), AXIS_NAMES)]
        row = self.row_of[tuple(idx)]
        if row < 0:
            raise KeyError(f"node Teff={teff:g} K, log g={logg:g}, [M/H]={mh:+g} is not in this grid")
        return self.flux[row]

    def missing_nodes(self) -> np.ndarray:
        """Table-1 nodes absent from this grid, (n_missing, 3)."""
        idx = np.argwhere(self.row_of < 0)
        return np.column_stack([self.axes[d][idx[:, d]] for d in range(3)])

    def valid_cells(self) -> np.ndarray:
        """Boolean (25, 10, 6): True where all 8 corners of the grid cell exist."""
        p = self.row_of >= 0
        return (p[:-1, :-1, :-1] & p[1:, :-1, :-1] & p[:-1, 1:, :-1] & p[:-1, :-1, 1:]
                & p[1:, 1:, :-1] & p[1:, :-1, 1:] & p[:-1, 1:, 1:] & p[1:, 1:, 1:])

    # ------------------------------------------------------------------ interpolation
    def _cells(self, points: np.ndarray):
        """Lower-corner indices (N, 3) and fractions (N, 3) of each point's cell."""
        lower = np.empty(points.shape, dtype=np.int64)
        frac = np.empty(points.shape)
        for d, axis in enumerate(self.axes):
            x = points[:, d]
            outside = (x < axis[0] - 1e-9) | (x > axis[-1] + 1e-9)
            if outside.any():
                bad = points[np.argmax(outside)]
                raise OutsideGridError(
                    f"label point (Teff={bad[0]:g}, log g={bad[1]:g}, [M/H]={bad[2]:+g}) is outside "
                    f"the grid: {AXIS_NAMES[d]} must lie in [{axis[0]:g}, {axis[-1]:g}]")
            step = axis[1] - axis[0]
            i = np.clip(np.floor((x - axis[0]) / step + 1e-9).astype(np.int64), 0, len(axis) - 2)
            lower[:, d] = i
            frac[:, d] = np.clip((x - axis[i]) / step, 0.0, 1.0)
        return lower, frac

    def corner_weights(self, points) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the 8 surrounding nodes and their trilinear weights for each point.

        ``points``: (N, 3) (Teff K, log g dex, [M/H] dex). Returns ``(rows, weights)``, both
        (N, 8): ``rows`` index ``self.flux`` (a corner of zero weight may be a missing node,
        then its row is 0), ``weights`` sum to 1. Raises :class:`OutsideGridError` naming the
        point (and the missing nodes) if it is outside the grid or a node carrying weight is
        absent.
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if not np.all(np.isfinite(points)):
            raise OutsideGridError("label points contain NaN or inf")
        lower, frac = self._cells(points)
        rows = np.zeros((len(points), 8), dtype=np.int64)
        weights = np.zeros((len(points), 8))
        for k, corner in enumerate(np.ndindex(2, 2, 2)):
            c = np.array(corner)
            weight = np.prod(np.where(c == 1, frac, 1.0 - frac), axis=1)
            idx = lower + c
            corner_rows = self.row_of[idx[:, 0], idx[:, 1], idx[:, 2]]
            needed = weight > 1e-12
            absent = needed & (corner_rows < 0)
            if absent.any():
                self._raise_hole(points[np.argmax(absent)])
            rows[needed, k] = corner_rows[needed]
            weights[needed, k] = weight[needed]
        return rows, weights

    def cubic_weights(self, points) -> tuple[np.ndarray, np.ndarray]:
        """Rows of the 4 × 4 × 4 nodes around each point and their Catmull–Rom weights, both
        (N, 64); weights sum to 1 (some are negative). Along an axis whose outer node is off
        the grid, that node is the linear extrapolation of the two inside it; a point whose
        stencil holds a missing node gets the trilinear weights (:meth:`corner_weights`) in
        its first 8 columns. Errors as :meth:`corner_weights`."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        linear_rows, linear_weights = self.corner_weights(points)  # checks the point
        lower, frac = self._cells(points)
        axis_weights, axis_index = [], []
        for d, axis in enumerate(self.axes):
            index = lower[:, d, None] + np.arange(-1, 3)
            weights = catmull_rom_weights(frac[:, d])
            low, high = index[:, 0] < 0, index[:, 3] >= len(axis)
            weights[low] += weights[low, :1] * np.array([-1.0, 2.0, -1.0, 0.0])
            weights[high] += weights[high, 3:] * np.array([0.0, -1.0, 2.0, -1.0])
            weights[low, 0] = weights[high, 3] = 0.0
            axis_weights.append(weights)
            axis_index.append(np.clip(index, 0, len(axis) - 1))
        weights = np.einsum("na,nb,nc->nabc", *axis_weights).reshape(len(points), 64)
        rows = self.row_of[axis_index[0][:, :, None, None], axis_index[1][:, None, :, None],
                           axis_index[2][:, None, None, :]].reshape(len(points), 64)
        weights[np.abs(weights) < 1e-12] = 0.0
        hole = np.any((rows < 0) & (weights != 0.0), axis=1)
        rows[hole], weights[hole] = 0, 0.0
        rows[hole, :8], weights[hole, :8] = linear_rows[hole], linear_weights[hole]
        return np.where(weights != 0.0, rows, 0), weights

    def stencil_weights(self, points, interpolation: str = "linear"):
        """:meth:`corner_weights` (``"linear"``) or :meth:`cubic_weights` (``"cubic"``)."""
        check_interpolation(interpolation)
        return (self.corner_weights if interpolation == "linear" else self.cubic_weights)(points)

    def interpolate(self, points, interpolation: str = "linear") -> np.ndarray:
        """Flux interpolated between the nodes: trilinear (``"linear"``, the 8 nodes of the
        point's cell) or ``"cubic"`` (:meth:`cubic_weights`).

        ``points``: (N, 3) or (3,) (Teff K, log g dex, [M/H] dex). Returns (N, n_wave) float32
        (or (n_wave,)). Exact at nodes. Raises :class:`OutsideGridError` naming the point and the
        missing nodes if the point is outside the grid or a node of its cell is absent.
        """
        single = np.ndim(points) == 1
        rows, weights = self.stencil_weights(points, interpolation)
        out = np.zeros((len(rows), self.flux.shape[1]), dtype=np.float32)
        for k in range(rows.shape[1]):
            use = weights[:, k] != 0
            out[use] += (weights[use, k, None] * self.flux[rows[use, k]]).astype(np.float32)
        return out[0] if single else out

    def _raise_hole(self, point) -> None:
        lower, frac = self._cells(point[None, :])
        missing = []
        for corner in np.ndindex(2, 2, 2):
            c = np.array(corner)
            idx = lower[0] + c
            weight = np.prod(np.where(c == 1, frac[0], 1.0 - frac[0]))
            if weight > 1e-12 and self.row_of[tuple(idx)] < 0:
                missing.append(tuple(float(self.axes[d][idx[d]]) for d in range(3)))
        names = ", ".join(f"({t:g}, {g:g}, {m:+g})" for t, g, m in missing)
        raise OutsideGridError(
            f"label point (Teff={point[0]:g}, log g={point[1]:g}, [M/H]={point[2]:+g}) lies in a "
            f"hole of the grid: missing node(s) {names}")

    # ------------------------------------------------------------------ sampling
    def bounds(self, box: dict | None = None, teff_range=None) -> np.ndarray:
        """(3, 2) sampling bounds: the grid's axes, narrowed by ``box`` and ``teff_range``."""
        bounds = np.array([[a[0], a[-1]] for a in self.axes], dtype=np.float64)
        limits = dict(box or {})
        if teff_range is not None:
            limits["teff"] = teff_range
        for name, (lo, hi) in limits.items():
            if name not in AXIS_NAMES:
                continue
            d = AXIS_NAMES.index(name)
            bounds[d] = [max(bounds[d, 0], lo), min(bounds[d, 1], hi)]
            if bounds[d, 0] >= bounds[d, 1]:
                raise OutsideGridError(f"{name} range {lo}..{hi} does not overlap the grid")
        return bounds

    def sample_labels(self, n: int, rng: np.random.Generator, box: dict | None = None,
                      teff_range=None) -> np.ndarray:
        """``n`` labels (n, 3) uniform over the valid region (cells with all 8 nodes) ∩ box."""
        bounds = self.bounds(box, teff_range)
        valid = self.valid_cells()
        out = np.empty((0, 3))
        for _ in range(1000):
            draw = rng.uniform(bounds[:, 0], bounds[:, 1], size=(max(2 * n, 16), 3))
            lower, _ = self._cells(draw)
            draw = draw[valid[lower[:, 0], lower[:, 1], lower[:, 2]]]
            out = np.concatenate([out, draw])[:n]
            if len(out) == n:
                return out
        raise OutsideGridError(f"no valid grid cell inside the bounds {bounds.tolist()}")


def check_interpolation(interpolation: str) -> str:
    """``interpolation`` if it is one of :data:`INTERPOLATIONS`, else ValueError naming them."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}; use one of {INTERPOLATIONS}")
    return interpolation


def catmull_rom_weights(fraction) -> np.ndarray:
    """Weights (N, 4) of the nodes at −1, 0, 1, 2 steps for points ``fraction`` (N,) of a step
    past node 0: the Catmull–Rom spline (cubic, C¹, exact for quadratics on even steps)."""
    t = np.asarray(fraction, dtype=np.float64)[:, None]
    return np.hstack([(-t**3 + 2 * t**2 - t) / 2, (3 * t**3 - 5 * t**2 + 2) / 2,
                      (-3 * t**3 + 4 * t**2 + t) / 2, (t**3 - t**2) / 2])


def load_grid(profile: Profile) -> Grid:
    """The grid of a profile, built by notebook 01 (``python -m paper_lib synth``)."""
    path = default_grid_file(profile.grid_nodes)
    build = f"`python -m paper_lib synth --profile {profile.name}`"
    hint = (" (or point PAPER_LIB_GRID at an existing full grid of this code's physics)"
            if profile.grid_nodes == "full" else "")
    if not path.exists():
        raise FileNotFoundError(
            f"no grid for profile {profile.name!r} at {path}. Build it with notebook "
            f"01_data_generation or {build}{hint}.")
    try:
        check_grid_physics(path)
    except GridPhysicsMismatch:
        raise GridPhysicsMismatch(f"the grid {path} of profile {profile.name!r} was made with other "
                                  f"physics than this code's; rebuild it with {build}{hint}"
                                  ) from None
    return Grid.from_fits(path)

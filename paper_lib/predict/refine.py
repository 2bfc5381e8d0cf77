"""A classical least-squares fit of the synthetic grid around the network's answer (opt-in).

``predict --refine --grid FILE`` starts from the network's answer and fits the noise-free
synthetic image (the grid interpolated by a Catmull–Rom spline,
:class:`~.forward.GridRenderer`, normalised like a real spectrum) to the real image over the
pixels that hold data, with the labels a user knows held at their values: the emulator fit's
Levenberg–Marquardt (:func:`~.fit.fit_batch`, star by star) in the largest box of complete grid
cells around the start (:func:`fit_bounds`), so a grid fit and an emulator fit of a star differ
only in the model. It is what a spectroscopist would run by hand, and it shares every
systematic of the synthesis with the network (the same grid), so its covariance adds the
systematic one of the physics variants to the fit's own. A fit that ends at a bound of its
box, or with a σ as wide as the box, says nothing (:meth:`~.fit.Refined.problem`): the
network's answer stands, flagged ``refine_failed``.

Needs the profile's grid (``python -m paper_lib synth --profile cpu``) or a grid file.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..labels import VSINI_RANGE
from .fit import MAX_ITERATIONS, Refined, fit_batch, held_labels
from .forward import GridRenderer
from .known import KnownLabel

FIT_REACH_CELLS = 3  # grid cells the fit may move from the start, each way
START_REACH_STEPS = 0.5  # a start this far (× the axis step) outside the grid is moved onto it


class GridRefiner:
    """``predict --refine --grid``: :func:`refine` on the grid, star by star (method "refined")."""

    method = "refined"

    def __init__(self, grid, **options):
        self.render = GridRenderer(grid, **options)

    def fit(self, images, masks, starts, known=()) -> list:
        """(Refined or None, problem or None) of each image (n, 8, 4096) from ``starts`` (n, 4)."""
        from ..synthetic.grid import OutsideGridError

        out = []
        for image, mask, start in zip(images, masks, starts):
            try:
                refined = refine(image, mask, start, self.render, known)
            except OutsideGridError as error:
                out.append((None, str(error)))
                continue
            problem = refined.problem()  # the fit says nothing: the network's answer stands
            out.append((None, problem) if problem else (refined, None))
        return out


def onto_grid(grid, start) -> np.ndarray:
    """``start`` (4,) with Teff, log g and [M/H] moved onto the grid's axes where they lie
    outside by at most :data:`START_REACH_STEPS` of a step (a network's answer a little past
    the grid's edge, e.g. [M/H] −2.53 for a grid ending at −2.5); farther out they stay, and
    :func:`fit_bounds` says so."""
    point = np.array(start, dtype=np.float64)
    for d, axis in enumerate(grid.axes):
        reach = START_REACH_STEPS * (axis[1] - axis[0])
        if axis[0] - reach <= point[d] <= axis[-1] + reach:
            point[d] = np.clip(point[d], axis[0], axis[-1])
    return point


def fit_bounds(grid, start, reach: int = FIT_REACH_CELLS) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper label bounds (4,) of the fit: the largest box of complete grid cells
    (all 8 nodes present) around ``start``'s cell, at most ``reach`` cells each way, and the
    v sin i range. Raises OutsideGridError if ``start`` is not in a complete cell."""
    from ..synthetic.grid import OutsideGridError

    point = np.asarray(start, dtype=np.float64)[:3]
    lower_index, _ = grid._cells(point[None])
    valid = grid.valid_cells()
    lo, hi = lower_index[0].copy(), lower_index[0].copy()
    if not valid[tuple(lo)]:
        raise OutsideGridError(f"({point[0]:g} K, {point[1]:g}, {point[2]:+g}) lies in a hole "
                               f"of the grid: no complete cell to refine in")
    for _ in range(reach):
        for d in range(3):
            for step in (-1, +1):  # grow the box by one cell below, then above
                trial_lo, trial_hi = lo.copy(), hi.copy()
                (trial_lo if step < 0 else trial_hi)[d] += step
                if trial_lo[d] < 0 or trial_hi[d] >= valid.shape[d]:
                    continue
                block = valid[trial_lo[0]:trial_hi[0] + 1, trial_lo[1]:trial_hi[1] + 1,
                              trial_lo[2]:trial_hi[2] + 1]
                if block.all():
                    lo, hi = trial_lo, trial_hi
    lower = [grid.axes[d][lo[d]] for d in range(3)] + [VSINI_RANGE[0]]
    upper = [grid.axes[d][hi[d] + 1] for d in range(3)] + [VSINI_RANGE[1]]
    return np.array(lower, dtype=np.float64), np.array(upper, dtype=np.float64)


def refine(image, mask, start, render: GridRenderer, known: list[KnownLabel] = (), *,
           max_iterations: int = MAX_ITERATIONS) -> Refined:
    """Least-squares labels (4,) of the normalised ``image`` (8, 4096) over ``mask`` (True =
    data), starting at ``start`` (4,) physical (:func:`onto_grid`), with the ``known`` labels
    held at their values: :func:`~.fit.fit_batch` on the grid within :func:`fit_bounds`.

    The covariance is the fit's (the Jacobian's, scaled by the residual variance: the pixel
    error is the synthetic gap, not the photon noise) plus each known label's σ carried
    through the fit's sensitivity of the free labels to it. The result carries the box and the
    held labels (:meth:`~.fit.Refined.problem`). Raises OutsideGridError for a start outside
    the grid or in its hole, or a known label outside the box.
    """
    start = onto_grid(render.grid, start)
    lower, upper = fit_bounds(render.grid, start)
    held = held_labels(known, lower, upper, "the complete grid cells around the answer")
    fitted = fit_batch(np.asarray(image)[None], np.asarray(mask)[None], [start], render, known,
                       bounds=(lower, upper), max_iterations=max_iterations)[0]
    return dataclasses.replace(fitted, lower=lower, upper=upper, held=tuple(sorted(held)))


REBUILD = "build the grid with python -m paper_lib synth --profile <profile>"


def check_grid_file(path) -> None:
    """ValueError unless the grid file ``path`` records the physics id of this code (the grid
    the networks were trained on carries it: FITS header PHYSICS, or its manifest) and air
    wavelengths (its WAVE extension's BUNIT)."""
    from ..synthetic.turbospectrum import physics_id

    found, medium = grid_record(path)
    if found != physics_id():
        raise ValueError(f"grid {path} records physics id {found!r}, the networks' is "
                         f"{physics_id()!r}: refining on other physics would mix two models of "
                         f"the star; {REBUILD}")
    if "vacuum" in medium.lower():
        raise ValueError(f"grid {path} has vacuum wavelengths ({medium!r}); the networks' are "
                         f"in air: {REBUILD}")


def check_grid_wavelengths(grid) -> None:
    """ValueError unless ``grid``'s wavelengths are this code's synthesis wavelengths (the same
    coverage and sampling, no shift)."""
    from ..synthetic.runner import WAVE_RANGE, grid_wavelengths

    wave = np.asarray(grid.wavelength, dtype=np.float64)
    expected = grid_wavelengths()
    if wave.shape != expected.shape or not np.allclose(wave, expected, rtol=0, atol=1e-6):
        raise ValueError(f"grid {getattr(grid, 'source', '')} covers {wave[0]:.2f}–"
                         f"{wave[-1]:.2f} Å in {wave.size} points, not the networks' "
                         f"{WAVE_RANGE[0]:g}–{WAVE_RANGE[1]:g} Å in {expected.size} (other "
                         f"coverage, sampling or a shift): {REBUILD}")


def grid_record(path) -> tuple[str | None, str]:
    """(physics id, wavelength medium) of a grid file: the FITS header PHYSICS (else its
    manifest's physics_id; None if neither) and the WAVE extension's BUNIT."""
    from astropy.io import fits

    from ..synthetic.build import read_manifest

    with fits.open(path) as hdul:
        found = hdul[0].header.get("PHYSICS")
        medium = str(hdul["WAVE"].header.get("BUNIT", ""))
    if found is None:
        found = (read_manifest(path) or {}).get("physics_id")
    return found, medium

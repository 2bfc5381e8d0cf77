"""A classical least-squares fit of the synthetic grid around the network's answer (opt-in).

``predict --refine`` starts from the network's answer and fits the noise-free synthetic image
(:meth:`~paper_lib.echelle.generator.SpectrumGenerator.render_labels`, normalised like a real
spectrum) to the real image over the pixels that hold data, with the labels
a user knows held at their values (:mod:`paper_lib.predict.known`): a trust-region
least-squares fit with bounds
(``scipy.optimize.least_squares``), the Jacobian by finite differences rendered in one batch.
It is what a spectroscopist would run by hand, and it shares every systematic of the synthesis
with the network (the same grid), so its covariance adds the systematic one of the physics
variants to the fit's own.

Needs the profile's grid (``python -m paper_lib synth --profile cpu``) or a grid file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..labels import LABEL_NAMES, VSINI_RANGE
from .known import KnownLabel

DERIVATIVE_STEPS = np.array([20.0, 0.02, 0.01, 0.2])  # K, dex, dex, km/s
FIT_REACH_CELLS = 3  # grid cells the fit may move from the start, each way
BOUND_TOLERANCE = 1e-3  # a label this close (× the fit's range) to a bound ended "at" it
MAX_SIGMA_OF_BOX = 0.5  # a fit σ above this × the fit's range of its label says nothing
# between the nodes the grid fit's spectra are a Catmull–Rom spline, not trilinear: the linear
# one's kinks at every node put minima there, and it is 1.6–3× farther from left-out nodes
# (paper_lib.synthetic.grid; benchmarks/grid_interpolation.py)
GRID_FIT_INTERPOLATION = "cubic"


@dataclass
class Refined:
    """Result of a least-squares fit (:func:`refine`, :func:`~.fit.fit_batch`): labels (4,), the
    fit's covariance (4, 4), the RMS of the residual over the fitted pixels, the number of
    image renders, whether it converged, the free labels it left at a bound of its box, and
    (grid fits) the fit's label bounds (4,) each (:func:`fit_bounds`) and the held labels."""

    labels: np.ndarray
    cov: np.ndarray
    rms: float
    renders: int
    converged: bool
    at_bound: tuple = ()
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    held: tuple = ()  # indices of the labels held at known values

    def problem(self) -> str | None:
        """Why the fit is not to be trusted, or None: a free label ended at a bound of the fit
        (v sin i at 0 is allowed: slow rotators are common), or a σ that is not finite or
        not smaller than MAX_SIGMA_OF_BOX × the fit's range of its label (free labels only).
        Fits without stored bounds (the emulator's: ``at_bound``) have none of this check."""
        if self.lower is None or self.upper is None:
            return None
        sigma = np.sqrt(np.clip(np.diag(self.cov), 0.0, None))
        width = self.upper - self.lower
        for i, name in enumerate(LABEL_NAMES):
            if i in self.held:
                continue
            if not (np.isfinite(self.cov[i, i]) and sigma[i] < MAX_SIGMA_OF_BOX * width[i]):
                return f"σ({name}) = {sigma[i]:.3g} is not finite and small"
            at_low = name != "vsini" and self.labels[i] <= self.lower[i] + BOUND_TOLERANCE * width[i]
            at_high = self.labels[i] >= self.upper[i] - BOUND_TOLERANCE * width[i]
            if at_low or at_high:
                return f"{name} = {self.labels[i]:.4g} ended at a bound of the fit"
        return None


class Renderer:
    """Noise-free normalised images of the grid at labels (n, 4), with a render count;
    ``pad_with_continuum`` for grids narrower than the orders (the reference grid);
    ``interpolation`` between the nodes (:data:`GRID_FIT_INTERPOLATION` by default)."""

    def __init__(self, grid, *, pad_with_continuum: bool = False,
                 interpolation: str = GRID_FIT_INTERPOLATION):
        from ..echelle.generator import SpectrumGenerator

        self.grid = grid
        self.generator = SpectrumGenerator(grid, snr=1.0, seed=0, interpolation=interpolation,
                                           pad_with_continuum=pad_with_continuum)
        self.renders = 0

    def __call__(self, labels) -> np.ndarray:
        from ..echelle.continuum import normalise_orders

        labels = np.atleast_2d(np.asarray(labels, dtype=np.float64))
        self.renders += len(labels)
        return normalise_orders(self.generator.render_labels(labels).numpy())


class GridRefiner:
    """``predict --refine --grid``: :func:`refine` on the grid, star by star (method "refined")."""

    method = "refined"

    def __init__(self, grid, **options):
        self.render = Renderer(grid, **options)

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


def refine(image, mask, start, render: Renderer, known: list[KnownLabel] = (), *,
           max_renders: int = 200) -> Refined:
    """Least-squares labels (4,) of the normalised ``image`` (8, 4096) over ``mask`` (True =
    data), starting at ``start`` (4,) physical, with the ``known`` labels held at their values.

    The covariance is the fit's (the Jacobian's, scaled by the residual variance: the pixel
    error is the synthetic gap, not the photon noise) plus each known label's σ carried
    through the fit's sensitivity of the free labels to it. Raises ValueError for a start
    outside the grid.
    """
    from scipy.optimize import least_squares

    lower, upper = fit_bounds(render.grid, start)
    held = {LABEL_NAMES.index(k.name): k for k in known}
    free = np.array([i for i in range(len(LABEL_NAMES)) if i not in held])
    x_full = np.clip(np.asarray(start, dtype=np.float64), lower, upper)
    for i, k in held.items():
        if not lower[i] <= k.value <= upper[i]:
            from ..synthetic.grid import OutsideGridError

            raise OutsideGridError(f"{k}: outside the complete grid cells around the answer "
                                   f"({k.name} {lower[i]:g} to {upper[i]:g})")
        x_full[i] = k.value
    data = np.asarray(image, dtype=np.float64)[mask]

    def full(u):
        x = x_full.copy()
        x[free] = np.clip(u * DERIVATIVE_STEPS[free], lower[free], upper[free])
        return x

    def fun(u):
        return data - render(full(u)[None])[0][mask]

    last = {}  # the latest Jacobian over all four labels (pixels, 4), for the covariance

    def jac(u):  # forward differences (backward at the upper bound), one batched render
        x = full(u)
        steps = difference_steps(x, upper)
        points = np.vstack([x, x + np.diag(steps)])
        images = render(points)[:, mask]
        last["all"] = -(images[1:] - images[0][None]).T / steps  # d residual / d label
        return last["all"][:, free] * DERIVATIVE_STEPS[free]

    u0 = x_full[free] / DERIVATIVE_STEPS[free]
    result = least_squares(fun, u0, jac=jac, bounds=(lower[free] / DERIVATIVE_STEPS[free],
                                                     upper[free] / DERIVATIVE_STEPS[free]),
                           method="trf", max_nfev=max_renders // 5)
    jac(result.x)
    return Refined(full(result.x), fit_covariance(last["all"], free, held, result.fun),
                   float(np.sqrt(np.mean(result.fun ** 2))), render.renders, bool(result.success),
                   lower=lower, upper=upper, held=tuple(sorted(held)))


def difference_steps(x, upper) -> np.ndarray:
    """The finite-difference step of each label at ``x`` (..., 4): :data:`DERIVATIVE_STEPS`
    forward, backward where a forward step would pass ``upper`` (4,)."""
    return np.where(np.asarray(x) + DERIVATIVE_STEPS <= upper, DERIVATIVE_STEPS, -DERIVATIVE_STEPS)


def fit_covariance(jacobian, free, held: dict, residual) -> np.ndarray:
    """(4, 4) covariance of the refined labels: free labels from the Jacobian (pixels, 4)
    scaled by the residual variance, held labels their σ², propagated into the free ones."""
    return covariance_from_normal(jacobian.T @ jacobian, free, held, float(np.mean(residual ** 2)))


def covariance_from_normal(normal, free, held: dict, variance: float) -> np.ndarray:
    """:func:`fit_covariance` from the normal matrix JᵀJ (4, 4) and the residual variance."""
    free = np.asarray(free)
    inverse = np.linalg.pinv(normal[np.ix_(free, free)])
    cov = np.zeros(normal.shape)
    cov[np.ix_(free, free)] = inverse * variance
    if held:
        index = np.array(sorted(held))
        known_cov = np.diag([held[i].sigma ** 2 for i in index])
        sensitivity = -inverse @ normal[np.ix_(free, index)]  # d free / d held
        cov[np.ix_(free, free)] += sensitivity @ known_cov @ sensitivity.T
        cov[np.ix_(free, index)] = sensitivity @ known_cov
        cov[np.ix_(index, free)] = (sensitivity @ known_cov).T
        cov[np.ix_(index, index)] = known_cov
    return cov


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

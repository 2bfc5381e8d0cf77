"""Least squares against a model image: every star fitted on the shipped emulator, no grid needed.

``predict --refine`` without ``--grid`` starts from the network's answer and fits the noise-free
image of the emulator (:mod:`paper_lib.models.emulator`, ``models/<profile>/emulator.pt``) to the
real image over the pixels that hold data, with the labels a user knows held at their values:
Levenberg–Marquardt (:func:`fit_batch`), batched over the stars of a chunk, the Jacobian by
forward differences (each label shifted by :data:`~.forward.DERIVATIVE_STEPS`, all in one
batched render through the emulator, the rotation, macroturbulence and instrument transfer
functions, the échelle resampling and the continuum normalisation, whose clipped pixels are
held), each star's Jacobian reduced to its normal equations at once, bounded by the emulator's
label box (Teff, log g, [M/H]) and the v sin i range. The covariance is the fit's, scaled by
the residual variance (:func:`covariance_from_normal`), plus the systematic part of the physics
variants (:func:`~paper_lib.predict.uncertainty.refined_answer`). The grid fit (``--refine
--grid``, :mod:`~.refine`) is the same :func:`fit_batch` on the grid's images
(:class:`~.forward.GridRenderer`), in a box of complete grid cells around the start.

Flags: ``fit_at_bound`` (a free label ended at a bound of the box: the answer is the box's
edge, not a minimum), ``fit_not_converged`` (``MAX_ITERATIONS`` steps without settling).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..labels import LABEL_NAMES
from .forward import DERIVATIVE_STEPS, EmulatorRenderer, ImageRenderer
from .known import KnownLabel

FIT_BY_DEFAULT = False  # predict fits every star (the emulator) unless told --no-refine
MAX_ITERATIONS = 30  # Levenberg–Marquardt steps per star at most
SETTLED = np.array([1.0, 1e-3, 1e-3, 0.02])  # K, dex, dex, km/s: a smaller step ends the fit
BOUND_TOLERANCE = 1e-6  # × the label box: a label this close to a bound is at it
START_DAMPING = 1e-3  # Levenberg–Marquardt λ (× the diagonal of JᵀJ) at the first step
GRID_BOUND_TOLERANCE = 1e-3  # × a grid fit's range: a label this close to a bound ended "at" it
MAX_SIGMA_OF_BOX = 0.5  # a grid fit's σ above this × its range of the label says nothing


@dataclass
class Refined:
    """Result of a least-squares fit (:func:`fit_batch`, :func:`~.refine.refine`): labels (4,),
    the fit's covariance (4, 4), the RMS of the residual over the fitted pixels, the number of
    image renders, whether it converged, the free labels it left at a bound of its box, and
    (grid fits) the fit's label bounds (4,) each (:func:`~.refine.fit_bounds`) and the held
    labels."""

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
            at_low = name != "vsini" and self.labels[i] <= self.lower[i] + GRID_BOUND_TOLERANCE * width[i]
            at_high = self.labels[i] >= self.upper[i] - GRID_BOUND_TOLERANCE * width[i]
            if at_low or at_high:
                return f"{name} = {self.labels[i]:.4g} ended at a bound of the fit"
        return None


class EmulatorFitter:
    """``predict --refine`` without ``--grid``: :func:`fit_batch` on the emulator (method "fit")."""

    method = "fit"

    def __init__(self, emulator, record: dict | None = None, **options):
        self.render = EmulatorRenderer(emulator, **options)
        self.record = record or {}

    @classmethod
    def load(cls, path, *, network_only: bool = False) -> "EmulatorFitter":
        """The fitter of an emulator file (:func:`~paper_lib.models.emulator.save_emulator`);
        ``network_only``: of its MLP alone, without the node table (what the line mask is made
        with)."""
        from ..models.emulator import load_emulator

        emulator, record = load_emulator(path)
        return cls(emulator.network_only() if network_only else emulator, record,
                   pad_with_continuum=bool(record.get("pad_with_continuum")))

    def fit(self, images, masks, starts, known=()) -> list:
        """(Refined or None, problem or None) of each image (n, 8, 4096) from ``starts`` (n, 4)."""
        from ..synthetic.grid import OutsideGridError

        try:
            return [(fitted, None) for fitted in fit_batch(images, masks, starts, self.render, known)]
        except OutsideGridError as error:
            return [(None, str(error))] * len(images)


def held_labels(known, lower, upper, box: str = "the emulator's label box") -> dict:
    """{label index: KnownLabel} of ``known``; OutsideGridError for one outside ``lower`` ..
    ``upper`` (4,) or (n, 4) (every star's box), named ``box``."""
    from ..synthetic.grid import OutsideGridError

    lower, upper = np.atleast_2d(lower), np.atleast_2d(upper)
    held = {}
    for k in known:
        i = LABEL_NAMES.index(k.name)
        if not (np.all(lower[:, i] <= k.value) and np.all(k.value <= upper[:, i])):
            raise OutsideGridError(f"{k}: outside {box} ({k.name} {lower[:, i].max():g} to "
                                   f"{upper[:, i].min():g})")
        held[i] = k
    return held


def fit_batch(images, masks, starts, render: ImageRenderer, known: list[KnownLabel] = (), *,
              bounds=None, max_iterations: int = MAX_ITERATIONS) -> list[Refined]:
    """Least-squares labels of normalised ``images`` (n, 8, 4096) over ``masks`` (True = data),
    from ``starts`` (n, 4) physical, the ``known`` labels held: a :class:`Refined` per image.
    ``render``: the model (:mod:`~.forward`: the emulator or the grid); ``bounds``: (lower,
    upper) label bounds, (4,) or (n, 4) for each star its own, default the model's box.

    Levenberg–Marquardt in units of :data:`~.forward.DERIVATIVE_STEPS`, every star with its own
    damping; a step is clipped to the star's box, kept if it lowers the star's χ², and the star
    is done once a step moves no label by more than :data:`SETTLED`. Each star's Jacobian is
    reduced to its normal equations (JᵀWJ, JᵀWr: 4 × 4 and 4 numbers) as soon as it is made,
    at the start and after each step taken.
    """
    shape = (len(images), len(LABEL_NAMES))
    lower, upper = (np.broadcast_to(np.asarray(b, dtype=np.float64), shape)
                    for b in (bounds or (render.lower, render.upper)))
    held = held_labels(known, lower, upper)
    free = [i for i in range(len(LABEL_NAMES)) if i not in held]
    weight = np.asarray(masks, dtype=np.float64).reshape(len(images), -1)
    data = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    x = np.clip(np.array(starts, dtype=np.float64), lower, upper)
    for i, k in held.items():
        x[:, i] = k.value
    unit = DERIVATIVE_STEPS[free]
    image, continuum = render(x, with_continuum=True)
    residual = data - image.reshape(len(x), -1)
    normal, gradient = _normal_equations(render, x, continuum, residual, weight, upper)
    cost = np.einsum("np,np->n", residual ** 2, weight)
    damping = np.full(len(x), START_DAMPING)
    done = np.zeros(len(x), dtype=bool)
    scale = np.outer(unit, unit)
    for _ in range(max_iterations):
        todo = np.flatnonzero(~done)
        if not len(todo):
            break
        step = _bounded_steps(normal[todo][:, free][:, :, free] * scale,
                              gradient[todo][:, free] * unit, damping[todo], x[todo][:, free],
                              lower[todo][:, free], upper[todo][:, free])
        trial = x[todo].copy()
        trial[:, free] = np.clip(trial[:, free] + step * unit, lower[todo][:, free],
                                 upper[todo][:, free])
        moved = np.abs(trial - x[todo])
        trial_image, trial_continuum = render(trial, with_continuum=True)
        trial_residual = data[todo] - trial_image.reshape(len(todo), -1)
        trial_cost = np.einsum("np,np->n", trial_residual ** 2, weight[todo])
        better = trial_cost < cost[todo]
        kept = todo[better]
        if len(kept):  # derivatives only where the step is taken
            x[kept], residual[kept], cost[kept] = trial[better], trial_residual[better], trial_cost[better]
            normal[kept], gradient[kept] = _normal_equations(
                render, x[kept], trial_continuum.take(better), residual[kept], weight[kept],
                upper[kept])
        damping[todo] = np.where(better, damping[todo] / 3.0, damping[todo] * 8.0)
        done[todo] = np.all(moved[:, free] <= SETTLED[free], axis=1)
    return [_refined(render, x[s], residual[s], normal[s], weight[s] > 0, free, held,
                     bool(done[s]), lower[s], upper[s]) for s in range(len(x))]


def _normal_equations(render, x, continuum, residual, weight,
                      upper=None) -> tuple[np.ndarray, np.ndarray]:
    """JᵀWJ (n, 4, 4) and JᵀWr (n, 4) at ``x`` (n, 4), float64: J the images' derivatives
    (:meth:`~.forward.ImageRenderer.derivatives`, all four labels: the covariance needs them;
    backward steps at each star's ``upper`` bounds (n, 4), default the model's), W the pixel
    weights (n, pixels),
    r the residuals data − model (n, pixels) there."""
    jacobian = render.derivatives(x, range(len(LABEL_NAMES)), continuum, upper)
    jacobian = jacobian.reshape(len(LABEL_NAMES), len(x), -1).transpose(0, 1)  # (n, 4, pixels)
    weighted = jacobian * torch.as_tensor(weight, dtype=torch.float32)[:, None]
    normal = torch.bmm(weighted, jacobian.transpose(1, 2))
    gradient = torch.bmm(weighted, torch.as_tensor(residual, dtype=torch.float32)[..., None])
    return normal.double().numpy(), gradient[..., 0].double().numpy()


def _bounded_steps(normal, gradient, damping, x, lower, upper) -> np.ndarray:
    """:func:`_damped_steps`, then again without the labels at a bound that the first steps
    push beyond it (they stay where they are: the others move as if those were held)."""
    step = _damped_steps(normal, gradient, damping, np.zeros(x.shape, dtype=bool))
    pinned = ((x <= lower) & (step < 0)) | ((x >= upper) & (step > 0))
    if pinned.any():
        step = _damped_steps(normal, gradient, damping, pinned)
    return np.where(pinned, 0.0, step)


def _damped_steps(normal, gradient, damping, pinned) -> np.ndarray:
    """Levenberg–Marquardt steps (n, free): (JᵀWJ + λ·diag JᵀWJ)⁻¹ JᵀW r per star from the
    normal equations ``normal`` (n, free, free) and ``gradient`` (n, free), with the
    ``pinned`` labels' (n, free) columns of J zero (their diagonal set to 1 to keep it regular)."""
    keep = (~pinned).astype(np.float64)
    normal = normal * keep[:, :, None] * keep[:, None, :]
    gradient = gradient * keep
    diagonal = np.einsum("nii->ni", normal) * (1.0 + damping[:, None]) + pinned
    eye = np.eye(normal.shape[1], dtype=bool)
    damped = np.where(eye, diagonal[:, :, None] * eye, normal)
    return np.linalg.solve(damped, gradient[..., None])[..., 0]


def _refined(render, x, residual, normal, used, free, held, converged, lower, upper) -> Refined:
    """One star's :class:`Refined` at its final labels ``x``: covariance from the normal
    matrix JᵀJ (4, 4) of all four labels over the ``used`` pixels, scaled by the variance of
    the ``residual`` (pixels,) there; the free labels at a bound of its box ``lower`` ..
    ``upper`` (4,)."""
    residual = residual[used]
    cov = covariance_from_normal(normal, np.array(free), held, float(np.mean(residual ** 2)))
    span = (upper - lower) * BOUND_TOLERANCE
    at_bound = tuple(LABEL_NAMES[i] for i in free
                     if x[i] <= lower[i] + span[i] and LABEL_NAMES[i] != "vsini"
                     or x[i] >= upper[i] - span[i])
    return Refined(x, cov, float(np.sqrt(np.mean(residual ** 2))), render.renders, converged,
                   at_bound)


def covariance_from_normal(normal, free, held: dict, variance: float) -> np.ndarray:
    """(4, 4) covariance of fitted labels from the normal matrix JᵀJ (4, 4) of all four labels
    and the residual variance: the free labels' block the inverse of theirs scaled by the
    variance, the held labels their σ², propagated into the free ones through the fit's
    sensitivity to them."""
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

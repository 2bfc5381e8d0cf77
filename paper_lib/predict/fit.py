"""Least squares against the shipped spectrum emulator: every star fitted without the grid.

``predict --refine`` without ``--grid`` starts from the network's answer and fits the noise-free
image of the emulator (:mod:`paper_lib.models.emulator`, ``models/<profile>/emulator.pt``) to the
real image over the pixels that hold data, with the labels a user knows held at their values:
Levenberg–Marquardt, batched over the stars of a chunk, the Jacobian by forward differences
(each label shifted by :data:`~.refine.DERIVATIVE_STEPS`, all in one batched render through
the emulator, the rotation, macroturbulence and instrument transfer functions, the échelle
resampling and the continuum normalisation, whose clipped pixels are held), each star's
Jacobian reduced to its normal equations at once, bounded by the emulator's label box
(Teff, log g, [M/H]) and the v sin i range. The covariance is the fit's, scaled by the residual
variance (:func:`~paper_lib.predict.refine.covariance_from_normal`), plus the systematic part of
the physics variants (:func:`~paper_lib.predict.uncertainty.refined_answer`), as for the grid.

Flags: ``fit_at_bound`` (a free label ended at a bound of the box: the answer is the box's
edge, not a minimum), ``fit_not_converged`` (``MAX_ITERATIONS`` steps without settling).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..instrument import N_ORDERS, N_PIXELS
from ..labels import LABEL_NAMES, VSINI_RANGE
from .known import KnownLabel
from .refine import DERIVATIVE_STEPS, Refined, covariance_from_normal, difference_steps

FIT_BY_DEFAULT = False  # predict fits every star (the emulator) unless told --no-refine
MAX_ITERATIONS = 30  # Levenberg–Marquardt steps per star at most
SETTLED = np.array([1.0, 1e-3, 1e-3, 0.02])  # K, dex, dex, km/s: a smaller step ends the fit
BOUND_TOLERANCE = 1e-6  # × the label box: a label this close to a bound is at it
START_DAMPING = 1e-3  # Levenberg–Marquardt λ (× the diagonal of JᵀJ) at the first step


class EmulatorRenderer:
    """Noise-free normalised images (n, 8, 4096) of emulated stars at labels (n, 4) [K, dex,
    dex, km/s], and their Jacobian by forward differences (:meth:`linearise`).

    The emulator's mean spectrum and basis are Fourier-transformed once by the generator's
    forward model (:meth:`~paper_lib.echelle.generator.SpectrumGenerator.spectrum_transforms`),
    so an image costs one mix of ``n_components`` transforms, one rotation and one inverse FFT.
    ``pad_with_continuum``: for emulators of grids narrower than the orders (tests).
    """

    def __init__(self, emulator, *, pad_with_continuum: bool = False):
        from ..echelle.generator import SpectrumGenerator

        self.emulator = emulator.eval()
        spectra = _BasisSpectra(emulator)
        self.generator = SpectrumGenerator(spectra, snr=1.0, seed=0,
                                           pad_with_continuum=pad_with_continuum)
        transforms = self.generator.spectrum_transforms(spectra.flux)
        self.mean_transform = transforms[0]  # the forward model is affine (continuum padding)
        self.basis_transforms = transforms[1:] - transforms[0]
        self.lower = np.append(emulator.label_low.double().numpy(), VSINI_RANGE[0])
        self.upper = np.append(emulator.label_high.double().numpy(), VSINI_RANGE[1])
        self.renders = 0

    def raw_images(self, labels: torch.Tensor) -> torch.Tensor:
        """Images (n, 8, 4096) float32 of labels (n, 4) (a tensor) before the continuum
        normalisation."""
        from ..synthetic.turbulence import DOYLE_DOMAIN, doyle_zeta

        labels = labels.to(torch.float32)
        coefficients = self.emulator.coefficients(labels[:, :3])
        spectra = (self.mean_transform + coefficients @ self.basis_transforms).view(len(labels), -1, 2)
        zeta = doyle_zeta(labels[:, 0].clamp(*DOYLE_DOMAIN["teff"]),
                          labels[:, 1].clamp(*DOYLE_DOMAIN["logg"]))
        if not self.generator.macroturbulence:
            zeta = torch.zeros_like(zeta)
        self.renders += len(labels)
        return self.generator.render_transforms(spectra, labels[:, 3], zeta)

    def __call__(self, labels, *, with_continuum: bool = False):
        """Images (n, 8, 4096) of physical labels (n, 4) or (4,), as numpy float64; with
        ``with_continuum`` also a :class:`Continuum` for :meth:`linearise`."""
        from ..echelle.continuum import envelope_continuum

        with torch.no_grad():
            raw = self.raw_images(torch.as_tensor(np.atleast_2d(labels), dtype=torch.float32))
            continuum, selection = envelope_continuum(raw)
        image = (raw / continuum).double().numpy()
        return (image, Continuum(raw, continuum, selection)) if with_continuum else image

    def derivatives(self, labels, columns, continuum) -> torch.Tensor:
        """Derivatives (len(columns), n, 8, 4096) float32 of the images at ``labels`` (n, 4)
        with respect to the labels ``columns`` (indices), per unit of each label, by forward
        differences over :data:`~.refine.DERIVATIVE_STEPS` (backward at the upper bound) in one
        batched render: 1.5–3× faster than autograd through the FFTs and the continuum
        normalisation, and as exact as the fit needs (a step is ~1/10 of a typical σ; float32
        images resolve its change to ~1e-4). ``continuum``: the :class:`Continuum` of the images
        at ``labels`` (``__call__(…, with_continuum=True)``); the shifted images' continuum
        moves as a line fit on the pixels those rest on
        (:func:`~paper_lib.echelle.continuum.continuum_change`: the clipped set held, one line
        fit per order instead of the clipping)."""
        from ..echelle.continuum import continuum_change

        x = np.atleast_2d(np.asarray(labels, dtype=np.float64))
        columns = list(columns)
        steps = difference_steps(x, self.upper)
        shifted = np.repeat(x[None], len(columns), axis=0)
        for k, column in enumerate(columns):
            shifted[k, :, column] += steps[:, column]
        with torch.no_grad():
            raw = self.raw_images(torch.as_tensor(shifted.reshape(-1, 4), dtype=torch.float32))
            raw = raw.view(len(columns), len(x), N_ORDERS, N_PIXELS)
            moved = raw / (continuum.continuum + continuum_change(raw - continuum.raw,
                                                                   continuum.selection))
            base = continuum.raw / continuum.continuum
            per_unit = torch.as_tensor(steps[:, columns].T, dtype=torch.float32)
            return (moved - base) / per_unit[..., None, None]

    def linearise(self, labels, columns) -> tuple[np.ndarray, np.ndarray]:
        """Images (n, 8, 4096) at ``labels`` (n, 4) and their derivatives (n, 8, 4096,
        len(columns)) with respect to the labels ``columns`` (indices), per unit of each label
        (:meth:`derivatives`); float64 numpy."""
        image, continuum = self(labels, with_continuum=True)
        derivatives = self.derivatives(labels, columns, continuum)
        return image, derivatives.permute(1, 2, 3, 0).double().numpy()


class Continuum(NamedTuple):
    """Images before normalisation (n, 8, 4096), their continuum and the pixels it rests on
    (:func:`~paper_lib.echelle.continuum.envelope_continuum`): what :meth:`EmulatorRenderer.linearise`
    needs of the images at the labels it differentiates; ``take`` picks stars."""

    raw: torch.Tensor
    continuum: torch.Tensor
    selection: torch.Tensor

    def take(self, which: np.ndarray) -> "Continuum":
        index = torch.from_numpy(np.flatnonzero(which))
        return Continuum(*(part[index] for part in self))


class _BasisSpectra:
    """The emulator's mean spectrum and mean + each basis row, on its wavelengths: what the
    generator transforms (it reads ``wavelength`` and ``flux`` like a grid's)."""

    def __init__(self, emulator):
        self.wavelength = emulator.wavelength.numpy()
        mean = emulator.mean.float()
        self.flux = torch.cat([mean[None], mean + emulator.basis.float()]).numpy()


class EmulatorFitter:
    """``predict --refine`` without ``--grid``: :func:`fit_batch` on the emulator (method "fit")."""

    method = "fit"

    def __init__(self, emulator, record: dict | None = None, **options):
        self.render = EmulatorRenderer(emulator, **options)
        self.record = record or {}

    @classmethod
    def load(cls, path) -> "EmulatorFitter":
        """The fitter of an emulator file (:func:`~paper_lib.models.emulator.save_emulator`)."""
        from ..models.emulator import load_emulator

        emulator, record = load_emulator(path)
        return cls(emulator, record, pad_with_continuum=bool(record.get("pad_with_continuum")))

    def fit(self, images, masks, starts, known=()) -> list:
        """(Refined or None, problem or None) of each image (n, 8, 4096) from ``starts`` (n, 4)."""
        from ..synthetic.grid import OutsideGridError

        try:
            return [(fitted, None) for fitted in fit_batch(images, masks, starts, self.render, known)]
        except OutsideGridError as error:
            return [(None, str(error))] * len(images)


def held_labels(known, lower, upper) -> dict:
    """{label index: KnownLabel} of ``known``; OutsideGridError for one outside the box."""
    from ..synthetic.grid import OutsideGridError

    held = {}
    for k in known:
        i = LABEL_NAMES.index(k.name)
        if not lower[i] <= k.value <= upper[i]:
            raise OutsideGridError(f"{k}: outside the emulator's label box ({k.name} "
                                   f"{lower[i]:g} to {upper[i]:g})")
        held[i] = k
    return held


def fit_batch(images, masks, starts, render: EmulatorRenderer, known: list[KnownLabel] = (), *,
              max_iterations: int = MAX_ITERATIONS) -> list[Refined]:
    """Least-squares labels of normalised ``images`` (n, 8, 4096) over ``masks`` (True = data),
    from ``starts`` (n, 4) physical, the ``known`` labels held: a :class:`Refined` per image.

    Levenberg–Marquardt in units of :data:`~.refine.DERIVATIVE_STEPS`, every star with its own
    damping; a step is clipped to the label box, kept if it lowers the star's χ², and the star
    is done once a step moves no label by more than :data:`SETTLED`. Each star's Jacobian is
    reduced to its normal equations (JᵀWJ, JᵀWr: 4 × 4 and 4 numbers) as soon as it is made,
    at the start and after each step taken.
    """
    lower, upper = render.lower, render.upper
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
    normal, gradient = _normal_equations(render, x, continuum, residual, weight)
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
                              lower[free], upper[free])
        trial = x[todo].copy()
        trial[:, free] = np.clip(trial[:, free] + step * unit, lower[free], upper[free])
        moved = np.abs(trial - x[todo])
        trial_image, trial_continuum = render(trial, with_continuum=True)
        trial_residual = data[todo] - trial_image.reshape(len(todo), -1)
        trial_cost = np.einsum("np,np->n", trial_residual ** 2, weight[todo])
        better = trial_cost < cost[todo]
        kept = todo[better]
        if len(kept):  # derivatives only where the step is taken
            x[kept], residual[kept], cost[kept] = trial[better], trial_residual[better], trial_cost[better]
            normal[kept], gradient[kept] = _normal_equations(
                render, x[kept], trial_continuum.take(better), residual[kept], weight[kept])
        damping[todo] = np.where(better, damping[todo] / 3.0, damping[todo] * 8.0)
        done[todo] = np.all(moved[:, free] <= SETTLED[free], axis=1)
    return [_refined(render, x[s], residual[s], normal[s], weight[s] > 0, free, held,
                     bool(done[s])) for s in range(len(x))]


def _normal_equations(render, x, continuum, residual, weight) -> tuple[np.ndarray, np.ndarray]:
    """JᵀWJ (n, 4, 4) and JᵀWr (n, 4) at ``x`` (n, 4), float64: J the images' derivatives
    (:meth:`EmulatorRenderer.derivatives`, all four labels: the covariance needs them), W the
    pixel weights (n, pixels), r the residuals data − model (n, pixels) there."""
    jacobian = render.derivatives(x, range(len(LABEL_NAMES)), continuum)
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


def _refined(render, x, residual, normal, used, free, held, converged) -> Refined:
    """One star's :class:`Refined` at its final labels ``x``: covariance from the normal
    matrix JᵀJ (4, 4) of all four labels over the ``used`` pixels, scaled by the variance of
    the ``residual`` (pixels,) there."""
    residual = residual[used]
    cov = covariance_from_normal(normal, np.array(free), held, float(np.mean(residual ** 2)))
    span = (render.upper - render.lower) * BOUND_TOLERANCE
    at_bound = tuple(LABEL_NAMES[i] for i in free
                     if x[i] <= render.lower[i] + span[i] and LABEL_NAMES[i] != "vsini"
                     or x[i] >= render.upper[i] - span[i])
    return Refined(x, cov, float(np.sqrt(np.mean(residual ** 2))), render.renders, converged,
                   at_bound)

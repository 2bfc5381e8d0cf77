"""Noise-free model images of stars at labels, and their Jacobians: what the fits compare with.

Two models of a star's image share one interface (:class:`ImageRenderer`): the synthetic grid,
interpolated between its nodes by a Catmull–Rom spline (:class:`GridRenderer`, ``predict
--refine --grid``), and the shipped spectrum emulator (:class:`EmulatorRenderer`, ``predict
--refine``). Each makes the raw images (n, 8, 4096) through the same forward model (rotation,
macroturbulence, instrument, échelle pixels), divides them by the continuum that
:func:`~paper_lib.echelle.continuum.normalise_orders` finds
(:func:`~paper_lib.echelle.continuum.envelope_continuum`) and is differentiated the same way
(:meth:`ImageRenderer.derivatives`), so one least-squares fit (:func:`~.fit.fit_batch`) serves
both, and a grid fit and an emulator fit of a star differ only in the model.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ..instrument import N_ORDERS, N_PIXELS
from ..labels import VSINI_RANGE

DERIVATIVE_STEPS = np.array([20.0, 0.02, 0.01, 0.2])  # K, dex, dex, km/s
# between the nodes the grid fit's spectra are a Catmull–Rom spline, not trilinear: the linear
# one's kinks at every node put minima there, and it is 1.6–3× farther from left-out nodes
# (paper_lib.synthetic.grid; benchmarks/grid_interpolation.py)
GRID_FIT_INTERPOLATION = "cubic"


def difference_steps(x, upper) -> np.ndarray:
    """The finite-difference step of each label at ``x`` (..., 4): :data:`DERIVATIVE_STEPS`
    forward, backward where a forward step would pass ``upper`` (4,) or (..., 4)."""
    return np.where(np.asarray(x) + DERIVATIVE_STEPS <= upper, DERIVATIVE_STEPS, -DERIVATIVE_STEPS)


class Continuum(NamedTuple):
    """Images before normalisation (n, 8, 4096), their continuum and the pixels it rests on
    (:func:`~paper_lib.echelle.continuum.envelope_continuum`): what
    :meth:`ImageRenderer.derivatives` needs of the images at the labels it differentiates;
    ``take`` picks stars."""

    raw: torch.Tensor
    continuum: torch.Tensor
    selection: torch.Tensor

    def take(self, which: np.ndarray) -> "Continuum":
        index = torch.from_numpy(np.flatnonzero(which))
        return Continuum(*(part[index] for part in self))


class ImageRenderer:
    """Noise-free normalised images (n, 8, 4096) of stars at labels (n, 4) [K, dex, dex, km/s]
    and their Jacobian by forward differences. A model supplies :meth:`raw_images` and its
    label box ``lower``, ``upper`` (4,); ``renders`` counts the images made."""

    lower: np.ndarray
    upper: np.ndarray
    renders: int = 0

    def raw_images(self, labels: np.ndarray) -> torch.Tensor:
        """Images (n, 8, 4096) float32 of physical labels (n, 4) before the continuum
        normalisation."""
        raise NotImplementedError

    def __call__(self, labels, *, with_continuum: bool = False):
        """Images (n, 8, 4096) of physical labels (n, 4) or (4,), as numpy float64; with
        ``with_continuum`` also a :class:`Continuum` for :meth:`derivatives`."""
        from ..echelle.continuum import envelope_continuum

        with torch.no_grad():
            raw = self.raw_images(np.atleast_2d(np.asarray(labels, dtype=np.float64)))
            continuum, selection = envelope_continuum(raw)
        image = (raw / continuum).double().numpy()
        return (image, Continuum(raw, continuum, selection)) if with_continuum else image

    def derivatives(self, labels, columns, continuum, upper=None) -> torch.Tensor:
        """Derivatives (len(columns), n, 8, 4096) float32 of the images at ``labels`` (n, 4)
        with respect to the labels ``columns`` (indices), per unit of each label, by forward
        differences over :data:`DERIVATIVE_STEPS` (backward where a step would pass ``upper``,
        (4,) or (n, 4), default the model's box) in one batched render: 1.5–3× faster than
        autograd through the FFTs and the continuum normalisation, and as exact as the fit
        needs (a step is ~1/10 of a typical σ; float32 images resolve its change to ~1e-4).
        ``continuum``: the :class:`Continuum` of the images at ``labels`` (``__call__(…,
        with_continuum=True)``); the shifted images' continuum moves as a line fit on the
        pixels those rest on (:func:`~paper_lib.echelle.continuum.continuum_change`: the
        clipped set held, one line fit per order instead of the clipping)."""
        from ..echelle.continuum import continuum_change

        x = np.atleast_2d(np.asarray(labels, dtype=np.float64))
        columns = list(columns)
        steps = difference_steps(x, self.upper if upper is None else upper)
        shifted = np.repeat(x[None], len(columns), axis=0)
        for k, column in enumerate(columns):
            shifted[k, :, column] += steps[:, column]
        with torch.no_grad():
            raw = self.raw_images(shifted.reshape(-1, 4))
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


class GridRenderer(ImageRenderer):
    """The grid's images (:meth:`~paper_lib.echelle.generator.SpectrumGenerator.render_labels`),
    ``interpolation`` between the nodes (:data:`GRID_FIT_INTERPOLATION` by default); the box:
    the grid's axes and the v sin i range. ``pad_with_continuum`` for grids narrower than the
    orders (the reference grid). Labels in a hole of the grid raise OutsideGridError."""

    def __init__(self, grid, *, pad_with_continuum: bool = False,
                 interpolation: str = GRID_FIT_INTERPOLATION):
        from ..echelle.generator import SpectrumGenerator

        self.grid = grid
        self.generator = SpectrumGenerator(grid, snr=1.0, seed=0, interpolation=interpolation,
                                           pad_with_continuum=pad_with_continuum)
        self.lower = np.array([axis[0] for axis in grid.axes] + [VSINI_RANGE[0]], dtype=np.float64)
        self.upper = np.array([axis[-1] for axis in grid.axes] + [VSINI_RANGE[1]], dtype=np.float64)
        self.renders = 0

    def raw_images(self, labels: np.ndarray) -> torch.Tensor:
        self.renders += len(labels)
        return self.generator.render_labels(labels)


class EmulatorRenderer(ImageRenderer):
    """The emulator's images: its mean spectrum and basis are Fourier-transformed once by the
    generator's forward model
    (:meth:`~paper_lib.echelle.generator.SpectrumGenerator.spectrum_transforms`), so an image
    costs one mix of ``n_components`` transforms, one rotation and one inverse FFT. The box:
    the emulator's label box and the v sin i range. ``pad_with_continuum``: for emulators of
    grids narrower than the orders (tests)."""

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

    def raw_images(self, labels: np.ndarray) -> torch.Tensor:
        from ..synthetic.turbulence import DOYLE_DOMAIN, doyle_zeta

        labels = torch.as_tensor(labels, dtype=torch.float32)
        coefficients = self.emulator.coefficients(labels[:, :3])
        spectra = (self.mean_transform + coefficients @ self.basis_transforms).view(len(labels), -1, 2)
        zeta = doyle_zeta(labels[:, 0].clamp(*DOYLE_DOMAIN["teff"]),
                          labels[:, 1].clamp(*DOYLE_DOMAIN["logg"]))
        if not self.generator.macroturbulence:
            zeta = torch.zeros_like(zeta)
        self.renders += len(labels)
        return self.generator.render_transforms(spectra, labels[:, 3], zeta)


class _BasisSpectra:
    """The emulator's mean spectrum and mean + each basis row, on its wavelengths: what the
    generator transforms (it reads ``wavelength`` and ``flux`` like a grid's)."""

    def __init__(self, emulator):
        self.wavelength = emulator.wavelength.numpy()
        mean = emulator.mean.float()
        self.flux = torch.cat([mean[None], mean + emulator.basis.float()]).numpy()

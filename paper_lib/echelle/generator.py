"""Synthetic HARPS-N spectrum images generated on the fly (the fixed test sets: :mod:`.testsets`).

Pipeline of :meth:`SpectrumGenerator.sample` (one batch):

1. labels: (Teff, log g, [M/H]) uniform over the valid part of the grid (``grid.sample_labels``,
   optionally inside ``box`` / ``teff_range``), v sin i uniform in ``vsini_range`` [km/s];
2. interpolation between the grid nodes (``grid.stencil_weights``): trilinear between the 8 of
   the point's cell (the training spectra) or, ``interpolation="cubic"``, Catmull–Rom (grid fit);
3. cubic resampling onto a log-λ grid (``velocity_step_kms``, default 0.5 km/s per pixel);
4. Gray rotation (ε = 0.6), radial–tangential macroturbulence ζ(Teff, log g) of Doyle et al. 2014
   (:func:`paper_lib.synthetic.turbulence.vmacro_kms`; ``macroturbulence=False`` leaves it out)
   and the Gaussian instrument R = 115 000 (:mod:`paper_lib.synthetic.broadening`);
5. cubic resampling onto the 8 × 4096 HARPS-N pixels (:mod:`paper_lib.echelle.layout`);
6. a random linear slant per order, slope uniform in ±``slant_max`` (relative change from the
   order centre to its end, :func:`paper_lib.echelle.continuum.slant_ramp`);
7. Gaussian noise at the requested SNR (definition below), fresh for every call (Box–Muller
   on random bits of the numpy generator, :func:`~paper_lib.echelle.steps.standard_normal`);
8. :func:`paper_lib.echelle.continuum.normalise_orders` – the same continuum normalisation
   applied to real spectra.

Steps 2–4 are linear in the flux, so :meth:`SpectrumGenerator.render_labels` runs them in
Fourier space: every node is resampled, edge-padded, transformed and multiplied by the
instrument profile once (:meth:`SpectrumGenerator.node_transforms`); a batch then costs one
sparse mix of node transforms, one multiplication by each star's rotation transfer function and
one inverse FFT. :meth:`SpectrumGenerator.render` does steps 3–5 literally for any 1D spectra
(``broaden`` etc.); the two agree to float32 rounding (tested). With ``compile=True`` the
rotation, inverse FFT and échelle taps, and steps 6–8, run through ``torch.compile``, which
fuses them into a few C++ loops (:class:`~paper_lib.echelle.steps.CompiledStep`; the training
generators of the ``cpu`` and ``paper`` profiles).

**Realism** (:mod:`paper_lib.echelle.realism`, off by default; the ``_real`` variants): a
per-spectrum SNR range, the HARPS CCD gap masked and filled with 1.0, a residual radial velocity
(a phase ramp before step 5), line-strength errors (after it) and a quadratic continuum term.

**SNR definition** (used everywhere in the project): per échelle pixel, at the continuum. A pixel
of an order with continuum level c(x) (the slant ramp, 1 ± slant_max) receives Gaussian noise of
standard deviation σ(x) = c(x) / SNR, whatever the line depth at that pixel (additive Gaussian
noise, as in the paper). After normalisation the continuum is ≈ 1 and the noise σ ≈ 1 / SNR.

**Targets.** ``noisy`` is the network input (step 8). ``clean`` is the noise-free slanted image
divided by the *same* continuum that :func:`~paper_lib.echelle.continuum.normalise_orders`
fitted to the noisy image, so ``noisy − clean`` is exactly the normalised noise and a denoising
auto-encoder only has to remove noise, not to re-normalise.
"""

from __future__ import annotations

import hashlib
import math
import warnings
import weakref

import numpy as np
import torch

from .. import instrument
from ..instrument import C_KMS
from ..labels import VSINI_RANGE, scale_labels
from ..synthetic.broadening import (DEFAULT_EPSILON, broaden, fft_layout, gray_transfer_table,
                                    instrument_sigma_kms, instrument_transfer, pad_with_edges)
from ..synthetic.resample import Resampler, check_positive, log_lambda_grid
from ..synthetic.turbulence import VMACRO_MAX_KMS, VMACRO_RELATION, vmacro_kms
from .continuum import pixel_coordinate
from .layout import order_wavelengths
from .batch import Batch
from .realism import Draw, Realism, shift_spectra
from .steps import COMPILED_OBSERVE, COMPILED_RENDER, observe_pixels, render_pixels

# torch warns once that CSR tensors are "beta"; ours are plain (8 or 64 nodes a row). Set once at
# import: ``catch_warnings`` is not thread-safe and the training loop samples in a thread.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta",
                        category=UserWarning)

CHUNK = 64  # spectra rendered at once inside sample() (bounds memory; fixed for determinism)
FOURIER_CUT = 1e-7  # the fast path drops frequencies where the instrument transfer is below


class SpectrumGenerator:
    """Random synthetic HARPS-N images with continuous labels (see the module docstring).

    Parameters
    ----------
    grid : paper_lib.synthetic.grid.Grid
        Normalised synthetic spectra (air Å, uniform 0.01 Å step); must cover the orders plus
        the broadening margin (≈ 5025.5–5395.4 Å) unless ``pad_with_continuum``.
    snr : float
        Signal-to-noise ratio per pixel at the continuum (σ = continuum / snr).
    box, teff_range :
        Optional label sub-region passed to ``grid.sample_labels`` (e.g. the smoke profile's
        box, or the paper's limited Teff range for the † rows).
    slant_max : float
        Maximum |relative slope| of the slant of each order.
    vsini_range : (float, float)
        v sin i [km/s] is drawn uniformly in this interval.
    seed : int
        Seeds the generator's own ``numpy.random.Generator`` (used when ``sample`` gets none).
    velocity_step_kms, R, epsilon :
        Log-λ step [km/s], resolving power and limb darkening of the broadening.
    order_wave : (n_orders, n_pixels) array, optional
        Pixel wavelengths [Å]; default :func:`paper_lib.echelle.layout.order_wavelengths`.
    pad_with_continuum : bool
        If the grid does not cover the orders (e.g. the 5030–5370 Å reference grid used in
        tests), extend it with continuum (flux 1) instead of raising ValueError.
    compile : bool
        Run the rotation, inverse FFT and échelle taps, and slant, noise and normalisation,
        through ``torch.compile`` (:class:`CompiledStep`): 1.5–1.7× faster on 2 CPU cores after
        a one-off compilation (≈ 25 s, cached on disk); images equal the eager ones to float32
        rounding except at the continuum fit's clipping thresholds (max |Δ| 7e-4 over 256 stars
        per SNR 5–300, 1.5 % of the noise σ at SNR 20). Deterministic for a seed either way.
        Off by default (test sets are eager, bit for bit reproducible); on in the ``cpu`` and
        ``paper`` training generators (``Profile.compile_generator``).
    interpolation : "linear" or "cubic"
        Between the grid nodes (step 2; :meth:`~paper_lib.synthetic.grid.Grid.stencil_weights`).
    """

    def __init__(self, grid, *, snr: float, box: dict | None = None, teff_range=None,
                 slant_max: float = 0.05, vsini_range=VSINI_RANGE, seed: int,
                 velocity_step_kms: float = 0.5, R: float = instrument.R,
                 epsilon: float = DEFAULT_EPSILON, order_wave=None,
                 pad_with_continuum: bool = False, compile: bool = False,
                 macroturbulence: bool = True, realism: Realism | None = None,
                 interpolation: str = "linear"):
        from ..synthetic.grid import check_interpolation

        self.grid, self.interpolation = grid, check_interpolation(interpolation)
        self.macroturbulence = bool(macroturbulence)
        self.realism = realism or Realism()
        self.snr = check_positive(snr, "snr")
        self.box = dict(box) if box else None
        self.teff_range = tuple(teff_range) if teff_range is not None else None
        self.slant_max = float(slant_max)
        if not 0.0 <= self.slant_max < 1.0:
            raise ValueError(f"slant_max must lie in [0, 1), got {slant_max}")
        lo, hi = (float(v) for v in vsini_range)
        if not 0.0 <= lo <= hi or not math.isfinite(hi):
            raise ValueError(f"vsini_range must satisfy 0 <= min <= max, got {vsini_range}")
        self.vsini_range = (lo, hi)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.velocity_step_kms = check_positive(velocity_step_kms, "velocity_step_kms")
        self.R = R
        self.epsilon = float(epsilon)
        self.order_wave = (order_wavelengths() if order_wave is None
                           else np.asarray(order_wave, dtype=np.float64))
        self.pad_with_continuum = bool(pad_with_continuum)
        self.compile = bool(compile)
        self._render = COMPILED_RENDER if self.compile else render_pixels
        self._observe = COMPILED_OBSERVE if self.compile else observe_pixels
        self._setup_wavelengths()

    # ------------------------------------------------------------------ set-up
    @property
    def _vmacro_max(self) -> float:
        return VMACRO_MAX_KMS if self.macroturbulence else 0.0

    def vmacro(self, physical) -> np.ndarray:
        """Macroturbulence ζ [km/s] of labels (n, ≥2) [K, dex, …]: Doyle et al. 2014, or 0."""
        physical = np.asarray(physical, dtype=np.float64)
        if not self.macroturbulence:
            return np.zeros(len(physical))
        return np.atleast_1d(vmacro_kms(physical[:, 0], physical[:, 1]))

    def _setup_wavelengths(self) -> None:
        """Log-λ grid around the orders and the (cached) resamplers between the grids."""
        margin_kms = self.vsini_range[1] + 7.0 * instrument_sigma_kms(self.R or instrument.R)
        margin_kms += 4.0 * self.velocity_step_kms + 3.0 * self._vmacro_max
        lo = self.order_wave.min() * (1.0 - margin_kms / C_KMS)
        hi = self.order_wave.max() * (1.0 + margin_kms / C_KMS)
        self.log_wave = log_lambda_grid(lo, hi, self.velocity_step_kms)
        wave = np.asarray(self.grid.wavelength, dtype=np.float64)
        self._pad = (0, 0)
        if wave[0] > self.log_wave[0] or wave[-1] < self.log_wave[-1]:
            if not self.pad_with_continuum:
                raise ValueError(
                    f"the grid covers {wave[0]:.2f}–{wave[-1]:.2f} Å but the échelle orders with "
                    f"the broadening margin need {self.log_wave[0]:.2f}–{self.log_wave[-1]:.2f} Å;"
                    " use a grid over 5020–5400 Å (or pad_with_continuum=True for tests)")
            step = float(np.median(np.diff(wave)))
            n_before = max(0, int(math.ceil((wave[0] - self.log_wave[0]) / step)))
            n_after = max(0, int(math.ceil((self.log_wave[-1] - wave[-1]) / step)))
            wave = np.concatenate([wave[0] - step * np.arange(n_before, 0, -1), wave,
                                   wave[-1] + step * np.arange(1, n_after + 1)])
            self._pad = (n_before, n_after)
        self.n_wave = len(self.grid.wavelength)
        self._to_log = Resampler(wave, self.log_wave)
        self._to_orders = Resampler(self.log_wave, self.order_wave)
        self._setup_fourier()

    def _setup_fourier(self) -> None:
        """FFT layout of the fast path: padding, frequencies, and a resampler whose input is
        the whole inverse FFT (the log-λ grid continued by ``pad`` samples on both sides)."""
        n_log = len(self.log_wave)
        self._fft_pad, self._n_fft = fft_layout(n_log, self.vsini_range[1],
                                                self.velocity_step_kms, self.R, self._vmacro_max)
        frequency = torch.fft.rfftfreq(self._n_fft, d=self.velocity_step_kms,
                                       dtype=torch.float64)
        if self.R is not None:  # beyond this the instrument leaves < 1e-7 of any signal
            frequency = frequency[instrument_transfer(frequency, self.R) >= FOURIER_CUT]
        self._frequency = frequency
        self._frequency32 = frequency.to(torch.float32)
        k_max = 2.0 * math.pi * self.vsini_range[1] * float(frequency.max())
        self._transfer_table = gray_transfer_table(self.epsilon, k_max).to(torch.float32)
        offsets = np.arange(self._n_fft) - self._fft_pad
        fft_wave = self.log_wave[0] * np.exp(offsets * self.velocity_step_kms / C_KMS)
        self._from_fft = Resampler(fft_wave, self.order_wave)
        self._taps = self._from_fft.torch_taps()  # index, weight: (k, n_pixels) each
        index = self._taps[0]
        if not bool((index == index[0] + torch.arange(len(index))[:, None]).all()):
            raise AssertionError("the taps must be consecutive samples (the FFT grid is padded)")

    def node_transforms(self) -> torch.Tensor:
        """Fourier transforms of all grid nodes on this generator's log-λ layout.

        (n_nodes, 2·n_freq) float32, real and imaginary parts interleaved: each node spectrum
        resampled to the log-λ grid (Keys cubic), padded with its edge values by
        ``fft_layout``'s pad, ``rfft``-ed and multiplied by the instrument's transfer function
        (the same for every spectrum); frequencies where that transfer is below ``FOURIER_CUT``
        are dropped (the inverse FFT fills them with zeros). Computed once per grid and layout
        (≈ 3 s and 250 MB for the 1771-node grid) and shared by every generator on the same
        grid object.
        """
        key = (self._pad, len(self.log_wave), float(self.log_wave[0]), self._fft_pad,
               self._n_fft, self.R)
        per_grid = _NODE_TRANSFORMS.setdefault(self.grid, {})
        if key not in per_grid:
            per_grid[key] = self.spectrum_transforms(self.grid.flux)
        return per_grid[key]

    def spectrum_transforms(self, flux) -> torch.Tensor:
        """Fourier transforms (n, 2·n_freq) of spectra (n, n_wave) on the grid's wavelengths,
        as :meth:`node_transforms` makes them (what :meth:`render_transforms` takes)."""
        n_nodes, n_freq = flux.shape[0], len(self._frequency)
        out = torch.empty((n_nodes, n_freq, 2), dtype=torch.float32)
        instrument = (torch.ones(n_freq, dtype=torch.float64) if self.R is None
                      else instrument_transfer(self._frequency, self.R))
        for start in range(0, n_nodes, 256):
            block = torch.as_tensor(np.asarray(flux[start:start + 256], dtype=np.float32))
            padded = pad_with_edges(self._on_log_grid(block), self._fft_pad)
            transform = torch.fft.rfft(padded.double(), n=self._n_fft)[:, :n_freq]
            transform = transform * instrument
            out[start:start + len(block)] = torch.view_as_real(transform.to(torch.complex64))
        return out.reshape(n_nodes, 2 * n_freq)

    def _on_log_grid(self, flux: torch.Tensor) -> torch.Tensor:
        """Spectra (n, n_wave) on the grid's wavelengths → the log-λ grid (continuum-padded
        first where the grid is shorter than the orders need, see ``pad_with_continuum``)."""
        if any(self._pad):
            flux = torch.nn.functional.pad(flux, self._pad, value=1.0)
        return self._to_log(flux)

    # ------------------------------------------------------------------ stages
    def sample_physical_labels(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 4) labels [K, dex, dex, km/s]: grid labels in the box, v sin i uniform."""
        labels3 = np.asarray(self.grid.sample_labels(n, rng, box=self.box,
                                                     teff_range=self.teff_range))
        vsini = rng.uniform(*self.vsini_range, size=n)
        return np.column_stack([labels3, vsini])

    def render(self, flux, vsini, vmacro=None) -> torch.Tensor:
        """Noise-free, unslanted images (n, 8, 4096) float32 of 1D grid-sampled spectra.

        ``flux`` (n, n_wave) numpy/torch on ``grid.wavelength``; ``vsini`` (n,) [km/s];
        ``vmacro`` (n,) ζ [km/s] or None (no macroturbulence; :meth:`vmacro` gives the
        generator's ζ of given labels). Raises ValueError for a wrong shape or non-finite values.
        """
        flux = torch.as_tensor(np.asarray(flux) if not isinstance(flux, torch.Tensor) else flux,
                               dtype=torch.float32)
        if flux.ndim != 2 or flux.shape[1] != self.n_wave:
            raise ValueError(
                f"spectra must have shape (n, {self.n_wave}) on the grid's wavelengths, "
                f"got {tuple(flux.shape)}"
            )
        if not bool(torch.isfinite(flux).all()):
            raise ValueError("spectra contain NaN or infinite values")
        broadened = broaden(self._on_log_grid(flux), torch.as_tensor(vsini, dtype=torch.float64),
                            self.velocity_step_kms, R=self.R, epsilon=self.epsilon,
                            vmacro=vmacro)
        return self._to_orders(broadened)

    def render_labels(self, physical, shift_kms=None) -> torch.Tensor:
        """Noise-free, unslanted images (n, 8, 4096) float32 for labels (n, 4) [K, dex, dex, km/s].

        The same as ``render(grid.interpolate(labels[:, :3], self.interpolation), labels[:, 3],
        self.vmacro(labels))`` (to float32 rounding, ~1e-6), but several times faster:
        interpolation, log-λ resampling, padding and the FFT are all linear, so the mix of the
        surrounding nodes (8, or 64 for ``"cubic"``) is taken
        directly between their precomputed transforms (:meth:`node_transforms`, which already
        hold the instrument profile), multiplied by the rotation and macroturbulence transfer
        functions of each star and inverse-transformed once. Raises
        :class:`~paper_lib.synthetic.grid.OutsideGridError` for labels outside the grid or in its
        holes, ValueError for a negative or non-finite v sin i or one above
        ``vsini_range`` (the FFT's padding covers the rotation up to its maximum).
        ``shift_kms`` (n,) moves each spectrum by a radial velocity [km/s] (realism).
        """
        physical = np.asarray(physical, dtype=np.float64)
        if physical.ndim != 2 or physical.shape[1] != 4:
            raise ValueError(f"labels must have shape (n, 4), got {physical.shape}")
        vsini = physical[:, 3]
        if not np.all(np.isfinite(vsini)) or np.any(vsini < 0):
            raise ValueError("v sin i must be finite and non-negative [km/s]")
        if np.any(vsini > self.vsini_range[1]):
            raise ValueError(f"v sin i {vsini.max():g} km/s is above this generator's "
                             f"vsini_range maximum of {self.vsini_range[1]:g} km/s")
        rows, weights = self.grid.stencil_weights(physical[:, :3], self.interpolation)
        nodes = self.node_transforms()
        (n, per_row) = rows.shape
        mixing = torch.sparse_csr_tensor(
            torch.arange(0, per_row * n + 1, per_row), torch.from_numpy(rows.ravel()),
            torch.from_numpy(weights.ravel().astype(np.float32)), size=(n, len(nodes)),
            check_invariants=False)  # built right here: per_row column indices a row, all valid
        spectra = (mixing @ nodes).view(n, -1, 2)
        if shift_kms is not None:
            spectra = shift_spectra(spectra, self._frequency, shift_kms)
        return self.render_transforms(spectra, torch.from_numpy(vsini.astype(np.float32)),
                                      torch.from_numpy(self.vmacro(physical).astype(np.float32)))

    def render_transforms(self, spectra, vsini, vmacro) -> torch.Tensor:
        """Images (n, 8, 4096) of Fourier transforms (n, n_freq, 2) (:meth:`spectrum_transforms`)
        rotated by ``vsini`` (n,) and broadened by ζ ``vmacro`` (n,) [km/s], float32 tensors;
        differentiable (autograd, forward mode too) unless ``compile``."""
        image = self._render(spectra, vsini, vmacro, self._frequency32, self._transfer_table,
                             *self._taps, self._n_fft)
        return image.view(len(spectra), *self.order_wave.shape)

    def observe(self, image: torch.Tensor, rng: np.random.Generator, draw: Draw | None = None):
        """Slant, add noise and normalise noise-free images (n, 8, 4096).

        Noise at ``snr`` unless ``draw`` (:meth:`Realism.draw`) gives per-spectrum SNRs, masked
        pixels and continuum curvature. Returns ``(noisy, clean)`` float32 tensors, both divided
        by the continuum fitted to the noisy image (see the module docstring).
        """
        if not isinstance(image, torch.Tensor) or image.ndim != 3:
            raise ValueError("image must be a torch tensor of shape (n, n_orders, n_pixels)")
        n, n_orders, n_pixels = image.shape
        if n_pixels % 2:
            raise ValueError(f"orders need an even number of pixels, got {n_pixels}")
        if draw is None:
            draw = Realism().draw(n, n_orders, self.snr, self.order_wave, rng)
        slopes = rng.uniform(-self.slant_max, self.slant_max, size=(n, n_orders))
        bits = rng.integers(0, 2**64, size=(n, n_orders, n_pixels // 2), dtype=np.uint64)
        x = pixel_coordinate(n_pixels, image)
        noisy, clean, total, lowest = self._observe(
            image.to(torch.float32), torch.as_tensor(slopes, dtype=torch.float32),
            draw.curvature, torch.from_numpy(bits.view(np.int32)), x.to(torch.float32),
            draw.noise_scale, draw.usable)
        if not bool(torch.isfinite(total)) and not bool(torch.isfinite(noisy).all()):
            raise ValueError("image contains NaN or infinite values at unmasked pixels")
        if not bool(lowest > 0):
            raise ValueError("the fitted continuum is not positive everywhere; mask bad pixels")
        return noisy, clean

    def _render_and_observe(self, physical, rng) -> tuple[torch.Tensor, torch.Tensor]:
        draw = self.realism.draw(len(physical), self.order_wave.shape[0], self.snr,
                                 self.order_wave, rng)
        image = draw.perturb_lines(self.render_labels(physical, draw.shift_kms))
        return self.observe(image, rng, draw)

    def sample(self, n: int, rng: np.random.Generator | None = None) -> Batch:
        """A :class:`Batch` of ``n`` new spectra (own random generator unless ``rng`` given)."""
        if int(n) != n or n < 1:
            raise ValueError(f"n must be a positive integer, got {n}")
        n = int(n)
        rng = self.rng if rng is None else rng
        physical = self.sample_physical_labels(n, rng)
        if n <= CHUNK:  # a training batch: no copy
            noisy, clean = self._render_and_observe(physical, rng)
        else:  # a test set: filled chunk by chunk (bounds the memory)
            noisy = torch.empty((n, *self.order_wave.shape), dtype=torch.float32)
            clean = torch.empty_like(noisy)
            for start in range(0, n, CHUNK):
                stop = min(n, start + CHUNK)
                noisy[start:stop], clean[start:stop] = self._render_and_observe(
                    physical[start:stop], rng)
        labels = torch.as_tensor(scale_labels(physical), dtype=torch.float32)
        return Batch(noisy, clean, labels, torch.as_tensor(physical, dtype=torch.float64))

    def batches(self, batch_size: int, n_batches: int, rng: np.random.Generator | None = None):
        """Yield ``n_batches`` fresh batches of ``batch_size`` spectra."""
        for _ in range(n_batches):
            yield self.sample(batch_size, rng)

    def settings(self) -> dict:
        """The arguments that determine this generator's output (for cache keys/metadata)."""
        return {
            "snr": self.snr, "box": self.box, "teff_range": self.teff_range,
            "slant_max": self.slant_max, "vsini_range": self.vsini_range, "seed": self.seed,
            "velocity_step_kms": self.velocity_step_kms, "R": self.R, "epsilon": self.epsilon,
            "pad_with_continuum": self.pad_with_continuum, "macroturbulence":
            VMACRO_RELATION if self.macroturbulence else None,
            "realism": self.realism.settings(),
            **({} if self.interpolation == "linear" else {"interpolation": self.interpolation}),
            "order_wave_sha1": hashlib.sha1(self.order_wave.tobytes()).hexdigest(),
        }


# grid → node transforms, per layout (see SpectrumGenerator.node_transforms); entries vanish
# with their grid object
_NODE_TRANSFORMS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

"""Synthetic HARPS-N spectrum images generated on the fly, and fixed, cached test sets.

Pipeline of :meth:`SpectrumGenerator.sample` (one batch):

1. labels: (Teff, log g, [M/H]) uniform over the valid part of the grid (``grid.sample_labels``,
   optionally inside ``box`` / ``teff_range``), v sin i uniform in ``vsini_range`` [km/s];
2. trilinear interpolation between the 8 surrounding grid nodes (``grid.corner_weights``);
3. cubic resampling onto a log-λ grid (``velocity_step_kms``, default 0.5 km/s per pixel);
4. Gray rotation (ε = 0.6) + Gaussian instrument R = 115 000 (:mod:`paper_lib.broadening`);
5. cubic resampling onto the 8 × 4096 HARPS-N pixels (:mod:`paper_lib.echelle`);
6. a random linear slant per order, slope uniform in ±``slant_max`` (relative change from the
   order centre to its end, :func:`paper_lib.echelle.slant_ramp`);
7. Gaussian noise at the requested SNR (definition below), fresh for every call (Box–Muller
   on random bits of the numpy generator, :func:`standard_normal`);
8. :func:`paper_lib.echelle.normalise_orders` – the same continuum normalisation applied to real
   spectra.

Steps 2–4 are linear in the flux, so :meth:`SpectrumGenerator.render_labels` runs them in
Fourier space: every node is resampled, edge-padded, transformed and multiplied by the
instrument profile once (:meth:`SpectrumGenerator.node_transforms`); a batch then costs one
sparse mix of node transforms, one multiplication by each star's rotation transfer function and
one inverse FFT. :meth:`SpectrumGenerator.render` does steps 3–5 literally for any 1D spectra
(``broaden`` etc.); the two agree to float32 rounding (tested). With ``compile=True`` the
rotation, inverse FFT and échelle taps, and steps 6–8, run through ``torch.compile``, which
fuses them into a few C++ loops (:class:`CompiledStep`; the training generators of the ``cpu``
and ``paper`` profiles).

**SNR definition** (used everywhere in the project): per échelle pixel, at the continuum. A pixel
of an order with continuum level c(x) (the slant ramp, 1 ± slant_max) receives Gaussian noise of
standard deviation σ(x) = c(x) / SNR, whatever the line depth at that pixel (additive Gaussian
noise, as in the paper). After normalisation the continuum is ≈ 1 and the noise σ ≈ 1 / SNR.

**Targets.** ``noisy`` is the network input (step 8). ``clean`` is the noise-free slanted image
divided by the *same* continuum that :func:`~paper_lib.echelle.normalise_orders` fitted to the
noisy image, so ``noisy − clean`` is exactly the normalised noise and a denoising auto-encoder
only has to remove noise, not to re-normalise.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import echelle, paths
from .fileio import atomic_path
from .broadening import C_KMS, DEFAULT_EPSILON, DEFAULT_R, Resampler, broaden
from .broadening import fft_layout, gray_transfer_table, instrument_sigma_kms, instrument_transfer
from .broadening import log_lambda_grid, pad_with_edges, rotation_transfer_lookup, weighted_taps
from .grid import scale_labels

# torch warns once that CSR tensors are "beta"; ours are plain (8 corners per row). Set once at
# import: ``catch_warnings`` is not thread-safe and the training loop samples in a thread.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta",
                        category=UserWarning)
# inductor warns, while compiling _render_pixels, that it leaves the complex FFT step to eager
# code ("performance may be worse"); measured: the compiled step is 1.7× faster than eager
warnings.filterwarnings("ignore", message="Torchinductor does not support code generation for "
                        "complex operators", category=UserWarning)

CHUNK = 64  # spectra rendered at once inside sample() (bounds memory; fixed for determinism)
FOURIER_CUT = 1e-7  # the fast path drops frequencies where the instrument transfer is below
TESTSET_FORMAT = 3  # bump when the generator's output for the same arguments changes
# 2: interpolation in Fourier space, torch noise, thinned continuum iterations (issue 4)
# 3: noise by Box–Muller from the numpy generator's bits (standard_normal)


@dataclass
class Batch:
    """A batch of spectrum images and their labels (all torch tensors on one device).

    noisy : (n, 8, 4096) float32 – normalised noisy image, the model input
    clean : (n, 8, 4096) float32 – noise-free image on the same normalisation (DAE target)
    labels : (n, 4) float32 – (Teff, log g, [M/H], v sin i) scaled to [0, 1] (Table 1 ranges)
    labels_physical : (n, 4) float64 – the same in K, dex, dex, km/s
    """

    noisy: torch.Tensor
    clean: torch.Tensor
    labels: torch.Tensor
    labels_physical: torch.Tensor

    def __len__(self) -> int:
        return self.noisy.shape[0]

    def __getitem__(self, index) -> "Batch":
        return Batch(self.noisy[index], self.clean[index], self.labels[index],
                     self.labels_physical[index])

    def to(self, device) -> "Batch":
        return Batch(self.noisy.to(device), self.clean.to(device), self.labels.to(device),
                     self.labels_physical.to(device))


def _check_positive(value, name: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value


class SpectrumGenerator:
    """Random synthetic HARPS-N images with continuous labels (see the module docstring).

    Parameters
    ----------
    grid : paper_lib.grid.Grid
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
        Pixel wavelengths [Å]; default :func:`paper_lib.echelle.order_wavelengths`.
    pad_with_continuum : bool
        If the grid does not cover the orders (e.g. the 5030–5370 Å reference grid used in
        tests), extend it with continuum (flux 1) instead of raising ValueError.
    compile : bool
        Run the rotation, inverse FFT and échelle taps, and the observing steps (slant, noise,
        normalisation), through ``torch.compile`` (see :class:`CompiledStep`): 1.5–1.7× more
        spectra per second on 2 CPU cores, after a one-off compilation (≈ 25 s, then cached on
        disk). The images match
        the eager ones to float32 rounding, except where a pixel sits on a clipping threshold
        of the continuum fit and the order's continuum moves a little (measured over 256 stars
        per SNR 5–300: max |Δ| 7e-4, 1.5 % of the noise σ at SNR 20; < 1 % of the pixels move
        by more than 1e-5). Deterministic for a seed either way. Off by default (test sets are
        generated eagerly, bit for bit reproducible); the training generators of the ``cpu`` and
        ``paper`` profiles use it (``Profile.compile_generator``).
    """

    def __init__(self, grid, *, snr: float, box: dict | None = None, teff_range=None,
                 slant_max: float = 0.05, vsini_range=(0.0, 30.0), seed: int,
                 velocity_step_kms: float = 0.5, R: float = DEFAULT_R,
                 epsilon: float = DEFAULT_EPSILON, order_wave=None,
                 pad_with_continuum: bool = False, compile: bool = False):
        self.grid = grid
        self.snr = _check_positive(snr, "snr")
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
        self.velocity_step_kms = _check_positive(velocity_step_kms, "velocity_step_kms")
        self.R = R
        self.epsilon = float(epsilon)
        self.order_wave = (echelle.order_wavelengths() if order_wave is None
                           else np.asarray(order_wave, dtype=np.float64))
        self.pad_with_continuum = bool(pad_with_continuum)
        self.compile = bool(compile)
        self._render = COMPILED_RENDER if self.compile else _render_pixels
        self._observe = COMPILED_OBSERVE if self.compile else _observe_pixels
        self._setup_wavelengths()

    # ------------------------------------------------------------------ set-up
    def _setup_wavelengths(self) -> None:
        """Log-λ grid around the orders and the (cached) resamplers between the grids."""
        margin_kms = self.vsini_range[1] + 7.0 * instrument_sigma_kms(self.R or DEFAULT_R)
        margin_kms += 4.0 * self.velocity_step_kms
        lo = self.order_wave.min() * (1.0 - margin_kms / 299792.458)
        hi = self.order_wave.max() * (1.0 + margin_kms / 299792.458)
        self.log_wave = log_lambda_grid(lo, hi, self.velocity_step_kms)

        wave = np.asarray(self.grid.wavelength, dtype=np.float64)
        self._pad = (0, 0)
        if wave[0] > self.log_wave[0] or wave[-1] < self.log_wave[-1]:
            if not self.pad_with_continuum:
                raise ValueError(
                    f"the grid covers {wave[0]:.2f}–{wave[-1]:.2f} Å but the échelle orders "
                    f"with the broadening margin need {self.log_wave[0]:.2f}–"
                    f"{self.log_wave[-1]:.2f} Å; use a grid over 5020–5400 Å "
                    f"(or pad_with_continuum=True for tests)"
                )
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
                                                self.velocity_step_kms, self.R)
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
            per_grid[key] = self._compute_node_transforms()
        return per_grid[key]

    def _compute_node_transforms(self) -> torch.Tensor:
        n_nodes, n_freq = self.grid.flux.shape[0], len(self._frequency)
        out = torch.empty((n_nodes, n_freq, 2), dtype=torch.float32)
        instrument = (torch.ones(n_freq, dtype=torch.float64) if self.R is None
                      else instrument_transfer(self._frequency, self.R))
        for start in range(0, n_nodes, 256):
            block = torch.as_tensor(np.asarray(self.grid.flux[start:start + 256],
                                               dtype=np.float32))
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

    def render(self, flux, vsini) -> torch.Tensor:
        """Noise-free, unslanted images (n, 8, 4096) float32 of 1D grid-sampled spectra.

        ``flux`` (n, n_wave) numpy/torch on ``grid.wavelength``; ``vsini`` (n,) [km/s].
        Raises ValueError for a wrong shape or non-finite values.
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
                            self.velocity_step_kms, R=self.R, epsilon=self.epsilon)
        return self._to_orders(broadened)

    def render_labels(self, physical) -> torch.Tensor:
        """Noise-free, unslanted images (n, 8, 4096) float32 for labels (n, 4) [K, dex, dex, km/s].

        The same as ``render(grid.interpolate(labels[:, :3]), labels[:, 3])`` (to float32
        rounding, ~1e-6), but several times faster: interpolation, log-λ resampling, padding
        and the FFT are all linear, so the trilinear mix of the 8 surrounding nodes is taken
        directly between their precomputed transforms (:meth:`node_transforms`, which already
        hold the instrument profile), multiplied by the rotation transfer function of each
        v sin i and inverse-transformed once. Raises :class:`~paper_lib.grid.OutsideGridError` for labels outside the grid or
        in its holes, ValueError for a negative or non-finite v sin i or one above
        ``vsini_range`` (the FFT's padding covers the rotation up to its maximum).
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
        rows, weights = self.grid.corner_weights(physical[:, :3])
        nodes = self.node_transforms()
        n = len(rows)
        mixing = torch.sparse_csr_tensor(
            torch.arange(0, 8 * n + 1, 8), torch.from_numpy(rows.ravel()),
            torch.from_numpy(weights.ravel().astype(np.float32)), size=(n, len(nodes)),
            check_invariants=False)  # built right here: 8 column indices per row, all valid
        image = self._render((mixing @ nodes).view(n, -1, 2),
                             torch.from_numpy(vsini.astype(np.float32)), self._frequency32,
                             self._transfer_table, *self._taps, self._n_fft)
        return image.view(n, *self.order_wave.shape)

    def observe(self, image: torch.Tensor, rng: np.random.Generator):
        """Slant, add noise at ``snr`` and normalise noise-free images (n, 8, 4096).

        Returns ``(noisy, clean)`` float32 tensors, both divided by the continuum fitted to
        the noisy image (see the module docstring).
        """
        if not isinstance(image, torch.Tensor) or image.ndim != 3:
            raise ValueError("image must be a torch tensor of shape (n, n_orders, n_pixels)")
        n, n_orders, n_pixels = image.shape
        if n_pixels % 2:
            raise ValueError(f"orders need an even number of pixels, got {n_pixels}")
        slopes = rng.uniform(-self.slant_max, self.slant_max, size=(n, n_orders))
        bits = rng.integers(0, 2**64, size=(n, n_orders, n_pixels // 2), dtype=np.uint64)
        x = echelle.pixel_coordinate(n_pixels, image)
        noisy, clean, total, lowest = self._observe(
            image.to(torch.float32), torch.as_tensor(slopes, dtype=torch.float32),
            torch.from_numpy(bits.view(np.int32)), x.to(torch.float32), 1.0 / self.snr)
        if not bool(torch.isfinite(total)) and not bool(torch.isfinite(noisy).all()):
            raise ValueError("image contains NaN or infinite values at unmasked pixels")
        if not bool(lowest > 0):
            raise ValueError("the fitted continuum is not positive everywhere; mask bad pixels")
        return noisy, clean

    def sample(self, n: int, rng: np.random.Generator | None = None) -> Batch:
        """A :class:`Batch` of ``n`` new spectra (own random generator unless ``rng`` given)."""
        if int(n) != n or n < 1:
            raise ValueError(f"n must be a positive integer, got {n}")
        n = int(n)
        rng = self.rng if rng is None else rng
        physical = self.sample_physical_labels(n, rng)
        if n <= CHUNK:  # a training batch: no copy
            noisy, clean = self.observe(self.render_labels(physical), rng)
        else:  # a test set: filled chunk by chunk (bounds the memory)
            noisy = torch.empty((n, *self.order_wave.shape), dtype=torch.float32)
            clean = torch.empty_like(noisy)
            for start in range(0, n, CHUNK):
                stop = min(n, start + CHUNK)
                image = self.render_labels(physical[start:stop])
                noisy[start:stop], clean[start:stop] = self.observe(image, rng)
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
            "pad_with_continuum": self.pad_with_continuum,
            "order_wave_sha1": hashlib.sha1(self.order_wave.tobytes()).hexdigest(),
        }


def _render_pixels(spectra: torch.Tensor, vsini: torch.Tensor, frequency: torch.Tensor,
                   table: torch.Tensor, tap_index: torch.Tensor, tap_weight: torch.Tensor,
                   n_fft: int) -> torch.Tensor:
    """Rotate, inverse-transform and resample onto the échelle pixels: (n, m, 2) → (n, n_pixels).

    ``spectra``: Fourier transforms (real, imaginary) at ``frequency`` (m,) [cycles per km/s],
    each multiplied by Gray's rotation transfer function of its star's ``vsini`` (n,) [km/s]
    (``table``: see :func:`~paper_lib.broadening.rotation_transfer_lookup`), inverse-FFT-ed to
    ``n_fft`` log-λ samples and resampled by the Keys taps ``tap_index``, ``tap_weight``
    (k, n_pixels) of :class:`~paper_lib.broadening.Resampler` (consecutive samples).
    """
    rotated = spectra * rotation_transfer_lookup(table, frequency, vsini)[..., None]
    flux = torch.fft.irfft(torch.view_as_complex(rotated), n=n_fft)
    if torch.compiler.is_compiling():  # one indexed load per pixel, then k contiguous ones
        windows = flux.unfold(-1, tap_index.shape[0], 1)[..., tap_index[0], :]
        return (windows * tap_weight.T).sum(-1)
    return weighted_taps(flux, tap_index, tap_weight)  # eagerly the fastest form


def standard_normal(bits: torch.Tensor) -> torch.Tensor:
    """Standard normal float32 deviates from uniform random 32-bit words (Box–Muller).

    ``bits`` (..., 2m) int32 (any bit pattern, e.g. a numpy uint64 array viewed as int32) →
    (..., 2m) float32. The low 24 bits of word i < m give u₁ = (2k + 1)/2²⁵ ∈ (0, 1), those of
    word m + i the angle θ = 2π·k/2²⁴; out[i] = √(−2 ln u₁)·cos θ and out[m + i] =
    √(−2 ln u₁)·sin θ are independent N(0, 1) (G. E. P. Box & M. E. Muller 1958). The 24-bit u₁
    bounds |out| by √(50 ln 2) ≈ 5.9: a tail of probability 4e-9 is cut, as with any float32
    uniform. Pure tensor code, so ``torch.compile`` fuses it with the use of the noise.
    """
    k = torch.bitwise_and(bits, 0xFFFFFF).to(torch.float32)
    half = k.shape[-1] // 2
    radius = torch.sqrt(-2.0 * torch.log((2.0 * k[..., :half] + 1.0) * 2.0**-25))
    theta = (2.0 * math.pi / 2.0**24) * k[..., half:]
    return torch.cat([radius * torch.cos(theta), radius * torch.sin(theta)], dim=-1)


def _observe_pixels(image: torch.Tensor, slopes: torch.Tensor, bits: torch.Tensor,
                    x: torch.Tensor, noise_scale: float):
    """Slant, noise and continuum normalisation of noise-free images (n, n_orders, n_pixels).

    ``slopes`` (n, n_orders) of the slant; ``bits`` random int32 words like ``image``, turned
    into standard normal noise by :func:`standard_normal`; ``x`` the pixel coordinate in
    [−1, 1]; ``noise_scale`` = 1 / SNR. Returns (noisy, clean, Σ noisy, min continuum): both
    images divided by the continuum fitted to the noisy one, and the two numbers
    :meth:`SpectrumGenerator.observe` checks (a finite sum, a positive continuum).
    """
    ramp = 1.0 + slopes[..., None] * x  # echelle.slant_ramp
    slanted = image * ramp
    noisy = torch.addcmul(slanted, standard_normal(bits), ramp, value=noise_scale)
    a, b = echelle.fit_continuum(x, noisy)
    continuum = torch.addcmul(a, b, x)
    return noisy / continuum, slanted / continuum, noisy.sum(), continuum.amin()


class CompiledStep:
    """``function`` run through ``torch.compile`` (inductor: fused C++ loops on the CPU).

    Compiled at the first call (≈ 25 s on 2 cores; inductor's disk cache, by default under
    ``/tmp/torchinductor_<user>`` or wherever ``TORCHINDUCTOR_CACHE_DIR`` points, lets later
    processes load it in a few seconds), and again for a new SNR or when the batch size first
    changes (after that, for any batch size). Where compiling fails (no working C++ compiler, an unsupported
    platform) it warns once, says why, and runs ``function`` as it is from then on.
    """

    def __init__(self, function):
        self.function = function
        self._compiled = None
        self.failed: str | None = None

    def __call__(self, *args):
        if self.failed is not None:
            return self.function(*args)
        if self._compiled is None:
            self._compiled = torch.compile(self.function)
        try:
            return self._compiled(*args)
        except Exception as error:  # noqa: BLE001 - any compiler failure: run eagerly
            self.failed = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
            warnings.warn(f"torch.compile failed for {self.function.__name__} ({self.failed}); "
                          "the generator runs uncompiled (1.5–1.7× slower). A C++ compiler "
                          "(e.g. `apt-get install g++`) is what inductor usually lacks.",
                          RuntimeWarning, stacklevel=2)
            return self.function(*args)


COMPILED_RENDER = CompiledStep(_render_pixels)
COMPILED_OBSERVE = CompiledStep(_observe_pixels)

# grid → node transforms, per layout (see SpectrumGenerator.node_transforms); entries vanish
# with their grid object
_NODE_TRANSFORMS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------------------- test sets


def grid_checksum(grid) -> str:
    """SHA-1 of a grid's wavelengths, labels and flux (identifies it in cache keys)."""
    digest = hashlib.sha1()
    for array, dtype in ((grid.wavelength, np.float64), (grid.labels, np.float64),
                         (grid.flux, np.float32)):
        digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return digest.hexdigest()


def _testset_path(grid, n: int, settings: dict, storage_dtype: str) -> Path:
    key = json.dumps({"grid": grid_checksum(grid), "n": n, "format": TESTSET_FORMAT,
                      "storage_dtype": storage_dtype, **settings}, sort_keys=True, default=list)
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    name = f"testset_n{n}_snr{settings['snr']:g}_seed{settings['seed']}_{digest}.npz"
    return paths.cache_dir() / "testsets" / name


def _save_atomic(path: Path, arrays: dict) -> None:
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as stream:
        np.savez(stream, **arrays)


def _batch_from_arrays(arrays) -> Batch:
    return Batch(
        torch.from_numpy(np.asarray(arrays["noisy"], dtype=np.float32)),
        torch.from_numpy(np.asarray(arrays["clean"], dtype=np.float32)),
        torch.from_numpy(np.asarray(arrays["labels"], dtype=np.float32)),
        torch.from_numpy(np.asarray(arrays["labels_physical"], dtype=np.float64)),
    )


def make_test_set(grid, n: int, snr: float, seed: int, *, box: dict | None = None,
                  teff_range=None, cache: bool = True, storage_dtype: str = "float16",
                  **generator_kwargs) -> Batch:
    """A fixed, seeded test set of ``n`` spectra at ``snr`` (paper: 5667 spectra).

    Generated by a :class:`SpectrumGenerator` (extra keyword arguments go to it) and, with
    ``cache=True``, stored once under ``paths.cache_dir()/testsets/`` as ``.npz`` (written to a
    temporary file and renamed, so an interrupted run never leaves a broken file). The file name
    holds n, SNR, seed and a hash of the grid's contents and of every generator setting, so a
    changed grid or setting makes a new set. Images are stored as ``storage_dtype`` (float16
    halves the 2 × n × 8 × 4096 floats; its rounding, ≤ 2.4e-4 near 1, is far below the noise
    σ = 1/SNR ≥ 3.3e-3 for SNR ≤ 300); the returned batch is always the stored one, so a first
    and a cached call give identical tensors. Errors of the grid (labels outside it or in holes)
    propagate.
    """
    if storage_dtype not in ("float16", "float32"):
        raise ValueError(f"storage_dtype must be 'float16' or 'float32', got {storage_dtype!r}")
    generator = SpectrumGenerator(grid, snr=snr, box=box, teff_range=teff_range, seed=seed,
                                  **generator_kwargs)
    path = _testset_path(grid, int(n), generator.settings(), storage_dtype)
    if cache and path.exists():
        with np.load(path) as arrays:
            return _batch_from_arrays(arrays)
    batch = generator.sample(int(n))
    arrays = {
        "noisy": batch.noisy.numpy().astype(storage_dtype),
        "clean": batch.clean.numpy().astype(storage_dtype),
        "labels": batch.labels.numpy(),
        "labels_physical": batch.labels_physical.numpy(),
        "settings": np.array(json.dumps(generator.settings(), default=list)),
    }
    del batch  # the float32 images: 2 × n × 128 KiB
    if cache:
        _save_atomic(path, arrays)
    return _batch_from_arrays(arrays)

"""What real spectra have that the paper's synthetic images lack: the options of a generator that
trains a network for real data (the ``_real`` variants; the paper's variants use none of them).

* **SNR range**: each spectrum gets its own SNR, log-uniform in ``snr_range`` (real HARPS-N
  spectra have SNR 20–300; the paper trains at one SNR);
* **CCD gap**: with probability ``gap_probability`` the pixels of the HARPS CCD gap
  (:data:`paper_lib.instrument.HARPS_CCD_GAP_A`, moved by up to ± ``gap_shift_A`` for the star's
  radial velocity and the barycentric correction) carry no data: they are left out of the
  continuum fit and filled with 1.0, exactly as :func:`paper_lib.observed.model_input.to_model_input`
  treats a real spectrum;
* **residual radial velocity**: a Gaussian shift of σ = ``rv_jitter_kms`` (what the
  cross-correlation leaves, a few hundred m/s), a phase ramp in Fourier space;
* **continuum errors**: a quadratic term c·(x² − 1/3) per order on top of the linear slant,
  |c| ≤ ``curvature_max`` — blaze and continuum residuals that the linear continuum fit cannot
  remove;
* **line-strength errors**: the synthesis's lines are not the star's (oscillator strengths,
  damping and abundances are uncertain by ~0.1 dex a line). Each noise-free pixel's flux f
  becomes f^(e^ε): ε is a Gaussian random field of σ ``line_strength_sigma`` (natural log; an
  error of δ dex in log gf is ε = δ·ln 10) along each order, correlated over
  ``line_strength_scale_px`` pixels (a Gaussian kernel of that σ: about a line's half width),
  so every line is made stronger or weaker by its own factor — a weak line's depth by e^ε, a
  saturated core hardly at all, the continuum (f = 1) never, and no line turns into emission.
  A network trained so cannot lean on any single line's strength.
* **masked wavelengths**: rest-frame intervals ``masked_wavelengths`` ((lo, hi) Å, …) never
  shown — a line mask: their pixels are left out of the continuum fit and filled with 1.0 in
  every spectrum, as the CCD gap is (:func:`masked_pixels`; a real spectrum must get the same
  mask before such a network reads it).

:meth:`Realism.draw` makes one batch's random choices; with every option off it draws nothing,
so a generator without realism produces the same random stream as before.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..instrument import HARPS_CCD_GAP_A


@dataclass(frozen=True)
class Draw:
    """One batch's random realism: noise σ per spectrum (n, 1, 1), pixels with data (n, orders,
    pixels) or None, velocity shifts [km/s] (n,) or None, quadratic terms (n, orders)."""

    noise_scale: torch.Tensor
    usable: torch.Tensor | None
    shift_kms: np.ndarray | None
    curvature: torch.Tensor
    strength: torch.Tensor | None = None  # ε (n, orders, pixels) of the line strengths, or None

    def perturb_lines(self, image: torch.Tensor) -> torch.Tensor:
        """Noise-free images (n, orders, pixels) with every pixel's flux f → f^(e^ε)
        (unchanged without line-strength errors)."""
        if self.strength is None:
            return image
        return torch.exp(torch.log(image.clamp_min(1e-6)) * torch.exp(self.strength))


@dataclass(frozen=True)
class Realism:
    """Realism options (see the module docstring); the defaults switch everything off."""

    snr_range: tuple | None = None  # (lo, hi): per-spectrum SNR, log-uniform
    gap_probability: float = 0.0  # fraction of spectra with the HARPS CCD gap masked
    gap_shift_A: float = 1.5  # the gap moves by up to ± this many Å
    rv_jitter_kms: float = 0.0  # σ of the residual radial velocity [km/s]
    curvature_max: float = 0.0  # max |quadratic continuum term| per order
    line_strength_sigma: float = 0.0  # σ of ε, the line-strength error (natural log)
    line_strength_scale_px: float = 4.0  # its correlation length along an order [pixels]
    masked_wavelengths: tuple = ()  # ((lo, hi) Å, …): rest-frame pixels never shown

    def __post_init__(self):
        intervals = tuple((float(lo), float(hi)) for lo, hi in self.masked_wavelengths)
        if not all(math.isfinite(lo) and math.isfinite(hi) and lo < hi for lo, hi in intervals):
            raise ValueError("masked_wavelengths must be (lo, hi) pairs in Å with lo < hi")
        object.__setattr__(self, "masked_wavelengths", intervals)
        if self.snr_range is not None:
            lo, hi = (float(v) for v in self.snr_range)
            if not 0.0 < lo <= hi or not math.isfinite(hi):
                raise ValueError(f"snr_range must satisfy 0 < lo <= hi, got {self.snr_range}")
            object.__setattr__(self, "snr_range", (lo, hi))
        if not 0.0 <= self.gap_probability <= 1.0:
            raise ValueError(f"gap_probability must lie in [0, 1], got {self.gap_probability}")
        for name in ("gap_shift_A", "rv_jitter_kms", "curvature_max", "line_strength_sigma",
                     "line_strength_scale_px"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be finite and ≥ 0, got {value}")

    @property
    def active(self) -> bool:
        return self != Realism()

    def settings(self) -> dict | None:
        """The options (for cache keys), or None when everything is off; the line-strength
        options only when they are on (so older settings keep their keys)."""
        if not self.active:
            return None
        settings = asdict(self)
        if self.line_strength_sigma == 0.0:
            del settings["line_strength_sigma"], settings["line_strength_scale_px"]
        if not self.masked_wavelengths:
            del settings["masked_wavelengths"]
        return settings

    def draw(self, n: int, n_orders: int, snr: float, order_wave: np.ndarray,
             rng: np.random.Generator) -> Draw:
        """Random choices for ``n`` spectra; ``snr`` is used when there is no ``snr_range``."""
        if self.snr_range is None:
            snrs = np.full(n, float(snr))
        else:
            snrs = np.exp(rng.uniform(*np.log(self.snr_range), size=n))
        usable = None
        if self.gap_probability > 0.0:
            usable = self._gap_mask(n, order_wave, rng)
        if self.masked_wavelengths:
            shown = ~torch.from_numpy(masked_pixels(order_wave, self.masked_wavelengths))
            usable = shown.expand(n, *shown.shape) if usable is None else usable & shown
        shift = rng.normal(0.0, self.rv_jitter_kms, size=n) if self.rv_jitter_kms > 0 else None
        curvature = np.zeros((n, n_orders))
        if self.curvature_max > 0.0:
            curvature = rng.uniform(-self.curvature_max, self.curvature_max, size=(n, n_orders))
        strength = None
        if self.line_strength_sigma > 0.0:
            strength = self._strength_field(n, order_wave.shape, rng)
        return Draw(torch.as_tensor(1.0 / snrs, dtype=torch.float32).view(n, 1, 1), usable,
                    shift, torch.as_tensor(curvature, dtype=torch.float32), strength)

    def _strength_field(self, n: int, shape, rng: np.random.Generator) -> torch.Tensor:
        """ε (n, orders, pixels): white noise smoothed along each order by a Gaussian of σ
        ``line_strength_scale_px`` pixels, scaled to σ ``line_strength_sigma``."""
        n_orders, n_pixels = shape
        scale = self.line_strength_scale_px
        half = max(1, int(math.ceil(4.0 * scale)))
        offsets = torch.arange(-half, half + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (offsets / max(scale, 1e-3)) ** 2)
        kernel = kernel / torch.sqrt((kernel ** 2).sum())  # unit variance after smoothing
        white = torch.from_numpy(rng.standard_normal((n * n_orders, 1, n_pixels + 2 * half),
                                                     dtype=np.float32))
        field = torch.nn.functional.conv1d(white, kernel.view(1, 1, -1))
        return (self.line_strength_sigma * field).view(n, n_orders, n_pixels)

    def _gap_mask(self, n: int, order_wave: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        has_gap = rng.random(n) < self.gap_probability
        shift = rng.uniform(-self.gap_shift_A, self.gap_shift_A, size=n)
        wave = torch.as_tensor(order_wave, dtype=torch.float64)[None]
        lo = torch.as_tensor(HARPS_CCD_GAP_A[0] + shift).view(n, 1, 1)
        hi = torch.as_tensor(HARPS_CCD_GAP_A[1] + shift).view(n, 1, 1)
        inside = (wave >= lo) & (wave <= hi) & torch.as_tensor(has_gap).view(n, 1, 1)
        return ~inside


def shift_spectra(spectra: torch.Tensor, frequency: torch.Tensor, shift_kms) -> torch.Tensor:
    """Fourier transforms (n, m, 2) of log-λ spectra shifted by ``shift_kms`` (n,) [km/s].

    A positive shift moves every feature to longer wavelengths (a redshift): F(f)·e^{−2πi f v}
    with ``frequency`` (m,) in cycles per km/s.
    """
    phase = -2.0 * math.pi * torch.as_tensor(shift_kms, dtype=torch.float64)[:, None] * frequency
    cos, sin = torch.cos(phase).to(spectra.dtype), torch.sin(phase).to(spectra.dtype)
    real, imag = spectra[..., 0], spectra[..., 1]
    return torch.stack([real * cos - imag * sin, real * sin + imag * cos], dim=-1)


def masked_pixels(order_wave, intervals) -> np.ndarray:
    """Boolean like ``order_wave`` [Å]: True where a pixel's wavelength lies in one of the
    ``intervals`` ((lo, hi) Å, …; inclusive)."""
    wave = np.asarray(order_wave, dtype=np.float64)
    masked = np.zeros(wave.shape, dtype=bool)
    if len(intervals):
        edges = np.array(sorted(intervals))
        index = np.searchsorted(edges[:, 0], wave, side="right") - 1
        reach = np.maximum.accumulate(edges[:, 1])  # overlapping intervals: the farthest end
        masked = (index >= 0) & (wave <= reach[np.clip(index, 0, None)])
    return masked

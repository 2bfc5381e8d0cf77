"""The generator's two tensor steps, pure and branch-free so that ``torch.compile`` can fuse them.

* :func:`render_pixels` – rotate (Gray's transfer function), add macroturbulence (radial–
  tangential), inverse-FFT and resample onto the échelle pixels: (n, m, 2) Fourier transforms →
  (n, n_pixels) images;
* :func:`observe_pixels` – slant (and curvature), Gaussian noise (:func:`standard_normal`,
  Box–Muller) and the continuum normalisation of noise-free images, with optional masked pixels.

:class:`CompiledStep` runs either through ``torch.compile`` (inductor: fused C++ loops on the
CPU) and falls back to eager code, with one warning, where compiling fails.
"""

from __future__ import annotations

import math
import warnings

import torch

from ..synthetic.broadening import macroturbulence_transfer, rotation_transfer_lookup
from ..synthetic.resample import weighted_taps
from .continuum import fit_continuum

# inductor warns, while compiling render_pixels, that it leaves the complex FFT step to eager
# code ("performance may be worse"); measured: the compiled step is 1.7× faster than eager
warnings.filterwarnings("ignore", message="Torchinductor does not support code generation for "
                        "complex operators", category=UserWarning)


def render_pixels(spectra: torch.Tensor, vsini: torch.Tensor, vmacro: torch.Tensor,
                  frequency: torch.Tensor, table: torch.Tensor, tap_index: torch.Tensor,
                  tap_weight: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Rotate, inverse-transform and resample onto the échelle pixels: (n, m, 2) → (n, n_pixels).

    ``spectra``: Fourier transforms (real, imaginary) at ``frequency`` (m,) [cycles per km/s],
    each multiplied by Gray's rotation transfer function of its star's ``vsini`` (n,) [km/s]
    (``table``: see :func:`~paper_lib.synthetic.broadening.rotation_transfer_lookup`) and by the
    radial–tangential macroturbulence transfer of its ``vmacro`` (n,) ζ [km/s], inverse-FFT-ed to
    ``n_fft`` log-λ samples and resampled by the Keys taps ``tap_index``, ``tap_weight``
    (k, n_pixels) of :class:`~paper_lib.synthetic.resample.Resampler` (consecutive samples).
    """
    transfer = (rotation_transfer_lookup(table, frequency, vsini)
                * macroturbulence_transfer(frequency, vmacro))
    rotated = spectra * transfer[..., None]
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


def observe_pixels(image: torch.Tensor, slopes: torch.Tensor, curvature: torch.Tensor,
                   bits: torch.Tensor, x: torch.Tensor, noise_scale: torch.Tensor, usable=None):
    """Slant, noise and continuum normalisation of noise-free images (n, n_orders, n_pixels).

    ``slopes``, ``curvature`` (n, n_orders) of the continuum ramp 1 + s·x + c·(x² − 1/3);
    ``bits`` random int32 words like ``image``, turned into standard normal noise by
    :func:`standard_normal`; ``x`` the pixel coordinate in [−1, 1]; ``noise_scale`` (n, 1, 1)
    = 1 / SNR of each spectrum; ``usable`` None or bool like ``image``: pixels without data are
    left out of the continuum fit and set to 1.0 in both images (as for real spectra). Returns
    (noisy, clean, Σ noisy, min continuum): both images divided by the continuum fitted to the
    noisy one, and the two numbers :meth:`SpectrumGenerator.observe` checks (a finite sum, a
    positive continuum).
    """
    ramp = 1.0 + slopes[..., None] * x + curvature[..., None] * (x * x - 1.0 / 3.0)
    slanted = image * ramp
    noisy = slanted + standard_normal(bits) * ramp * noise_scale
    a, b = fit_continuum(x, noisy, usable)
    continuum = torch.addcmul(a, b, x)
    noisy, clean = noisy / continuum, slanted / continuum
    if usable is not None:
        noisy, clean = torch.where(usable, noisy, 1.0), torch.where(usable, clean, 1.0)
    return noisy, clean, noisy.sum(), continuum.amin()


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


COMPILED_RENDER = CompiledStep(render_pixels)
COMPILED_OBSERVE = CompiledStep(observe_pixels)

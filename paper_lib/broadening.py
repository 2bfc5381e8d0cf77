"""Rotational and instrumental broadening of normalised spectra, batched in torch.

Both broadenings are convolutions in *velocity*: a star rotating with projected velocity
v sin i shifts each surface element by Δλ/λ = v/c, and a spectrograph with resolving power R
has a profile of FWHM Δλ/λ = 1/R. On a grid that is uniform in ln λ (a constant velocity
step per pixel, see :func:`log_lambda_grid`) one kernel is therefore exact over the whole
range, so a batch of spectra is broadened with a single FFT per spectrum.

* Rotation: Gray's profile with linear limb darkening ε (Gray, *The Observation and Analysis
  of Stellar Photospheres*, eq. 18.14), in velocity units, x = v / (v sin i):

      G(x) = [2(1 − ε)√(1 − x²) + (πε/2)(1 − x²)] / [π v sin i (1 − ε/3)],   |x| < 1,

  whose Fourier transform is analytic (k = 2π f v sin i, f in cycles per km/s):

      Ĝ(f) = [2(1 − ε) J₁(k)/k + 2ε j₁(k)/k] / (1 − ε/3)

  (J₁ Bessel, j₁ spherical Bessel function); Ĝ(0) = 1 and Ĝ ≡ 1 for v sin i = 0.
* Instrument: a Gaussian of FWHM c/R km/s (σ = c / (2.3548 R)), transform exp(−2π²σ²f²).

:func:`broaden` multiplies the FFT of each (edge-padded) spectrum by these exact transforms,
i.e. it convolves the band-limited interpolant of the samples with the continuous profiles.
This is exact for any v sin i, including v sin i = 0 and values below one pixel (no
discretisation of the sharp-edged rotation profile; a profile integrated over each pixel
would widen it by Δv²/12 in variance, ~1e-3 errors in line depths at Δv = 0.5 km/s).
:func:`rotation_kernel` (bin-integrated, sums to one) and :func:`instrument_kernel` give the
same profiles in pixel space, for figures and direct convolutions.

Edges are padded with the first/last flux value (the continuum of a normalised spectrum),
never with zeros. Resampling between a linear-λ grid and the log-λ grid uses Keys' cubic
convolution (or linear) interpolation, see :class:`Resampler`.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import torch

C_KMS = 299792.458  # speed of light [km/s]
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
DEFAULT_R = 115000.0  # HARPS-N resolving power
DEFAULT_EPSILON = 0.6  # linear limb-darkening coefficient
INSTRUMENT_N_SIGMA = 6.0  # half-width of the instrument kernel in Gaussian σ


# helpers ---------------------------------------------------------------------------------


def _as_1d_float_array(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _check_positive(value: float, name: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a positive finite number, got {value}")
    return value


def _check_epsilon(epsilon: float) -> float:
    epsilon = float(epsilon)
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"limb-darkening coefficient epsilon must lie in [0, 1], got {epsilon}")
    return epsilon


# grids and resampling ---------------------------------------------------------------------


def log_lambda_grid(wave_min: float, wave_max: float, velocity_step_kms: float) -> np.ndarray:
    """Wavelengths [Å] uniformly spaced in ln λ, from ``wave_min`` to at least ``wave_max``.

    λ_i = wave_min · exp(i · Δv / c) for i = 0 … n−1, with Δv = ``velocity_step_kms`` [km/s];
    the last point is the first one ≥ ``wave_max`` so the grid covers the whole interval.
    """
    wave_min = _check_positive(wave_min, "wave_min")
    wave_max = _check_positive(wave_max, "wave_max")
    step = _check_positive(velocity_step_kms, "velocity_step_kms")
    if wave_max <= wave_min:
        raise ValueError(f"wave_max ({wave_max} Å) must exceed wave_min ({wave_min} Å)")
    dlog = step / C_KMS
    n = int(math.ceil(math.log(wave_max / wave_min) / dlog - 1e-9)) + 1
    return wave_min * np.exp(dlog * np.arange(n))


def log_lambda_step_kms(log_wave) -> float:
    """The constant velocity step [km/s] of a grid made by :func:`log_lambda_grid`.

    Raises ValueError if the grid is not uniform in ln λ (relative deviation > 1e-6).
    """
    log_wave = _as_1d_float_array(log_wave, "log_wave")
    steps = np.diff(np.log(log_wave)) * C_KMS
    if steps.size == 0 or np.any(steps <= 0):
        raise ValueError("log_wave must be strictly increasing with at least two points")
    if np.ptp(steps) > 1e-6 * steps.mean():
        raise ValueError("log_wave is not uniformly spaced in ln λ")
    return float(steps.mean())


def _keys_cubic_weights(t: np.ndarray) -> np.ndarray:
    """Keys (1981) cubic-convolution weights (a = −0.5) of nodes i−1, i, i+1, i+2 at i + t."""
    t2, t3 = t * t, t * t * t
    return np.stack(
        [
            -0.5 * t3 + t2 - 0.5 * t,
            1.5 * t3 - 2.5 * t2 + 1.0,
            -1.5 * t3 + 2.0 * t2 + 0.5 * t,
            0.5 * t3 - 0.5 * t2,
        ],
        axis=-1,
    )


def interpolation_weights(x_in, x_out, *, kind: str = "cubic") -> tuple[np.ndarray, np.ndarray]:
    """Sparse interpolation from samples at ``x_in`` to points ``x_out``.

    Returns ``(index, weight)`` of shape (len(x_out), k), k = 2 (linear) or 4 (Keys cubic), so
    that ``y_out = sum(y_in[..., index] * weight, -1)``. ``x_in`` must be strictly increasing and
    (for ``"cubic"``) close to uniformly spaced; nodes beyond the ends repeat the end values.
    Every ``x_out`` must lie within [x_in[0], x_in[-1]] (ValueError otherwise).
    """
    x_in = _as_1d_float_array(x_in, "x_in")
    x_out = _as_1d_float_array(x_out, "x_out")
    if x_in.size < 2 or np.any(np.diff(x_in) <= 0):
        raise ValueError("x_in must be strictly increasing with at least two points")
    span = x_in[-1] - x_in[0]
    tolerance = 1e-9 * span
    if x_out.min() < x_in[0] - tolerance or x_out.max() > x_in[-1] + tolerance:
        raise ValueError(
            f"requested points [{x_out.min():.6f}, {x_out.max():.6f}] lie outside the "
            f"input range [{x_in[0]:.6f}, {x_in[-1]:.6f}]"
        )
    n = x_in.size
    i = np.clip(np.searchsorted(x_in, x_out, side="right") - 1, 0, n - 2)
    t = np.clip((x_out - x_in[i]) / (x_in[i + 1] - x_in[i]), 0.0, 1.0)
    if kind == "linear":
        index = np.stack([i, i + 1], axis=-1)
        weight = np.stack([1.0 - t, t], axis=-1)
    elif kind == "cubic":
        index = np.clip(i[:, None] + np.arange(-1, 3)[None, :], 0, n - 1)
        weight = _keys_cubic_weights(t)
    else:
        raise ValueError(f"kind must be 'linear' or 'cubic', got {kind!r}")
    return index.astype(np.int64), weight


def apply_interpolation(flux, index: np.ndarray, weight: np.ndarray):
    """Apply ``(index, weight)`` from :func:`interpolation_weights` along the last axis.

    ``flux`` is a numpy array or torch tensor (..., n_in); returns the same type (..., n_out).
    """
    if isinstance(flux, torch.Tensor):
        index_t = torch.as_tensor(index, device=flux.device)
        weight_t = torch.as_tensor(weight, dtype=flux.dtype, device=flux.device)
        return weighted_taps(flux, index_t.T.contiguous(), weight_t.T.contiguous())
    flux = np.asarray(flux)
    return (flux[..., index] * weight.astype(np.result_type(flux.dtype, np.float32))).sum(-1)


def weighted_taps(flux: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Σ_k weight[k] · flux[..., index[k]] with ``index``, ``weight`` of shape (k, n_out).

    One contiguous gather per tap (``index_select``) and an in-place multiply-add: several
    times faster on the CPU than fancy indexing into a (..., n_out, k) temporary.
    """
    out = flux.index_select(-1, index[0]) * weight[0]
    for tap in range(1, index.shape[0]):
        out.addcmul_(flux.index_select(-1, index[tap]), weight[tap])
    return out


def _interpolation_coordinate(wave: np.ndarray) -> str:
    """'linear' if ``wave`` is closer to uniform in λ, 'log' if closer to uniform in ln λ."""
    if wave.size < 3:
        return "linear"
    linear = np.ptp(np.diff(wave)) / np.mean(np.diff(wave))
    logarithmic = np.ptp(np.diff(np.log(wave))) / np.mean(np.diff(np.log(wave)))
    return "log" if logarithmic < linear else "linear"


class Resampler:
    """Resample spectra from wavelengths ``wave_in`` to ``wave_out`` [Å], both fixed.

    The weights are computed once (in λ or ln λ, whichever makes ``wave_in`` uniform) and
    applied to any numpy array or torch tensor (..., len(wave_in)) → (..., len(wave_out)).
    ``wave_out`` may have any shape (e.g. (8, 4096) échelle pixels); the output then ends
    in that shape.
    """

    def __init__(self, wave_in, wave_out, *, kind: str = "cubic"):
        wave_in = _as_1d_float_array(wave_in, "wave_in")
        wave_out_array = np.asarray(wave_out, dtype=np.float64)
        if not np.all(np.isfinite(wave_out_array)):
            raise ValueError("wave_out contains NaN or infinite values")
        self.n_in = wave_in.size
        self.out_shape = wave_out_array.shape
        if _interpolation_coordinate(wave_in) == "log":
            x_in, x_out = np.log(wave_in), np.log(wave_out_array.ravel())
        else:
            x_in, x_out = wave_in, wave_out_array.ravel()
        self.index, self.weight = interpolation_weights(x_in, x_out, kind=kind)
        self._torch_cache: dict = {}

    def torch_taps(self, dtype=torch.float32, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(index, weight) as torch tensors of shape (k, n_out), one contiguous row per tap
        (cached per dtype and device): ``out = Σ_k weight[k] · flux[..., index[k]]``."""
        key = (dtype, str(device))
        if key not in self._torch_cache:
            self._torch_cache[key] = (  # taps first: (k, n_out), contiguous per tap
                torch.as_tensor(self.index.T.copy(), device=device),
                torch.as_tensor(self.weight.T.copy(), dtype=dtype, device=device),
            )
        return self._torch_cache[key]

    def __call__(self, flux):
        if not isinstance(flux, torch.Tensor):
            flux = np.asarray(flux)
        if flux.ndim == 0 or flux.shape[-1] != self.n_in:
            raise ValueError(
                f"flux must have {self.n_in} samples along its last axis, got shape "
                f"{tuple(flux.shape)}"
            )
        if isinstance(flux, torch.Tensor):
            index, weight = self.torch_taps(flux.dtype, flux.device)
            out = weighted_taps(flux, index, weight)
        else:
            out = apply_interpolation(flux, self.index, self.weight)
        return out.reshape(*flux.shape[:-1], *self.out_shape)


def resample_to_log_lambda(wave, flux, log_wave, *, kind: str = "cubic"):
    """Resample ``flux`` (numpy or torch, (..., len(wave))) from ``wave`` [Å] onto ``log_wave``."""
    return Resampler(wave, log_wave, kind=kind)(flux)


def resample_from_log_lambda(log_wave, flux, wave, *, kind: str = "cubic"):
    """Resample ``flux`` on the log-λ grid ``log_wave`` [Å] back onto ``wave`` [Å]."""
    return Resampler(log_wave, wave, kind=kind)(flux)


# kernels ----------------------------------------------------------------------------------


def _gray_cdf(x: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Cumulative integral of Gray's normalised rotation profile in x = v / v sin i."""
    x = x.clamp(-1.0, 1.0)
    root = torch.sqrt(torch.clamp(1.0 - x * x, min=0.0))
    limb = (1.0 - epsilon) * (x * root + torch.asin(x))
    centre = 0.5 * math.pi * epsilon * (x - x**3 / 3.0)
    return 0.5 + (limb + centre) / (math.pi * (1.0 - epsilon / 3.0))


def rotation_half_width(vsini_max_kms: float, velocity_step_kms: float) -> int:
    """Half-width [pixels] of a rotation kernel able to hold v sin i up to ``vsini_max_kms``."""
    return int(math.ceil(max(float(vsini_max_kms), 0.0) / velocity_step_kms - 0.5)) + 1


def _rotation_kernels(vsini: torch.Tensor, velocity_step_kms: float, epsilon: float,
                      half_width: int) -> torch.Tensor:
    """Bin-integrated Gray kernels, (B, 2·half_width + 1), float64, each summing to one."""
    offsets = torch.arange(-half_width, half_width + 1, dtype=torch.float64, device=vsini.device)
    lower = (offsets - 0.5) * velocity_step_kms
    upper = (offsets + 0.5) * velocity_step_kms
    v = vsini.to(torch.float64)[:, None]
    rotating = v > 0
    safe_v = torch.where(rotating, v, torch.ones_like(v))
    kernel = _gray_cdf(upper / safe_v, epsilon) - _gray_cdf(lower / safe_v, epsilon)
    delta = (offsets == 0).to(torch.float64).expand_as(kernel)
    kernel = torch.where(rotating, kernel, delta)
    return kernel / kernel.sum(-1, keepdim=True)


def _check_vsini(vsini, batch: int | None = None) -> torch.Tensor:
    vsini_t = torch.as_tensor(vsini, dtype=torch.float64)
    if vsini_t.ndim > 1:
        raise ValueError(
            f"vsini must be a scalar or one-dimensional, got shape {tuple(vsini_t.shape)}"
        )
    vsini_t = vsini_t.reshape(-1)
    if batch is not None and vsini_t.numel() != batch:
        raise ValueError(f"vsini has {vsini_t.numel()} values for a batch of {batch} spectra")
    if not torch.all(torch.isfinite(vsini_t)):
        raise ValueError("vsini contains NaN or infinite values")
    if torch.any(vsini_t < 0):
        raise ValueError("vsini must be non-negative [km/s]")
    return vsini_t


def rotation_kernel(vsini_kms, velocity_step_kms: float, epsilon: float = DEFAULT_EPSILON, *,
                    half_width: int | None = None):
    """Gray's rotation kernel on a velocity grid of step ``velocity_step_kms`` [km/s].

    ``vsini_kms`` [km/s] is a scalar (→ shape (2h+1,)) or a 1D array/tensor of B values
    (→ (B, 2h+1)); h = ``half_width`` defaults to the smallest half-width holding the
    largest v sin i. Each kernel is the profile integrated over the velocity bins
    [(j − ½)Δv, (j + ½)Δv] (analytic cumulative integral), so it sums to one and v sin i
    below one pixel leaves a near-delta function without artefacts (v sin i = 0 gives an exact
    delta). Its DFT is Ĝ(f)·sinc(fΔv) (:func:`rotation_transfer` times the pixel box), up to
    aliasing; :func:`broaden` uses Ĝ itself. Returns a torch tensor (float64) if
    ``vsini_kms`` is one, else a numpy array.
    """
    step = _check_positive(velocity_step_kms, "velocity_step_kms")
    epsilon = _check_epsilon(epsilon)
    scalar = np.ndim(vsini_kms) == 0
    vsini_t = _check_vsini(vsini_kms)
    if half_width is None:
        half_width = rotation_half_width(float(vsini_t.max()), step)
    kernel = _rotation_kernels(vsini_t, step, epsilon, int(half_width))
    if scalar:
        kernel = kernel[0]
    return kernel if isinstance(vsini_kms, torch.Tensor) else kernel.numpy()


def instrument_sigma_kms(R: float) -> float:
    """Gaussian σ [km/s] of an instrument profile of resolving power R (FWHM = c/R)."""
    return C_KMS / _check_positive(R, "R") * FWHM_TO_SIGMA


def instrument_kernel(R: float, velocity_step_kms: float, *,
                      n_sigma: float = INSTRUMENT_N_SIGMA) -> np.ndarray:
    """Gaussian instrument profile of resolving power ``R`` on a velocity grid [km/s].

    FWHM = c/R (2.61 km/s for R = 115 000, σ = 1.11 km/s). The Gaussian is sampled at the
    pixel centres, truncated at ±``n_sigma`` σ and normalised to sum to one. (Point sampling
    is accurate because σ spans ≥ 1 pixel — enforced — whereas integrating over the bins would
    widen the profile by a box of one pixel, adding Δv²/12 to its variance.) Shape (2h+1,).
    """
    step = _check_positive(velocity_step_kms, "velocity_step_kms")
    sigma = instrument_sigma_kms(R)
    if step > sigma:
        raise ValueError(
            f"velocity step {step} km/s undersamples the instrument profile (σ = {sigma:.3f} "
            f"km/s for R = {R:g}); use a step ≤ σ"
        )
    half_width = int(math.ceil(n_sigma * sigma / step))
    velocity = np.arange(-half_width, half_width + 1) * step
    kernel = np.exp(-0.5 * (velocity / sigma) ** 2)
    return kernel / kernel.sum()


def _j1_over_k(k: torch.Tensor) -> torch.Tensor:
    """J₁(k)/k, with its series near k = 0."""
    small = k.abs() < 1e-3
    safe = torch.where(small, torch.ones_like(k), k)
    return torch.where(small, 0.5 - k * k / 16.0, torch.special.bessel_j1(safe) / safe)


def _spherical_j1_over_k(k: torch.Tensor) -> torch.Tensor:
    """j₁(k)/k = (sin k − k cos k)/k³, with its series near k = 0."""
    small = k.abs() < 1e-2
    safe = torch.where(small, torch.ones_like(k), k)
    exact = (torch.sin(safe) - safe * torch.cos(safe)) / safe**3
    series = 1.0 / 3.0 - k * k / 30.0 + k**4 / 840.0
    return torch.where(small, series, exact)


def rotation_transfer(frequency, vsini_kms, epsilon: float = DEFAULT_EPSILON) -> torch.Tensor:
    """Fourier transform Ĝ(f) of Gray's rotation profile (float64 tensor).

    ``frequency`` [cycles per km/s], shape (m,); ``vsini_kms`` [km/s], scalar or (B,).
    Returns (m,) or (B, m); Ĝ(0) = 1, and Ĝ ≡ 1 for v sin i = 0.
    """
    epsilon = _check_epsilon(epsilon)
    scalar = np.ndim(vsini_kms) == 0
    vsini_t = _check_vsini(vsini_kms)
    f = torch.as_tensor(frequency, dtype=torch.float64, device=vsini_t.device).reshape(1, -1)
    k = 2.0 * math.pi * f * vsini_t[:, None]
    out = (2.0 * (1.0 - epsilon) * _j1_over_k(k) + 2.0 * epsilon * _spherical_j1_over_k(k))
    out = out / (1.0 - epsilon / 3.0)
    return out[0] if scalar else out


_TABLE_STEP = 1.0 / 256.0  # step in k of the tabulated Ĝ used by broaden (error < 1e-6)
_TABLE_CACHE: dict = {}


def gray_transfer_table(epsilon: float, k_max: float) -> torch.Tensor:
    """Ĝ tabulated on k = 0, Δk, 2Δk, … ≥ k_max (cached per ε; grown when needed)."""
    table = _TABLE_CACHE.get(epsilon)
    if table is None or (table.numel() - 2) * _TABLE_STEP < k_max:
        n = int(math.ceil(max(k_max, 64.0) * 1.5 / _TABLE_STEP)) + 2
        k = torch.arange(n, dtype=torch.float64) * _TABLE_STEP
        table = (2.0 * (1.0 - epsilon) * _j1_over_k(k)
                 + 2.0 * epsilon * _spherical_j1_over_k(k)) / (1.0 - epsilon / 3.0)
        _TABLE_CACHE[epsilon] = table
    return table


def _rotation_transfer_tabulated(frequency: torch.Tensor, vsini: torch.Tensor,
                                 epsilon: float, dtype=torch.float64) -> torch.Tensor:
    """Fast Ĝ (B, m) by linear interpolation in a fine table of k (used by :func:`broaden`).

    Computed in ``dtype`` (float32 is accurate to ~1e-6 here and twice as fast).
    """
    k_max = 2.0 * math.pi * float(vsini.max()) * float(frequency.max()) if vsini.numel() else 0.0
    table = gray_transfer_table(epsilon, k_max).to(dtype)
    return rotation_transfer_lookup(table, frequency.to(dtype), vsini.to(dtype))


def rotation_transfer_lookup(table: torch.Tensor, frequency: torch.Tensor,
                             vsini: torch.Tensor) -> torch.Tensor:
    """Ĝ (B, m) for ``frequency`` (m,) [cycles per km/s] and ``vsini`` (B,) [km/s], linearly
    interpolated in ``table`` (Ĝ at k = 0, Δk, 2Δk, …, from :func:`gray_transfer_table`, long
    enough for 2π·max(v sin i)·max(f)). Computed in the inputs' dtype; no checks and no branch
    on the data, so ``torch.compile`` can fuse it into the multiplication that follows.
    """
    position = (vsini[:, None] * (2.0 * math.pi / _TABLE_STEP)) * frequency[None, :]
    index = position.floor().long()
    fraction = position - index
    return torch.lerp(table[index], table[index + 1], fraction)


def instrument_transfer(frequency, R: float) -> torch.Tensor:
    """Fourier transform exp(−2π²σ²f²) of the Gaussian instrument profile (float64 tensor).

    ``frequency`` in cycles per km/s; σ = c / (2.3548 R) km/s.
    """
    sigma = instrument_sigma_kms(R)
    f = torch.as_tensor(frequency, dtype=torch.float64)
    return torch.exp(-2.0 * math.pi**2 * sigma**2 * f * f)


# broadening -------------------------------------------------------------------------------


def fft_layout(n: int, vsini_max_kms: float, velocity_step_kms: float,
               R: float | None = DEFAULT_R) -> tuple[int, int]:
    """``(pad, n_fft)`` of the FFT convolution of ``n`` log-λ samples by :func:`broaden`.

    ``pad`` samples of edge value on each side cover the profiles' reach (v sin i up to
    ``vsini_max_kms`` [km/s] plus 6 σ of the instrument), so the circular convolution never
    wraps around into the spectrum; ``n_fft`` ≥ n + 2·pad is a fast FFT length. Raises
    ValueError if the step [km/s] undersamples the instrument profile.
    """
    step = _check_positive(velocity_step_kms, "velocity_step_kms")
    sigma = instrument_sigma_kms(R) if R is not None else 0.0
    if sigma and step > sigma:
        raise ValueError(
            f"velocity step {step} km/s undersamples the instrument profile (σ = {sigma:.3f} "
            f"km/s for R = {R:g}); use a step ≤ σ"
        )
    reach_kms = float(vsini_max_kms) + INSTRUMENT_N_SIGMA * sigma
    pad = int(math.ceil(reach_kms / step)) + 2
    return pad, scipy.fft.next_fast_len(int(n) + 2 * pad, real=True)


def broadening_transfer(frequency: torch.Tensor, vsini: torch.Tensor, R: float | None,
                        epsilon: float, dtype=torch.float32) -> torch.Tensor:
    """Ĝ(f; v sin i)·exp(−2π²σ²f²) for each v sin i, shape (B, m), in ``dtype``.

    ``frequency`` (m,) [cycles per km/s]; ``vsini`` (B,) [km/s]; ``R`` None skips the
    instrument. The rotation part is interpolated in a fine table (error < 1e-6).
    """
    transfer = _rotation_transfer_tabulated(frequency, vsini.cpu(), epsilon, dtype)
    if R is not None:
        transfer = transfer * instrument_transfer(frequency, R).to(dtype)
    return transfer


def pad_with_edges(flux: torch.Tensor, pad: int) -> torch.Tensor:
    """(B, n) → (B, n + 2·pad): each spectrum continued by its first and last values."""
    return torch.nn.functional.pad(flux[:, None, :], (pad, pad), mode="replicate")[:, 0, :]


def _check_flux(flux) -> torch.Tensor:
    if not isinstance(flux, torch.Tensor):
        raise ValueError(f"flux must be a torch tensor of shape (B, n), got {type(flux).__name__}")
    if flux.ndim != 2:
        raise ValueError(f"flux must have shape (B, n) on a log-λ grid, got {tuple(flux.shape)}")
    if flux.shape[-1] < 2:
        raise ValueError("flux needs at least two samples per spectrum")
    if flux.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"flux must be a float32 or float64 tensor, got {flux.dtype}")
    if not torch.all(torch.isfinite(flux)):
        raise ValueError("flux contains NaN or infinite values")
    return flux


def broaden(flux: torch.Tensor, vsini, velocity_step_kms: float, R: float | None = DEFAULT_R,
            epsilon: float = DEFAULT_EPSILON) -> torch.Tensor:
    """Rotationally and instrumentally broaden a batch of spectra on a log-λ grid.

    Parameters
    ----------
    flux : torch.Tensor (B, n)
        Normalised flux sampled uniformly in ln λ with step ``velocity_step_kms`` [km/s]
        (see :func:`log_lambda_grid`).
    vsini : (B,) tensor or array, or a scalar for the whole batch
        Projected rotational velocity [km/s] of each spectrum, ≥ 0.
    velocity_step_kms : float
        Velocity step of the grid [km/s].
    R : float or None
        Resolving power of the Gaussian instrument profile; ``None`` skips it.
    epsilon : float
        Linear limb-darkening coefficient of the rotation profile.

    Returns
    -------
    torch.Tensor (B, n), same dtype and device as ``flux``. Each spectrum is padded with its
    edge values (its continuum) by the profiles' reach before the FFT convolution with the
    exact transforms :func:`rotation_transfer` × :func:`instrument_transfer`, so no dark edges
    appear.
    """
    flux = _check_flux(flux)
    step = _check_positive(velocity_step_kms, "velocity_step_kms")
    epsilon = _check_epsilon(epsilon)
    batch, n = flux.shape
    if np.ndim(vsini) == 0:  # one v sin i for the whole batch
        vsini_t = _check_vsini(vsini).expand(batch)
    else:
        vsini_t = _check_vsini(vsini, batch)

    pad, n_fft = fft_layout(n, float(vsini_t.max()), step, R)
    frequency = torch.fft.rfftfreq(n_fft, d=step, dtype=torch.float64)
    real_dtype = torch.float64 if flux.dtype == torch.float64 else torch.float32
    transfer = broadening_transfer(frequency, vsini_t, R, epsilon, real_dtype)
    transfer = transfer.to(device=flux.device)

    spectrum = torch.fft.rfft(pad_with_edges(flux, pad), n=n_fft) * transfer
    return torch.fft.irfft(spectrum, n=n_fft)[:, pad: pad + n].contiguous()

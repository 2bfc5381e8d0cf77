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
* Macroturbulence: Gray's radial–tangential profile (*The Observation and Analysis of Stellar
  Photospheres*, ch. 17) with equal radial and tangential parts: Gaussians of dispersion
  ζ cos θ (radial) and ζ sin θ (tangential) averaged over the disk with weight 2 cos θ sin θ dθ
  (no limb darkening). With y = |v| / ζ it has the closed form

      M(v) = 2 / (√π ζ) · [exp(−y²) − √π y erfc(y)],

  and, substituting u = cos²θ, the transform M̂(f) = (1 − exp(−x)) / x, x = (π ζ f)².

:func:`broaden` multiplies the FFT of each (edge-padded) spectrum by these exact transforms,
i.e. it convolves the band-limited interpolant of the samples with the continuous profiles.
This is exact for any v sin i, including v sin i = 0 and values below one pixel (no
discretisation of the sharp-edged rotation profile; a profile integrated over each pixel
would widen it by Δv²/12 in variance, ~1e-3 errors in line depths at Δv = 0.5 km/s).
:func:`rotation_kernel` (bin-integrated, sums to one) and :func:`instrument_kernel` give the
same profiles in pixel space, for figures and direct convolutions.

Edges are padded with the first/last flux value (the continuum of a normalised spectrum),
never with zeros. Spectra reach the log-λ grid by :mod:`paper_lib.synthetic.resample`.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import torch

from .. import instrument
from ..instrument import C_KMS
from .resample import check_positive

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
DEFAULT_EPSILON = 0.6  # linear limb-darkening coefficient
INSTRUMENT_N_SIGMA = 6.0  # half-width of the instrument kernel in Gaussian σ
MACRO_REACH = 3.0  # |v| / ζ beyond which the radial–tangential profile is < 4e-6 of its peak


# helpers ---------------------------------------------------------------------------------


def _check_epsilon(epsilon: float) -> float:
    epsilon = float(epsilon)
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"limb-darkening coefficient epsilon must lie in [0, 1], got {epsilon}")
    return epsilon


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


def _check_vmacro(vmacro, batch: int) -> torch.Tensor:
    """ζ [km/s]: a scalar for the whole batch or one value per spectrum, finite and ≥ 0."""
    vmacro_t = torch.as_tensor(vmacro, dtype=torch.float64).reshape(-1)
    if vmacro_t.numel() == 1:
        vmacro_t = vmacro_t.expand(batch)
    if vmacro_t.numel() != batch:
        raise ValueError(f"vmacro has {vmacro_t.numel()} values for a batch of {batch} spectra")
    if not bool(torch.isfinite(vmacro_t).all()) or bool((vmacro_t < 0).any()):
        raise ValueError("vmacro must be finite and non-negative [km/s]")
    return vmacro_t


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
    step = check_positive(velocity_step_kms, "velocity_step_kms")
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
    return C_KMS / check_positive(R, "R") * FWHM_TO_SIGMA


def instrument_kernel(R: float, velocity_step_kms: float, *,
                      n_sigma: float = INSTRUMENT_N_SIGMA) -> np.ndarray:
    """Gaussian instrument profile of resolving power ``R`` on a velocity grid [km/s].

    FWHM = c/R (2.61 km/s for R = 115 000, σ = 1.11 km/s). The Gaussian is sampled at the
    pixel centres, truncated at ±``n_sigma`` σ and normalised to sum to one. (Point sampling
    is accurate because σ spans ≥ 1 pixel — enforced — whereas integrating over the bins would
    widen the profile by a box of one pixel, adding Δv²/12 to its variance.) Shape (2h+1,).
    """
    step = check_positive(velocity_step_kms, "velocity_step_kms")
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
               R: float | None = instrument.R, vmacro_max_kms: float = 0.0) -> tuple[int, int]:
    """``(pad, n_fft)`` of the FFT convolution of ``n`` log-λ samples by :func:`broaden`.

    ``pad`` samples of edge value on each side cover the profiles' reach (v sin i up to
    ``vsini_max_kms`` [km/s], plus 6 σ of the instrument, plus ``MACRO_REACH`` ζ of the
    macroturbulence up to ``vmacro_max_kms``), so the circular convolution never wraps around
    into the spectrum; ``n_fft`` ≥ n + 2·pad is a fast FFT length. Raises ValueError if the
    step [km/s] undersamples the instrument profile.
    """
    step = check_positive(velocity_step_kms, "velocity_step_kms")
    sigma = instrument_sigma_kms(R) if R is not None else 0.0
    if sigma and step > sigma:
        raise ValueError(
            f"velocity step {step} km/s undersamples the instrument profile (σ = {sigma:.3f} "
            f"km/s for R = {R:g}); use a step ≤ σ"
        )
    reach_kms = (float(vsini_max_kms) + INSTRUMENT_N_SIGMA * sigma
                 + MACRO_REACH * float(vmacro_max_kms))
    pad = int(math.ceil(reach_kms / step)) + 2
    return pad, scipy.fft.next_fast_len(int(n) + 2 * pad, real=True)


def radial_tangential_profile(velocity_kms, zeta_kms: float) -> np.ndarray:
    """Gray's radial–tangential macroturbulence profile M(v) [1/(km/s)], ∫ M dv = 1.

    ``velocity_kms`` array [km/s], ``zeta_kms`` > 0 [km/s]; closed form of the module docstring.
    """
    from scipy.special import erfc

    zeta = check_positive(zeta_kms, "zeta_kms")
    y = np.abs(np.asarray(velocity_kms, dtype=np.float64)) / zeta
    return 2.0 / (math.sqrt(math.pi) * zeta) * (np.exp(-y * y) - math.sqrt(math.pi) * y * erfc(y))


def macroturbulence_transfer(frequency: torch.Tensor, zeta_kms: torch.Tensor) -> torch.Tensor:
    """M̂(f) = (1 − exp(−x)) / x, x = (π ζ f)², for each ζ: (B,) × (m,) → (B, m).

    ``frequency`` [cycles per km/s], ``zeta_kms`` [km/s] (ζ = 0 gives 1: no broadening).
    Branch-free (``torch.compile``): x → 0 uses 1 − x/2.
    """
    x = (math.pi * zeta_kms[..., None] * frequency) ** 2
    small = x < 1e-6
    safe = torch.where(small, torch.ones_like(x), x)
    return torch.where(small, 1.0 - 0.5 * x, -torch.expm1(-safe) / safe)


def broadening_transfer(frequency: torch.Tensor, vsini: torch.Tensor, R: float | None,
                        epsilon: float, dtype=torch.float32,
                        vmacro: torch.Tensor | None = None) -> torch.Tensor:
    """Ĝ(f; v sin i)·M̂(f; ζ)·exp(−2π²σ²f²) for each star, shape (B, m), in ``dtype``.

    ``frequency`` (m,) [cycles per km/s]; ``vsini`` (B,) [km/s]; ``vmacro`` (B,) ζ [km/s] or
    None (no macroturbulence); ``R`` None skips the instrument. The rotation part is
    interpolated in a fine table (error < 1e-6).
    """
    transfer = _rotation_transfer_tabulated(frequency, vsini.cpu(), epsilon, dtype)
    if vmacro is not None:
        transfer = transfer * macroturbulence_transfer(frequency, vmacro.cpu().double()).to(dtype)
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


def broaden(flux: torch.Tensor, vsini, velocity_step_kms: float, R: float | None = instrument.R,
            epsilon: float = DEFAULT_EPSILON, vmacro=None) -> torch.Tensor:
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
    vmacro : None, a scalar or (B,) values
        Radial–tangential macroturbulence ζ [km/s] (None: none).

    Returns
    -------
    torch.Tensor (B, n), same dtype and device as ``flux``. Each spectrum is padded with its
    edge values (its continuum) by the profiles' reach before the FFT convolution with the
    exact transforms :func:`rotation_transfer` × :func:`macroturbulence_transfer` ×
    :func:`instrument_transfer`, so no dark edges appear.
    """
    flux = _check_flux(flux)
    step = check_positive(velocity_step_kms, "velocity_step_kms")
    epsilon = _check_epsilon(epsilon)
    batch, n = flux.shape
    if np.ndim(vsini) == 0:  # one v sin i for the whole batch
        vsini_t = _check_vsini(vsini).expand(batch)
    else:
        vsini_t = _check_vsini(vsini, batch)

    vmacro_t = None if vmacro is None else _check_vmacro(vmacro, batch)
    vmacro_max = 0.0 if vmacro_t is None else float(vmacro_t.max())
    pad, n_fft = fft_layout(n, float(vsini_t.max()), step, R, vmacro_max)
    frequency = torch.fft.rfftfreq(n_fft, d=step, dtype=torch.float64)
    real_dtype = torch.float64 if flux.dtype == torch.float64 else torch.float32
    transfer = broadening_transfer(frequency, vsini_t, R, epsilon, real_dtype, vmacro_t)
    transfer = transfer.to(device=flux.device)

    spectrum = torch.fft.rfft(pad_with_edges(flux, pad), n=n_fft) * transfer
    return torch.fft.irfft(spectrum, n=n_fft)[:, pad: pad + n].contiguous()

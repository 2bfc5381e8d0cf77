"""The radial velocity of an observed spectrum, by cross-correlation with a rest-frame template.

:func:`measure_velocity` searches ±1000 km/s by default (every stellar radial velocity) and
returns the velocity with the quality of its CCF peak (:class:`Velocity`); a peak whose
significance falls below :data:`MIN_CCF_SIGNIFICANCE` is unreliable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..instrument import C_KMS

HIGHPASS_WINDOW_A = 5.0  # running-mean window removing the continuum before the CCF [Å]
DEFAULT_V_RANGE = (-1000.0, 1000.0)  # velocities searched [km/s]: beyond any star's RV
MIN_LEVEL_FRACTION = 0.2  # pixels whose running mean is below this × the median are no data
HIGHPASS_CLIP = (-1.0, 0.5)  # high-passed flux is clipped here (cosmic rays, gap noise)
PEAK_EXCLUSION_KMS = 30.0  # CCF lags this close to the peak are not "elsewhere"
MIN_CCF_SIGNIFICANCE = 8.0  # below: the velocity is unreliable (peak − median in robust σ)


@dataclass(frozen=True)
class Velocity:
    """A measured radial velocity and the quality of its CCF peak.

    ``v_kms``: λ_obs = λ_rest · (1 + v/c) [km/s]; ``significance``: (peak − median of the
    CCF) / (robust σ of the CCF more than PEAK_EXCLUSION_KMS from the peak); ``second_peak``:
    the highest CCF value elsewhere relative to the peak (1.0 = an equally good other
    velocity); ``reliable``: significance ≥ MIN_CCF_SIGNIFICANCE and second_peak < 0.8.
    """

    v_kms: float
    significance: float
    second_peak: float
    width_kms: float = float("nan")

    @property
    def reliable(self) -> bool:
        return self.significance >= MIN_CCF_SIGNIFICANCE and self.second_peak < 0.8


def _highpass(wave: np.ndarray, flux: np.ndarray, valid: np.ndarray, window_a: float) -> np.ndarray:
    """flux / (running mean over ``window_a`` Å) − 1, using valid pixels only; 0 elsewhere."""
    step = float(np.median(np.diff(wave)))
    size = max(3, int(round(window_a / step)) | 1)
    weight = valid.astype(np.float64)
    values = np.where(valid, flux, 0.0)
    mean = _running_mean(values, size)
    norm = _running_mean(weight, size)
    with np.errstate(invalid="ignore", divide="ignore"):
        level = mean / norm
        out = np.clip(values / level - 1.0, *HIGHPASS_CLIP)
    good = valid & (norm > 0.1) & (level > 0)
    if good.any():  # a run of noise around zero (e.g. a CCD gap that is not exactly 0) is no data
        good &= level > MIN_LEVEL_FRACTION * np.median(level[good])
    return np.where(good, out, 0.0)


def _running_mean(values: np.ndarray, size: int) -> np.ndarray:
    """Mean over a centred window of ``size`` (odd) points, the ends repeated beyond the edges."""
    half = size // 2
    padded = np.concatenate([np.full(half, values[0]), values, np.full(half, values[-1])])
    total = np.concatenate([[0.0], np.cumsum(padded)])
    return (total[size:] - total[:-size]) / size


def _fast_length(n: int) -> int:
    """The smallest 2^a·3^b·5^c ≥ n (a fast FFT length)."""
    best = 1 << (n - 1).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            length = power35 << max(0, (n - 1) // power35).bit_length() if power35 < n else power35
            best = min(best, length)
            power35 *= 3
        power5 *= 5
    return best


def _segments(wave, flux, mask) -> list:
    """A 1D or (n_orders, n_px) spectrum as a list of (wave, flux, valid) 1D segments."""
    wave = np.asarray(wave, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    if wave.shape != flux.shape or wave.ndim not in (1, 2):
        raise ValueError(f"wave {wave.shape} and flux {flux.shape} must have the same 1D or 2D shape")
    valid = np.isfinite(flux) & np.isfinite(wave)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    if wave.ndim == 1:
        return [(wave, flux, valid)]
    return list(zip(wave, flux, valid))


def _valid_correlation(long: np.ndarray, short: np.ndarray) -> np.ndarray:
    """c[k] = Σ_i long[i + k] · short[i] for k = 0 … len(long) − len(short), by FFT.

    A circular correlation of length n ≥ len(long) holds these lags without wrap-around
    (i + k ≤ len(long) − 1 < n), so no longer transform is needed."""
    n = _fast_length(long.size)
    product = np.fft.rfft(long, n) * np.conj(np.fft.rfft(short, n))
    return np.fft.irfft(product, n)[: long.size - short.size + 1]


def rest_frame_velocity(wave, flux, template_wave, template_flux, v_range=DEFAULT_V_RANGE, *,
                        mask=None, step_kms: float = 0.5) -> float:
    """Radial velocity [km/s] of :func:`measure_velocity` (its quality left out)."""
    return measure_velocity(wave, flux, template_wave, template_flux, v_range, mask=mask,
                            step_kms=step_kms).v_kms


def highpass_template(template_wave, template_flux) -> np.ndarray:
    """The template as :func:`measure_velocity` correlates it: flux / its running mean − 1
    (0 where not finite); pass it back as ``template_highpass`` to save the work per call."""
    template_wave = np.asarray(template_wave, dtype=np.float64)
    template_flux = np.asarray(template_flux, dtype=np.float64)
    return _highpass(template_wave, template_flux, np.isfinite(template_flux), HIGHPASS_WINDOW_A)


def measure_velocity(wave, flux, template_wave, template_flux, v_range=DEFAULT_V_RANGE, *,
                     mask=None, step_kms: float = 0.5, template_highpass=None) -> Velocity:
    """Radial velocity of an observed spectrum relative to a rest-frame template, with quality.

    Both spectra are high-pass filtered (divided by a 5 Å running mean, minus one), put on a
    common grid uniform in ln λ with ``step_kms`` per point, and cross-correlated for every
    velocity step in ``v_range`` [km/s]; a parabola through the highest point and its two
    neighbours refines the peak. The result v satisfies λ_obs = λ_rest · (1 + v/c), so
    λ_rest = λ_obs / (1 + v/c).

    Parameters
    ----------
    wave, flux : (n,) or (n_orders, n_px) – observed air wavelengths [Å] and flux (any
        continuum; blaze-corrected for échelle orders).
    template_wave, template_flux : (m,) – rest-frame template, e.g. a normalised synthetic
        spectrum [Å].
    v_range : (v_min, v_max) [km/s] searched (default ±1000).
    mask : bool like ``flux``, True = valid; NaN and inf are ignored in any case, and so are
        stretches whose running mean falls below MIN_LEVEL_FRACTION of the median (a gap
        holding noise around zero); high-passed values are clipped to HIGHPASS_CLIP.

    template_highpass : :func:`highpass_template` of this template, if already computed.

    Returns a :class:`Velocity` (v, peak significance, relative height of the best other peak).

    Raises ValueError if the spectra do not overlap or the peak lies at the edge of
    ``v_range``.
    """
    segments = _segments(wave, flux, mask)
    template_wave = np.asarray(template_wave, dtype=np.float64)
    template_flux = np.asarray(template_flux, dtype=np.float64)
    if template_wave.ndim != 1 or template_wave.shape != template_flux.shape:
        raise ValueError("template_wave and template_flux must be 1D arrays of equal length")
    if np.any(np.diff(template_wave) <= 0):
        raise ValueError("template_wave must increase strictly")
    v_min, v_max = float(v_range[0]), float(v_range[1])
    if not -C_KMS < v_min < v_max < C_KMS:
        raise ValueError(f"v_range must be (v_min, v_max) with v_min < v_max, got {v_range}")

    observed = [s for s in segments if s[2].sum() > 3]
    if not observed:
        raise ValueError("the observed spectrum has no valid pixels")
    lo = max(min(s[0][s[2]].min() for s in observed), template_wave[0] * (1 + v_min / C_KMS))
    hi = min(max(s[0][s[2]].max() for s in observed), template_wave[-1] * (1 + v_max / C_KMS))
    if hi <= lo:
        raise ValueError("the observed spectrum and the template do not overlap in wavelength")
    dx = step_kms / C_KMS
    x = math.log(lo) + dx * np.arange(int(math.log(hi / lo) / dx) + 1)

    y_obs = _observed_on_grid(observed, x)
    y_template = (highpass_template(template_wave, template_flux) if template_highpass is None
                  else np.asarray(template_highpass, dtype=np.float64))
    return _ccf_peak_velocity(x, y_obs, template_wave, y_template, v_range, step_kms)


def _observed_on_grid(observed: list, x: np.ndarray) -> np.ndarray:
    """The high-passed valid segments on the common ln λ grid ``x`` (mean where they overlap,
    0 where none has data)."""
    total, weight = np.zeros_like(x), np.zeros_like(x)
    for seg_wave, seg_flux, seg_valid in observed:
        y = _highpass(seg_wave, seg_flux, seg_valid, HIGHPASS_WINDOW_A)
        log_wave = np.log(seg_wave)
        inside = (x >= log_wave[0]) & (x <= log_wave[-1])
        x_inside = x[inside]
        good = np.interp(x_inside, log_wave, seg_valid.astype(np.float64)) > 1 - 1e-9
        total[inside] += np.where(good, np.interp(x_inside, log_wave, y), 0.0)
        weight[inside] += good
    return np.where(weight > 0, total / np.maximum(weight, 1), 0.0)


def _peak_quality(ccf: np.ndarray, peak: int, step_kms: float) -> tuple[float, float]:
    """(significance, best other peak / peak) of the CCF maximum at index ``peak``; "other"
    lies beyond the peak's own slopes (down to the first local minimum on each side) and more
    than PEAK_EXCLUSION_KMS away."""
    left, right = peak, peak
    while left > 0 and ccf[left - 1] <= ccf[left]:
        left -= 1
    while right < ccf.size - 1 and ccf[right + 1] <= ccf[right]:
        right += 1
    index = np.arange(ccf.size)
    far = ((index < left) | (index > right)) & (np.abs(index - peak) * step_kms > PEAK_EXCLUSION_KMS)
    if far.sum() < 10:
        return 0.0, 1.0
    rest = ccf[far]
    median = float(np.median(rest))
    spread = 1.4826 * float(np.median(np.abs(rest - median)))
    significance = (ccf[peak] - median) / spread if spread > 0 else 0.0
    second = (float(rest.max()) - median) / (ccf[peak] - median)
    return float(significance), float(second)


def _ccf_peak_velocity(x, y_obs, template_wave, y_template, v_range, step_kms: float) -> Velocity:
    """Velocity [km/s] at the cross-correlation peak of the high-passed template against the
    observed spectrum on the ln λ grid ``x`` (step ``step_kms``), refined by a parabola, with
    the peak's quality."""
    v_min, v_max = float(v_range[0]), float(v_range[1])
    dx = step_kms / C_KMS
    lag_lo = math.floor(C_KMS * math.log1p(v_min / C_KMS) / step_kms)
    lag_hi = math.ceil(C_KMS * math.log1p(v_max / C_KMS) / step_kms)
    x_template = x[0] + dx * (np.arange(x.size + lag_hi - lag_lo) - lag_hi)
    y_template = np.interp(x_template, np.log(template_wave), y_template, left=0.0, right=0.0)
    # ccf[k] = Σ_i template(x_i + (k − lag_hi)·dx) · observed(x_i): peaks at lag = lag_hi − k
    ccf = _valid_correlation(y_template, y_obs)[::-1]
    lags = np.arange(lag_lo, lag_lo + ccf.size)
    peak = int(np.argmax(ccf))
    if peak == 0 or peak == ccf.size - 1 or not ccf[peak] > 0:
        raise ValueError(f"no cross-correlation peak inside v_range {v_range} km/s")
    left, centre, right = ccf[peak - 1: peak + 2]
    curvature = left - 2.0 * centre + right
    offset = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
    log_velocity = (lags[peak] + offset) * step_kms
    return Velocity(float(C_KMS * math.expm1(log_velocity / C_KMS)),
                    *_peak_quality(ccf, peak, step_kms), _peak_width(ccf, peak, step_kms))


def _peak_width(ccf: np.ndarray, peak: int, step_kms: float) -> float:
    """Full width [km/s] of the CCF peak at index ``peak`` at half its height above the CCF's
    median, linearly interpolated between lags."""
    half = 0.5 * (ccf[peak] + float(np.median(ccf)))
    left, right = peak, peak
    while left > 0 and ccf[left - 1] > half:
        left -= 1
    while right < ccf.size - 1 and ccf[right + 1] > half:
        right += 1
    if left == 0 or right == ccf.size - 1:
        return float("nan")
    frac_left = (ccf[left] - half) / (ccf[left] - ccf[left - 1])
    frac_right = (ccf[right] - half) / (ccf[right] - ccf[right + 1])
    return float((right - left + frac_left + frac_right) * step_kms)


def to_rest_frame(wave, v_kms: float) -> np.ndarray:
    """λ_rest = λ_obs / (1 + v/c) [Å] for a radial velocity v [km/s]."""
    return np.asarray(wave, dtype=np.float64) / (1.0 + float(v_kms) / C_KMS)

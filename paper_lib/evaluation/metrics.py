"""Metrics in physical units: MAE, coverage of kσ intervals, MAE against SNR, σ recalibration.

See :mod:`paper_lib.evaluation` for the conventions (units, residual sign, strict "within kσ").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
from scipy import special

from ..labels import LABEL_NAMES, LABEL_UNIT, N_LABELS

def gaussian_coverage(k: float | np.ndarray) -> float | np.ndarray:
    """Probability that a Gaussian variable lies within ``k`` standard deviations of its mean,
    ``erf(k / √2)`` (0.6827 for k = 1, 0.9545 for k = 2). A fraction, not a percentage."""
    value = special.erf(np.asarray(k, dtype=float) / math.sqrt(2.0))
    return float(value) if np.ndim(value) == 0 else value


#: Exact Gaussian coverage (fractions) for k = 1, 2, 3.
GAUSSIAN_COVERAGE = {k: gaussian_coverage(k) for k in (1, 2, 3)}


def as_labels(array, name: str) -> np.ndarray:
    array = np.asarray(array, dtype=float)
    if array.ndim != 2 or array.shape[1] != N_LABELS:
        raise ValueError(f"{name} must have shape (N, {N_LABELS}) with columns {LABEL_NAMES}, "
                         f"got {array.shape}")
    return array


def check_same_shape(**arrays) -> list[np.ndarray]:
    checked = [as_labels(value, name) for name, value in arrays.items()]
    shapes = {a.shape for a in checked}
    if len(shapes) != 1:
        raise ValueError("shape mismatch: " + ", ".join(f"{n} {a.shape}" for n, a in zip(arrays, checked)))
    return checked


def residuals(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``pred − true`` (N, 4), physical units (K, dex, dex, km/s)."""
    true, pred = check_same_shape(true=true, pred=pred)
    return pred - true


def mae(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Mean absolute error per label, ``{"teff": K, "logg": dex, "mh": dex, "vsini": km/s}``."""
    error = np.abs(residuals(true, pred))
    return {name: float(value) for name, value in zip(LABEL_NAMES, error.mean(axis=0))}


def standardized_abs_error(true: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """``|mean − true| / σ`` (N, 4), dimensionless; σ must be positive."""
    true, mean, sigma = check_same_shape(true=true, mean=mean, sigma=sigma)
    if np.any(~(sigma > 0)):
        raise ValueError("sigma must be positive and finite")
    return np.abs(mean - true) / sigma


def _ks(k) -> tuple:
    return tuple(np.atleast_1d(k).tolist())


def _coverage_of_z(z: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    """Fractions of ``z < thresholds`` per label and pooled over all labels ("overall")."""
    inside = z < thresholds
    result = {name: float(value) for name, value in zip(LABEL_NAMES, inside.mean(axis=0))}
    result["overall"] = float(inside.mean())
    return result


def coverage(true: np.ndarray, mean: np.ndarray, sigma: np.ndarray, k=(1, 2)
             ) -> dict[Any, dict[str, float]]:
    """Fraction of residuals with ``|mean − true| < k σ`` (Table 3).

    Returns ``{k: {"teff": f, "logg": f, "mh": f, "vsini": f, "overall": f}}`` with fractions
    in [0, 1]; "overall" pools all N × 4 residuals. Compare with :data:`GAUSSIAN_COVERAGE`.
    """
    z = standardized_abs_error(true, mean, sigma)
    return {kk: _coverage_of_z(z, np.full(N_LABELS, float(kk))) for kk in _ks(k)}


def mae_vs_snr(predict_at_snr: Callable[[float], tuple[np.ndarray, np.ndarray]],
               snrs: Iterable[float], variant: str = "model") -> list[dict[str, Any]]:
    """MAE against SNR as a tidy (long) table.

    ``predict_at_snr(snr)`` returns ``(true, pred)`` (N, 4) in physical units for a test set at
    that SNR. The result has one row per (SNR, label):
    ``{"variant": str, "snr": float, "label": name, "unit": unit, "mae": value}``.
    Rows of several variants can be concatenated and passed to :func:`plot_mae_vs_snr`.
    """
    rows = []
    for snr in snrs:
        true, pred = predict_at_snr(snr)
        for name, value in mae(true, pred).items():
            rows.append({"variant": variant, "snr": float(snr), "label": name,
                         "unit": LABEL_UNIT[name], "mae": value})
    return rows


# Post-hoc σ recalibration (not in the paper) ----------------------------------------------


def fit_sigma_scale(true: np.ndarray, mean: np.ndarray, sigma: np.ndarray, k: float = 1.0
                    ) -> np.ndarray:
    """One multiplicative σ factor per label, fitted on a **validation** set.

    ``s_j`` is chosen so that a fraction ``erf(k/√2)`` of the validation residuals of label j lie
    within ``k s_j σ``: ``s_j = quantile(|error|/σ, erf(k/√2)) / k`` (k = 1: the 68.27th
    percentile of ``|error|/σ``). ``s > 1`` means the model's σ was too small.
    Returns an array of shape (4,), dimensionless.
    """
    z = standardized_abs_error(true, mean, sigma)
    return np.quantile(z, gaussian_coverage(k), axis=0) / k


def apply_sigma_scale(sigma: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``σ · s`` per label (N, 4), physical units. (A covariance scales as ``cov · s sᵀ``.)"""
    sigma = as_labels(sigma, "sigma")
    scale = np.asarray(scale, dtype=float)
    if scale.shape != (N_LABELS,):
        raise ValueError(f"scale must have shape ({N_LABELS},), got {scale.shape}")
    return sigma * scale


@dataclass(frozen=True)
class SigmaQuantileMap:
    """Quantile (isotonic) recalibration of σ, per label, fitted on a validation set.

    It stores the sorted validation ``|error|/σ`` of each label. For a nominal Gaussian level
    k the calibrated interval half-width is ``m_j(k) σ`` with
    ``m_j(k) = quantile_j(erf(k/√2))``; ``m_j`` is monotone in k (an isotonic map from nominal
    to calibrated multiples of σ). Unlike a single scale factor it calibrates every k at once,
    also for non-Gaussian (e.g. heavy-tailed) residuals, up to the resolution of the validation
    set in the far tails.
    """

    z_sorted: np.ndarray  # (N_val, 4), sorted |error|/σ of the validation set

    def multiplier(self, k: float) -> np.ndarray:
        """``m_j(k)`` (4,): calibrated half-width of the nominal kσ interval in units of σ."""
        return np.quantile(self.z_sorted, gaussian_coverage(float(k)), axis=0)

    def effective_sigma(self, sigma: np.ndarray, k: float) -> np.ndarray:
        """σ to use for the kσ interval: ``σ · m(k) / k`` (N, 4), physical units."""
        return as_labels(sigma, "sigma") * (self.multiplier(k) / float(k))


def fit_sigma_quantile_map(true: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> SigmaQuantileMap:
    """Fit :class:`SigmaQuantileMap` on a validation set (arrays (N, 4), physical units)."""
    z = standardized_abs_error(true, mean, sigma)
    return SigmaQuantileMap(z_sorted=np.sort(z, axis=0))


def coverage_quantile_map(true: np.ndarray, mean: np.ndarray, sigma: np.ndarray,
                          quantile_map: SigmaQuantileMap, k=(1, 2)) -> dict[Any, dict[str, float]]:
    """Like :func:`coverage`, but with the interval half-widths of ``quantile_map``:
    fraction with ``|mean − true| < m(k) σ``."""
    z = standardized_abs_error(true, mean, sigma)
    return {kk: _coverage_of_z(z, quantile_map.multiplier(kk)) for kk in _ks(k)}


def recalibration_report(val_true, val_mean, val_sigma, test_true, test_mean, test_sigma,
                         k=(1, 2)) -> dict[str, Any]:
    """Fit both recalibrations on the validation set and report test coverage before/after.

    Returns ``{"sigma_scale": {label: s}, "before": coverage, "scaled": coverage,
    "quantile_map": coverage, "gaussian": {k: erf(k/√2)}}`` (coverages as from
    :func:`coverage`, fractions).
    """
    scale = fit_sigma_scale(val_true, val_mean, val_sigma)
    quantile_map = fit_sigma_quantile_map(val_true, val_mean, val_sigma)
    return {
        "sigma_scale": {name: float(s) for name, s in zip(LABEL_NAMES, scale)},
        "before": coverage(test_true, test_mean, test_sigma, k),
        "scaled": coverage(test_true, test_mean, apply_sigma_scale(test_sigma, scale), k),
        "quantile_map": coverage_quantile_map(test_true, test_mean, test_sigma, quantile_map, k),
        "gaussian": {kk: gaussian_coverage(kk) for kk in _ks(k)},
    }

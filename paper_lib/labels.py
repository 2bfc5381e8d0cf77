"""The four stellar labels: names, units, the paper's Table-1 ranges, scaled ↔ physical.

This is the one place that knows the labels. Everything else takes them from here:

* ``LABEL_NAMES`` ``("teff", "logg", "mh", "vsini")`` in this order in every (N, 4) array;
  units ``LABEL_UNITS`` (K, dex, dex, km/s); ``mh`` is [M/H] (the paper's Z).
* ``LABEL_RANGES``: Table 1 of the paper, (min, max, step) of each label. The grid's
  nodes lie on the first three axes; v sin i is drawn continuously in its range.
* The networks work on **scaled labels**, ``scaled = (x − min) / (max − min)`` ∈ [0, 1]
  (:func:`scale_labels`, :func:`unscale_labels`); :func:`to_physical` turns a predicted
  Gaussian in scaled labels into physical units.
"""

from __future__ import annotations

import numpy as np

LABEL_NAMES = ("teff", "logg", "mh", "vsini")
LABEL_UNITS = ("K", "dex", "dex", "km/s")
N_LABELS = len(LABEL_NAMES)
GRID_LABELS = LABEL_NAMES[:3]  # the axes of the synthetic grid; v sin i comes from broadening
LABEL_UNIT = dict(zip(LABEL_NAMES, LABEL_UNITS))
LABEL_PLAIN = {"teff": "Teff", "logg": "log g", "mh": "[M/H]", "vsini": "v sin i"}
LABEL_TEX = {"teff": r"$T_\mathrm{eff}$", "logg": r"$\log g$", "mh": "[M/H]",
             "vsini": r"$v \sin i$"}
LABEL_DECIMALS = {"teff": 1, "logg": 3, "mh": 3, "vsini": 2}  # those of the paper's Table 2

# Table 1 of the paper: (min, max, step) of each label [K, dex, dex, km/s].
LABEL_RANGES = {
    "teff": (3500.0, 9750.0, 250.0),
    "logg": (0.0, 5.0, 0.5),
    "mh": (-2.5, 0.5, 0.5),
    "vsini": (0.0, 30.0, 2.0),
}
LABEL_MIN = np.array([LABEL_RANGES[n][0] for n in LABEL_NAMES])  # (4,) physical units
LABEL_MAX = np.array([LABEL_RANGES[n][1] for n in LABEL_NAMES])
VSINI_RANGE = LABEL_RANGES["vsini"][:2]  # km/s: v sin i is drawn uniformly in this interval

# The Sun (IAU 2015 B3: Teff, log g; [M/H] 0 by definition; v sin i ≈ 2 km/s)
SUN_REFERENCE = {"teff": 5772.0, "logg": 4.438, "mh": 0.0, "vsini": 2.0}


def table1_axis(name: str) -> np.ndarray:
    """Node values of one Table-1 axis (e.g. 3500, 3750, …, 9750 for ``teff``)."""
    lo, hi, step = LABEL_RANGES[name]
    return np.round(np.arange(lo, hi + step / 2, step), 6)


def label_header(name: str) -> str:
    """Column header of a label with its unit, e.g. ``"Teff [K]"``."""
    return f"{LABEL_PLAIN[name]} [{LABEL_UNIT[name]}]"


def label_span() -> np.ndarray:
    """max − min of each label (4,), physical units: turns scaled σ into physical σ."""
    return LABEL_MAX - LABEL_MIN


def scale_labels(labels: np.ndarray) -> np.ndarray:
    """Physical labels (N, 4) [K, dex, dex, km/s] → [0, 1] with Table 1's min and max."""
    labels = np.asarray(labels, dtype=np.float64)
    return (labels - LABEL_MIN) / (LABEL_MAX - LABEL_MIN)


def unscale_labels(scaled: np.ndarray) -> np.ndarray:
    """Inverse of :func:`scale_labels`."""
    scaled = np.asarray(scaled, dtype=np.float64)
    return LABEL_MIN + scaled * (LABEL_MAX - LABEL_MIN)


def to_physical(mean_scaled: np.ndarray, scale_tril_scaled: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert a Gaussian in scaled labels to physical units.

    ``mean = min + mean_scaled · span`` and, with ``D = diag(span)``, the Cholesky factor
    becomes ``D L`` so the covariance is ``D L Lᵀ D``. σ is the square root of its diagonal
    (for a full covariance this is *not* the diagonal of L).

    Returns ``(mean (N, 4), sigma (N, 4), cov (N, 4, 4))`` in K, dex, dex, km/s
    (cov in the products of those units).
    """
    mean_scaled = np.asarray(mean_scaled, dtype=float)
    tril = np.asarray(scale_tril_scaled, dtype=float)
    if mean_scaled.ndim != 2 or mean_scaled.shape[1] != N_LABELS:
        raise ValueError(f"mean must have shape (N, {N_LABELS}), got {mean_scaled.shape}")
    if tril.shape != mean_scaled.shape + (N_LABELS,):
        raise ValueError(f"scale_tril must have shape (N, {N_LABELS}, {N_LABELS}), got {tril.shape}")
    span = label_span()
    mean = LABEL_MIN + mean_scaled * span
    tril_phys = tril * span[:, None]  # row j of L times span_j: D @ L
    cov = tril_phys @ np.swapaxes(tril_phys, -1, -2)
    sigma = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    return mean, sigma, cov

"""Quality flags of a prediction on a real spectrum: what each one means and when it is set.

Every answer of :func:`paper_lib.predict.predict_rows` carries a ``flags`` list (empty when
all is well). The thresholds live here, once; the scores behind them in
:mod:`paper_lib.observed.velocity` (CCF significance) and :mod:`paper_lib.observed.quality`
(SNR, out-of-distribution score).
"""

from __future__ import annotations

import numpy as np

from ..instrument import C_KMS
from ..labels import LABEL_MAX, LABEL_MIN, LABEL_NAMES, VSINI_RANGE
from ..observed.fits import vacuum_to_air

LOW_SNR = 10.0  # estimated SNR below which σ are too small (the networks trained at SNR 20)
LARGE_GAP = 0.2  # fraction of filled pixels above which much of the range is missing
# fraction of repaired bad pixels (paper_lib.observed.pixels) above which a file is badly
# damaged: NaN/inf scattered over 12.8 % of the HARPS Sun's pixels moved its labels by at most
# 0.19 σ, over 22 % by 0.53 σ, over 32 % by up to 2.9 σ (python benchmarks/predict_robustness.py)
BAD_PIXELS = 0.1
EDGE_FRACTION = 0.02  # a label this close (× its range) to the training range's edge is "at it"
VACUUM_SHIFT_KMS = round(C_KMS * (5200.0 / float(vacuum_to_air(5200.0)) - 1.0), 1)  # 83.5 km/s:
# c·(n_air − 1) at 5200 Å, the RV that vacuum wavelengths read as air give
VACUUM_WINDOW_KMS = 3.0

FLAGS = {
    "rv_unreliable": "the radial velocity's CCF peak is weak or not unique (significance < 8 or "
                     "another peak ≥ 0.8 of it): labels may be wrong; pass the RV (--rv)",
    "vacuum_suspected": f"RV ≈ +{VACUUM_SHIFT_KMS:g} km/s, what vacuum wavelengths read as air "
                        "give: if the file is in vacuum, pass --vacuum",
    "large_gap": f"more than {100 * LARGE_GAP:.0f} % of the pixels had no data and were filled",
    "bad_pixels": f"more than {100 * BAD_PIXELS:.0f} % of the pixels were bad (NaN, inf, ≤ 0 or "
                  "cosmic-ray spikes) and were repaired from their neighbours: labels may have moved",
    "low_snr": f"estimated SNR below {LOW_SNR:g} (training: 20): errors exceed the σ",
    "grid_edge": "a label lies at or beyond the edge of the training range (grid_edge:<label>)",
    "out_of_distribution": "the spectrum is unlike the synthetic training spectra (ood_score > 1): "
                           "the labels are not to be trusted",
    "refine_failed": "--refine could not fit the grid around the answer (it lies in a hole or "
                     "a held label is outside the grid there), or a held label is outside the "
                     "emulator's label box: the network's answer is given",
    "fit_at_bound": "the least-squares fit ended with a free label at a bound of its box (the "
                    "grid's label box for the emulator; v sin i only at its top): that label is "
                    "the box's edge, not a minimum",
    "fit_not_converged": "the least-squares fit did not settle within its iterations: the fit's "
                         "answer is where it stopped",
    "ood_uncalibrated": "no out-of-distribution calibration for this DAE "
                        "(models/<profile>/ood_calibration.json): ood_score not computed",
    "sigma_uncalibrated": "no σ calibration against SNR for these weights "
                          "(models/<profile>/sigma_calibration.json: none, made for other "
                          "weights or by an older version): sigma_stat is the network's raw σ, "
                          "too small at low SNR; python -m paper_lib sigma-calibrate --profile "
                          "<profile> --variant <model> makes it",
}


def training_bounds(profile, *, limited: bool = False) -> np.ndarray:
    """(4, 2) physical range [K, dex, dex, km/s] of the labels a profile's networks trained on:
    Table 1 narrowed by the profile's label box (and the † rows' Teff range)."""
    bounds = np.column_stack([LABEL_MIN, LABEL_MAX]).astype(np.float64)
    box = dict(profile.label_box)
    if limited:
        box["teff"] = profile.limited_teff
    for name, (lo, hi) in box.items():
        i = LABEL_NAMES.index(name)
        bounds[i] = [max(bounds[i, 0], lo), min(bounds[i, 1], hi)]
    bounds[LABEL_NAMES.index("vsini")] = VSINI_RANGE
    return bounds


def edge_labels(values, bounds: np.ndarray) -> list[str]:
    """Labels at or beyond the edge of ``bounds`` (v sin i only at its upper edge: 0 is common)."""
    out = []
    for i, name in enumerate(LABEL_NAMES):
        lo, hi = bounds[i]
        margin = EDGE_FRACTION * (LABEL_MAX[i] - LABEL_MIN[i])
        low_edge = name != "vsini" and values[i] <= lo + margin
        if low_edge or values[i] >= hi - margin:
            out.append(name)
    return out


def quality_flags(row: dict, model_input, predictor) -> list[str]:
    """The flags of one answer (``row``: labels, snr, gap_fraction, bad_pixel_fraction,
    ood_score)."""
    flags = []
    velocity = model_input.velocity
    if velocity is not None and not velocity.reliable:
        flags.append("rv_unreliable")
    if velocity is not None and abs(velocity.v_kms - VACUUM_SHIFT_KMS) < VACUUM_WINDOW_KMS:
        flags.append("vacuum_suspected")
    if row["gap_fraction"] > LARGE_GAP:
        flags.append("large_gap")
    if row["bad_pixel_fraction"] > BAD_PIXELS:
        flags.append("bad_pixels")
    if not row["snr"] >= LOW_SNR:
        flags.append("low_snr")
    flags += [f"grid_edge:{name}" for name in
              edge_labels([row[name] for name in LABEL_NAMES], predictor.bounds)]
    if predictor.sigma_calibration is None:
        flags.append("sigma_uncalibrated")
    if predictor.calibration is None:
        flags.append("ood_uncalibrated")
    elif row["ood_score"] > 1.0:
        flags.append("out_of_distribution")
    return flags


def flag_kind(flag: str) -> str:
    """``grid_edge:teff`` → ``grid_edge`` (the key of :data:`FLAGS`)."""
    return flag.split(":", 1)[0]


"""Quality flags of a prediction on a real spectrum: what each one means and when it is set.

Every answer of :func:`paper_lib.predict.predict_rows` carries a ``flags`` list (empty when
all is well). The thresholds live here, once; the scores behind them in
:mod:`paper_lib.observed.velocity` (CCF significance) and :mod:`paper_lib.observed.quality`
(SNR, out-of-distribution score).
"""

from __future__ import annotations

import functools

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
# a given RV this far from a clear CCF peak is wrong: ≈ 1 resolution element (c/R = 2.6 km/s)
RV_MISMATCH_KMS = 3.0
# CCF significance below which a spectrum shows no stellar lines: pure noise gives 2.5–3.6,
# the template at SNR 5 35, the HARPS Sun 27, Gl 581 (M dwarf) 15 (benchmarks/ccf_checks.py)
NO_LINES_SIGNIFICANCE = 5.0
WIDTH_MARGIN = 0.1  # a CCF peak wider than (1 + this) × that at the grid's largest v sin i

FLAGS = {
    "rv_unreliable": "the radial velocity's CCF peak is weak or not unique (significance < 8 or "
                     "another peak ≥ 0.8 of it): labels may be wrong; pass the RV (--rv)",
    "vacuum_suspected": f"RV ≈ +{VACUUM_SHIFT_KMS:g} km/s, what vacuum wavelengths read as air "
                        "give: if the file is in vacuum, pass --vacuum",
    "rv_mismatch": f"the given radial velocity (--rv) lies more than {RV_MISMATCH_KMS:g} km/s "
                   "from the spectrum's own clear CCF peak (rv_ccf_kms): labels are wrong if the "
                   "RV is; check its frame and sign, or leave --rv out to measure it",
    "no_stellar_lines": f"the spectrum's CCF against a solar template has no peak or one below "
                        f"significance {NO_LINES_SIGNIFICANCE:g} (pure noise, a flat or "
                        "featureless spectrum): the labels mean nothing",
    "vsini_beyond_grid": "the CCF peak is wider than a star rotating at the grid's largest "
                         "v sin i gives: the star rotates faster than the networks were "
                         "trained on, every label is unreliable",
    "large_gap": f"more than {100 * LARGE_GAP:.0f} % of the pixels had no data and were filled",
    "bad_pixels": f"more than {100 * BAD_PIXELS:.0f} % of the pixels were bad (NaN, inf, ≤ 0 or "
                  "cosmic-ray spikes) and were repaired from their neighbours: labels may have moved",
    "low_snr": f"estimated SNR below {LOW_SNR:g} (training: 20): errors exceed the σ",
    "grid_edge": "a label lies at or beyond the edge of the training range (grid_edge:<label>)",
    "out_of_distribution": "the spectrum is unlike the synthetic training spectra (ood_score > 1): "
                           "the labels are not to be trusted",
    "refine_failed": "--refine could not fit the grid around the answer (it lies in a hole, "
                     "a held label is outside the grid there, the fit ended at a bound of its "
                     "box, or a fit σ is not finite and smaller than half that box), or a held "
                     "label is outside the emulator's label box: the network's answer is given",
    "fit_at_bound": "the least-squares fit ended with a free label at a bound of its box (the "
                    "grid's label box for the emulator; v sin i only at its top): that label is "
                    "the box's edge, not a minimum",
    "fit_not_converged": "the least-squares fit did not settle within its iterations: the fit's "
                         "answer is where it stopped",
    "calibration_extrapolated": "the raw answer lies outside the answers of the benchmark "
                                "stars the label calibration was fitted on (by more than 10 % "
                                "of their range): the correction is held at the nearest "
                                "calibrator's, not extrapolated, and is less certain than "
                                "sigma_cal says; compare with <label>_raw",
    "sigma_sys_missing": "no usable systematic model for these weights "
                         "(models/<profile>/systematics.json: none, no entry for the model, made "
                         "for other weights or non-finite): sigma_sys is NaN and <label>_sigma "
                         "is the statistical part only, too small on real stars; python -m "
                         "paper_lib systematics --profile <profile> makes it",
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
    flags += ccf_flags(model_input)
    if row["gap_fraction"] > LARGE_GAP:
        flags.append("large_gap")
    if row["bad_pixel_fraction"] > BAD_PIXELS:
        flags.append("bad_pixels")
    if not row["snr"] >= LOW_SNR:
        flags.append("low_snr")
    flags += [f"grid_edge:{name}" for name in
              edge_labels([row[name] for name in LABEL_NAMES], predictor.bounds)]
    if not np.isfinite(row["teff_sigma_sys"]):
        flags.append("sigma_sys_missing")
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



def ccf_flags(model_input) -> list[str]:
    """``no_stellar_lines``, ``vsini_beyond_grid`` and ``rv_mismatch`` from the spectrum's own
    CCF peak (:attr:`paper_lib.observed.model_input.ModelInput.ccf`)."""
    ccf = model_input.ccf
    broad = ccf is not None and ccf.width_kms > max_ccf_width_kms()
    flags = ["vsini_beyond_grid"] if broad else []
    if ccf is None or (ccf.significance < NO_LINES_SIGNIFICANCE and not broad):
        return flags + ["no_stellar_lines"]
    given = model_input.meta.get("rv_source") == "given"
    if given and ccf.reliable and abs(ccf.v_kms - model_input.rv_kms) > RV_MISMATCH_KMS:
        flags.append("rv_mismatch")
    return flags


@functools.lru_cache(maxsize=1)
def max_ccf_width_kms() -> float:
    """The widest CCF peak [km/s] of a star inside the grid: the shipped RV template rotated to
    the grid's largest v sin i (Gray's profile), correlated against itself, × (1 +
    WIDTH_MARGIN): ≈ 52 km/s (47.6 km/s at 30 km/s; 12 km/s at the Sun's 2 km/s)."""
    from ..observed.template import TEMPLATE_STEP_KMS, load_template, load_template_highpass
    from ..observed.velocity import measure_velocity
    from ..synthetic.broadening import rotation_kernel

    wave, flux = load_template()
    kernel = np.asarray(rotation_kernel(VSINI_RANGE[1], TEMPLATE_STEP_KMS)).ravel()
    rotated = np.convolve(flux, kernel / kernel.sum(), mode="same")
    peak = measure_velocity(wave, rotated, wave, flux, template_highpass=load_template_highpass())
    return float(peak.width_kms * (1.0 + WIDTH_MARGIN))

"""The network's statistical σ calibrated against signal-to-noise: what ``predict`` reports.

A network trained at one SNR (or a range) does not know how far its σ is off at another: the
``cpu`` ``resnet_diagonal_real`` puts only 53 % of its SNR-20 test errors inside ±1σ, yet near
SNR 140 it is conservative. One factor per label fitted at one SNR (Table 3's "σ rescaled")
would therefore be wrong at every other SNR. Here the factor is a function of the spectrum's
own estimated SNR (DER_SNR, :func:`paper_lib.observed.quality.estimate_snr`, the number
``predict`` reports in its ``snr`` column):

* at each SNR of the profile's curve (``profile.snr_curve``) the validation set of the
  variant (its realism, at that fixed SNR) gives a factor ``s_j`` per label, placed at the
  median estimated SNR of its spectra;
* between those estimated SNRs ``s_j`` is interpolated linearly in ln SNR; beyond them it is
  held at the end values;
* the factors are fitted **as they are used**: each validation spectrum is scaled at its own
  estimated SNR, and the factors are iterated (:func:`fit_factors_at_estimated_snr`) until
  68.27 % of every SNR's validation errors fall within ±1σ. (A factor fitted per SNR alone,
  ``quantile(|error| / σ, 68.27 %)``, is the starting point; applied at scattered estimated
  SNRs on a steep curve it over-corrects, e.g. 74–78 % within ±1σ at SNR 10 for networks
  trained at one SNR, whose σ does not follow the noise.)
* the **test** set at the same SNRs (other labels and noise) gives the coverage before and after
  — each test spectrum scaled at its own estimated SNR, exactly as ``predict`` does it.

The record is written per variant to ``models/<profile>/sigma_calibration.json`` with the
SHA-256 of the weights it was made for; a calibration made for other weights is not used.
Synthetic spectra only: no observed star enters.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from ..fileio import file_sha256, read_variant_records, write_variant_record
from ..labels import LABEL_NAMES
from ..provenance import git_commit
from .metrics import coverage, fit_sigma_scale

SIGMA_CALIBRATION_FILE = "sigma_calibration.json"
SIGMA_CALIBRATION_FORMAT = 2  # 2: factors fitted at each spectrum's estimated SNR
FIT_TOLERANCE = 1e-3  # stop when every factor changes by less than this fraction
FIT_MAX_ITERATIONS = 200


class SigmaCalibration:
    """σ factors (4,) of one variant against the estimated SNR (log-linear between the
    calibration SNRs, constant beyond them)."""

    def __init__(self, record: dict):
        rows = sorted(record["rows"], key=lambda r: r["estimated_snr"])
        if not rows:
            raise ValueError("the σ calibration holds no SNR")
        self.record = record
        self.log_snr = np.log([r["estimated_snr"] for r in rows])
        self.scale = np.array([[r["scale"][name] for name in LABEL_NAMES] for r in rows],
                              dtype=np.float64)
        if not np.all(np.isfinite(self.log_snr)) or not np.all(self.scale > 0):
            raise ValueError("the σ calibration needs positive SNRs and factors")

    def factors(self, snr) -> np.ndarray:
        """(N, 4) factors for estimated SNRs ``snr`` (N,); a missing or non-positive SNR gets
        the largest factor of each label (the most cautious)."""
        snr = np.atleast_1d(np.asarray(snr, dtype=np.float64))
        known = np.isfinite(snr) & (snr > 0)
        log_snr = np.log(np.where(known, snr, 1.0))
        out = np.stack([np.interp(log_snr, self.log_snr, self.scale[:, j])
                        for j in range(len(LABEL_NAMES))], axis=-1)
        return np.where(known[:, None], out, self.scale.max(axis=0))

    def apply(self, cov, snr) -> np.ndarray:
        """Covariances (N, 4, 4) scaled as ``f fᵀ ∘ cov`` with the factors at ``snr`` (N,)."""
        f = self.factors(snr)
        return np.asarray(cov, dtype=np.float64) * f[:, :, None] * f[:, None, :]


def calibration_row(snr: float, validation: dict, test: dict) -> dict:
    """One SNR of the record. ``validation`` and ``test``: {"true", "mean", "sigma" (N, 4)
    physical, "estimated_snr" (N,)} of the variant's sets at nominal ``snr``. Its factors are
    the per-SNR starting point; :func:`calibrate_sigma` refines them and fills in the test
    coverage after calibration (both need every SNR)."""
    scale = fit_sigma_scale(validation["true"], validation["mean"], validation["sigma"])
    return {"snr": float(snr), "estimated_snr": float(np.median(validation["estimated_snr"])),
            "n_validation": int(len(validation["true"])), "n_test": int(len(test["true"])),
            "scale": {name: float(s) for name, s in zip(LABEL_NAMES, scale)},
            "test_coverage_raw": _percent(coverage(test["true"], test["mean"], test["sigma"]))}


def fit_factors_at_estimated_snr(record: dict, validation_sets: list) -> dict:
    """Refine ``record``'s per-SNR factors in place so that, with every validation spectrum
    scaled at its own estimated SNR as ``predict`` does it, 68.27 % of each SNR's validation
    errors lie within ±1σ, per label. ``validation_sets``: the sets of ``record["rows"]``, in
    order. Fixed-point iteration: each factor is multiplied by the 68.27th percentile of
    ``|error| / (σ × interpolated factor)`` of its own set. Returns {"iterations",
    "largest_remaining_change"} (also stored in the record as ``fit``)."""
    change = np.inf
    for iteration in range(1, FIT_MAX_ITERATIONS + 1):
        calibration = SigmaCalibration(record)
        ratios = [fit_sigma_scale(val["true"], val["mean"],
                                  val["sigma"] * calibration.factors(val["estimated_snr"]))
                  for val in validation_sets]
        change = float(np.max(np.abs(np.log(ratios))))
        for row, ratio in zip(record["rows"], ratios):
            row["scale"] = {n: row["scale"][n] * float(r) for n, r in zip(LABEL_NAMES, ratio)}
        if change < FIT_TOLERANCE:
            break
    record["fit"] = {"iterations": iteration, "largest_remaining_change": change}
    return record["fit"]


def calibrate_sigma(sets: dict, *, variant: str, weights_path, source: str) -> dict:
    """The record of ``variant`` from ``sets`` {nominal SNR: (validation, test)} (see
    :func:`calibration_row`): factors per SNR and the test coverage (percent) before and after,
    each test spectrum scaled at its own estimated SNR."""
    ordered = sorted(sets.items())
    rows = [calibration_row(snr, val, test) for snr, (val, test) in ordered]
    record = {"format": SIGMA_CALIBRATION_FORMAT, "variant": variant,
              "method": "σ × s(estimated SNR), log-linear in ln SNR; s fitted per label with "
                        "each validation spectrum scaled at its own estimated SNR, so that "
                        "68.27 % of every SNR's errors fall within ±1σ",
              "weights": Path(weights_path).name, "weights_sha256": file_sha256(weights_path),
              "source": source, "rows": rows, **git_commit(),
              "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    fit_factors_at_estimated_snr(record, [val for _, (val, _) in ordered])
    calibration = SigmaCalibration(record)
    for row, (_, (_, test)) in zip(rows, ordered):
        sigma = test["sigma"] * calibration.factors(test["estimated_snr"])
        row["test_coverage_calibrated"] = _percent(coverage(test["true"], test["mean"], sigma))
    return record


def _percent(cover: dict) -> dict:
    return {f"{k:g}": {name: 100.0 * value for name, value in by_label.items()}
            for k, by_label in cover.items()}


def write_sigma_calibration(models_dir, record: dict) -> Path:
    """Add (or replace) ``record``'s variant in ``models_dir/sigma_calibration.json``."""
    return write_variant_record(Path(models_dir) / SIGMA_CALIBRATION_FILE, record)


def read_sigma_calibrations(models_dir) -> dict:
    """{variant: record} of ``models_dir/sigma_calibration.json`` ({} without the file);
    ValueError naming the command that remakes it if the file is unreadable."""
    return read_variant_records(Path(models_dir) / SIGMA_CALIBRATION_FILE, "σ calibration",
                                "python -m paper_lib sigma-calibrate --profile <profile>")


def load_sigma_calibration(models_dir, variant: str, weights_path) -> SigmaCalibration | None:
    """The calibration of ``variant`` beside its weights, or None if there is none or it was
    made for other weights (then ``predict`` reports the network's σ as it is)."""
    record = read_sigma_calibrations(models_dir).get(variant)
    if record is None or record.get("format") != SIGMA_CALIBRATION_FORMAT:
        return None
    if record.get("weights_sha256") != file_sha256(weights_path):
        return None
    return SigmaCalibration(record)


def calibration_markdown(record: dict) -> str:
    """The record as a Markdown table: per SNR the factors and the test coverage (percent)
    within ±1σ and ±2σ, all four labels pooled and per label, before → after."""
    header = (["SNR", "estimated SNR"] + [f"s({n})" for n in LABEL_NAMES]
              + ["±1σ all", "±2σ all"] + [f"±1σ {n}" for n in LABEL_NAMES])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in record["rows"]:
        raw, cal = row["test_coverage_raw"], row["test_coverage_calibrated"]
        cells = [f"{row['snr']:g}", f"{row['estimated_snr']:.0f}"]
        cells += [f"{row['scale'][n]:.2f}" for n in LABEL_NAMES]
        cells += [f"{raw[k]['overall']:.1f} → {cal[k]['overall']:.1f}" for k in ("1", "2")]
        cells += [f"{raw['1'][n]:.1f} → {cal['1'][n]:.1f}" for n in LABEL_NAMES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def coverage_summary_markdown(records: dict) -> str:
    """{variant: record} as one Markdown table: per variant and SNR the test coverage within
    ±1σ, all four labels pooled (percent), raw → calibrated."""
    snrs = sorted({row["snr"] for record in records.values() for row in record["rows"]})
    lines = ["| variant | " + " | ".join(f"SNR {s:g}" for s in snrs) + " |",
             "|---|" + "---|" * len(snrs)]
    for variant, record in records.items():
        by_snr = {row["snr"]: row for row in record["rows"]}
        cells = [f"{by_snr[s]['test_coverage_raw']['1']['overall']:.1f} → "
                 f"{by_snr[s]['test_coverage_calibrated']['1']['overall']:.1f}"
                 if s in by_snr else "" for s in snrs]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

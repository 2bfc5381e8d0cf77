"""An external calibration of the labels against real stars with independent labels, as survey
pipelines do it (APOGEE/ASPCAP, GALAH, Gaia GSP-Spec), judged by leaving one star out.

The networks are trained on synthetic spectra; on real stars they read a gap that the synthesis
leaves (weak lines too strong, no NLTE/3D), and every benchmark star comes out along one valley
(Teff, log g and [M/H] too low together). Here, per label (Teff, log g, [M/H]; v sin i has no
reference and is not calibrated), the correction ``reference − answer`` is modelled as a smooth
function of the answer's own labels:

* **no correction** unless one helps: a **zero point** is applied only where it lowers the
  **leave-one-star-out** (LOSO) error below that of the raw answers;
* one further **linear term** (in the answer's Teff, log g or [M/H]) only where it lowers the
  LOSO error too: every spectrum of a star left out together, the model fitted on the other
  stars, the left-out star's error measured. With a handful of stars this
  keeps the calibration as simple as the data allow. A linear term is **not extrapolated**:
  beyond the range of the calibrators' own answers its variable is held at the nearest end
  (Vega at 9400 K gets the correction of the hottest calibrator, not a line continued 3000 K
  further), and ``predict`` flags the row ``calibration_extrapolated``.

Stars, not spectra, are the unit: a star observed three times (the Sun) weighs as much as one
observed once. The **calibration σ** (``<label>_sigma_cal``) is the one number per label that,
added in quadrature to ``σ_stat`` and ``σ_sys`` (and the reference's own error), gives the
normalised LOSO residuals unit mean square (zero when they already have less): it is what the
calibration does not know on a star it was not fitted on.

The record is stored per variant in ``models/<profile>/label_calibration.json`` with the stars,
their references, the fit, the LOSO residuals, the SHA-256 of the weights it was made for and
the commit; ``predict`` applies it only to those weights and to the answers of the method it
was fitted on (:class:`LabelCalibration`): the network's answers (key ``<variant>``) or the
least-squares fit's on the emulator (key ``<variant>+fit``, tied to the emulator's SHA-256
too). Only benchmark stars enter, every one named there: they are calibrators from then on.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fileio import file_sha256, read_variant_records, write_variant_record
from ..labels import LABEL_NAMES

LABEL_CALIBRATION_FILE = "label_calibration.json"
LABEL_CALIBRATION_FORMAT = 2  # 2: linear terms held at the calibrators' range; per method
CALIBRATED_LABELS = ("teff", "logg", "mh")  # labels with references; v sin i has none
TERM_SCALE = {"teff": 1000.0, "logg": 1.0, "mh": 1.0}  # a linear term's unit: per 1000 K, per dex
TERM_CENTRE = {"teff": 5500.0, "logg": 3.5, "mh": -0.5}  # where a linear term is zero
MIN_STARS_FOR_TERM = 5  # a linear term needs at least this many stars besides the one left out
RANGE_MARGIN = 0.1  # an answer this far (× the range) beyond the calibrators' is extrapolated
CALIBRATED_METHODS = ("network", "fit")  # answers a calibration can be fitted on
NO_CORRECTION = "none"  # the candidate model that leaves the answers as they are


@dataclass
class LabelFit:
    """One label's correction ``reference − answer = zero_point + slope · (x − centre)/scale``
    with ``term`` naming x (None: zero point only), and its calibration σ [label units]."""

    label: str
    zero_point: float
    term: str | None
    slope: float
    sigma_cal: float
    term_range: tuple | None = None  # (low, high) of the term's variable over the calibrators
    model: str = "zero point"  # "none", "zero point" or "zero point + <term>"

    def correction(self, answers: dict) -> np.ndarray:
        """The correction (N,) at ``answers`` ({label: (N,) array}, physical units), the
        term's variable held inside ``term_range``."""
        return _design(answers, self.term, self.term_range) @ (
            [self.zero_point] if self.term is None else [self.zero_point, self.slope])


def _design(answers: dict, term: str | None, term_range=None) -> np.ndarray:
    """Design matrix (N, 1 or 2) of a correction model at ``answers``; the term's variable is
    clipped to ``term_range`` (low, high) if given (no extrapolation beyond the calibrators)."""
    ones = np.ones(len(next(iter(answers.values()))))
    if term is None:
        return ones[:, None]
    values = np.asarray(answers[term], dtype=np.float64)
    if term_range is not None:
        values = np.clip(values, *term_range)
    x = (values - TERM_CENTRE[term]) / TERM_SCALE[term]
    return np.column_stack([ones, x])


def value_range(answers: dict, term: str | None) -> tuple | None:
    """(low, high) of the term's variable over ``answers``; None without a term."""
    if term is None:
        return None
    values = np.asarray(answers[term], dtype=np.float64)
    return float(values.min()), float(values.max())


def _star_weights(stars: np.ndarray) -> np.ndarray:
    """Weight of each spectrum: 1 / (the number of its star's spectra), so stars count alike."""
    _, inverse, counts = np.unique(stars, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def fit_correction(answers: dict, target: np.ndarray, stars: np.ndarray,
                   term: str | None) -> np.ndarray:
    """Coefficients of one correction model by star-weighted least squares."""
    design = _design(answers, term)
    w = np.sqrt(_star_weights(stars))
    coef, *_ = np.linalg.lstsq(design * w[:, None], target * w, rcond=None)
    return coef


def loso_residuals(answers: dict, reference: np.ndarray, stars: np.ndarray,
                   term: str | None) -> np.ndarray:
    """Calibrated answer − reference (N,) of every spectrum, its own star left out of the fit."""
    label_answer = np.asarray(answers["_label"], dtype=np.float64)
    if term == NO_CORRECTION:
        return label_answer - reference
    out = np.full(len(stars), np.nan)
    for star in np.unique(stars):
        out_of_fit = stars == star
        train = {k: np.asarray(v)[~out_of_fit] for k, v in answers.items()}
        coef = fit_correction(train, reference[~out_of_fit] - label_answer[~out_of_fit],
                              stars[~out_of_fit], term)
        held = {k: np.asarray(v)[out_of_fit] for k, v in answers.items()}
        design = _design(held, term, value_range(train, term))  # as predict applies it
        out[out_of_fit] = label_answer[out_of_fit] + design @ coef - reference[out_of_fit]
    return out


def star_rms(residuals: np.ndarray, stars: np.ndarray) -> float:
    """Root mean square of ``residuals`` with every star weighted alike."""
    w = _star_weights(stars)
    return float(np.sqrt(np.sum(w * residuals ** 2) / np.sum(w)))


def calibration_sigma(residuals, sigma_known, stars) -> float:
    """σ_cal ≥ 0 that makes the star-weighted mean of residual² / (σ_known² + σ_cal²) one."""
    w = _star_weights(stars) / np.sum(_star_weights(stars))
    r2, s2 = np.asarray(residuals) ** 2, np.asarray(sigma_known) ** 2

    def excess(extra):
        return float(np.sum(w * r2 / (s2 + extra ** 2))) - 1.0

    if excess(0.0) <= 0.0:
        return 0.0
    low, high = 0.0, float(np.sqrt(np.sum(w * r2))) + 1e-12
    while excess(high) > 0.0:
        high *= 2.0
    for _ in range(100):  # bisection: excess falls monotonically with σ_cal
        mid = 0.5 * (low + high)
        low, high = (mid, high) if excess(mid) > 0.0 else (low, mid)
    return 0.5 * (low + high)


def choose_model(answers: dict, reference, stars, label: str) -> tuple[str | None, dict]:
    """The model with the lowest LOSO RMS for ``label`` — :data:`NO_CORRECTION`, None (the
    zero point) or a label (zero point + that term) — and every candidate's LOSO RMS; a model
    must beat every simpler one to be chosen."""
    inputs = {**{k: answers[k] for k in CALIBRATED_LABELS}, "_label": answers[label]}
    candidates = [NO_CORRECTION, None]
    if len(np.unique(stars)) - 1 >= MIN_STARS_FOR_TERM:
        candidates += list(CALIBRATED_LABELS)
    scores = {str(term): star_rms(loso_residuals(inputs, reference, stars, term), stars)
              for term in candidates}
    best = min(candidates, key=lambda t: (scores[str(t)], candidates.index(t)))
    return best, scores


def fit_label(answers: dict, reference, stars, sigma_known, label: str) -> tuple[LabelFit, dict]:
    """The calibration of ``label`` fitted on these spectra: the model chosen by LOSO, its
    coefficients on all of them, σ_cal from its LOSO residuals; and the LOSO RMS of every
    candidate model. ``answers``: {label: (N,)}; ``sigma_known`` (N,): σ_stat, σ_sys and the
    reference's error in quadrature."""
    reference, stars = np.asarray(reference, dtype=np.float64), np.asarray(stars)
    term, scores = choose_model(answers, reference, stars, label)
    inputs = {**{k: answers[k] for k in CALIBRATED_LABELS}, "_label": answers[label]}
    sigma_cal = calibration_sigma(loso_residuals(inputs, reference, stars, term), sigma_known,
                                  stars)
    if term == NO_CORRECTION:
        return LabelFit(label, 0.0, None, 0.0, sigma_cal, model=NO_CORRECTION), scores
    coef = fit_correction(inputs, reference - np.asarray(answers[label]), stars, term)
    fit = LabelFit(label, float(coef[0]), term, float(coef[1]) if term else 0.0, sigma_cal,
                   value_range(answers, term),
                   "zero point" if term is None else f"zero point + {term}")
    return fit, scores


def fit_all_labels(answers: dict, references: dict, stars, sigma_known: dict) -> dict:
    """{label: (LabelFit, candidate scores)} for every calibrated label."""
    return {label: fit_label(answers, references[label], stars, sigma_known[label], label)
            for label in CALIBRATED_LABELS}


def leave_one_star_out(answers: dict, references: dict, stars, sigma_known: dict) -> dict:
    """Every spectrum's calibrated answer and σ_cal from a calibration fitted without its star
    (model choice, coefficients and σ_cal all nested): {label: (values (N,), σ_cal (N,))}."""
    stars = np.asarray(stars)
    out = {label: (np.full(len(stars), np.nan), np.full(len(stars), np.nan))
           for label in CALIBRATED_LABELS}
    for star in np.unique(stars):
        held = stars == star
        subset = {k: np.asarray(v)[~held] for k, v in answers.items()}
        fits = fit_all_labels(subset, {k: np.asarray(v)[~held] for k, v in references.items()},
                              stars[~held], {k: np.asarray(v)[~held] for k, v in sigma_known.items()})
        for label, (fit, _) in fits.items():
            values, sigma_cal = out[label]
            at = {k: np.asarray(v)[held] for k, v in answers.items()}
            values[held] = np.asarray(answers[label])[held] + fit.correction(at)
            sigma_cal[held] = fit.sigma_cal
    return out


class LabelCalibration:
    """A stored calibration: ``apply`` gives calibrated labels and σ_cal for one variant and
    method; ``extrapolated`` says where an answer lies beyond the calibrators' answers."""

    def __init__(self, record: dict):
        self.record = record
        self.method = record["method"]
        self.fits = {label: LabelFit(label, **{k: record["labels"][label][k] for k in
                                               ("zero_point", "term", "slope", "sigma_cal")},
                                     term_range=_pair(record["labels"][label].get("term_range")))
                     for label in CALIBRATED_LABELS}
        self.answer_range = {label: _pair(span)
                             for label, span in record.get("answer_range", {}).items()}
        numbers = [v for f in self.fits.values() for v in (f.zero_point, f.slope, f.sigma_cal)]
        if not np.all(np.isfinite(numbers)):
            raise ValueError("the label calibration holds a non-finite number")

    def apply(self, mean) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated labels (N, 4) of raw answers ``mean`` (N, 4) and σ_cal (4,) [physical]."""
        mean = np.atleast_2d(np.asarray(mean, dtype=np.float64))
        answers = {name: mean[:, i] for i, name in enumerate(LABEL_NAMES)}
        out, sigma_cal = mean.copy(), np.zeros(len(LABEL_NAMES))
        for label, fit in self.fits.items():
            i = LABEL_NAMES.index(label)
            out[:, i] = mean[:, i] + fit.correction(answers)
            sigma_cal[i] = fit.sigma_cal
        return out, sigma_cal

    def extrapolated(self, mean) -> list[str]:
        """The calibrated labels (names) whose raw answer in ``mean`` (4,) lies outside the
        calibrators' answers by more than :data:`RANGE_MARGIN` of that range."""
        mean = np.asarray(mean, dtype=np.float64)
        out = []
        for label, (low, high) in self.answer_range.items():
            margin = RANGE_MARGIN * (high - low)
            if not low - margin <= mean[LABEL_NAMES.index(label)] <= high + margin:
                out.append(label)
        return out


def _pair(span) -> tuple | None:
    return None if span is None else (float(span[0]), float(span[1]))


def calibration_key(variant: str, method: str) -> str:
    """The key of a calibration in label_calibration.json: the variant for the network's
    answers, ``<variant>+<method>`` for others (``resnet_diagonal_real+fit``)."""
    return variant if method == "network" else f"{variant}+{method}"


def calibration_record(fits: dict, *, variant: str, method: str, weights_path, stars: list,
                       loso: dict, answers: dict | None = None, emulator_path=None) -> dict:
    """The JSON record of a calibration: the fit per label with its candidates' LOSO RMS, the
    range of the calibrators' ``answers`` ({label: (N,)}), the stars and references it was
    fitted on, the weights' SHA-256 (and the emulator's, for the fit's answers), the commit and
    the date."""
    from ..provenance import git_commit

    labels = {label: {"model": fit.model, "zero_point": fit.zero_point, "term": fit.term,
                      "slope": fit.slope,
                      "sigma_cal": fit.sigma_cal, "term_range": fit.term_range,
                      "loso_rms_of_candidates": scores, "loso_median_abs": loso.get(label)}
              for label, (fit, scores) in fits.items()}
    record = {"format": LABEL_CALIBRATION_FORMAT, "key": calibration_key(variant, method),
              "variant": variant, "method": method,
              "weights": Path(weights_path).name, "weights_sha256": file_sha256(weights_path),
              "labels": labels, "stars": stars, "commit": git_commit(),
              "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if answers is not None:
        record["answer_range"] = {label: value_range(answers, label) for label in CALIBRATED_LABELS}
    if emulator_path is not None:
        record["emulator_sha256"] = file_sha256(emulator_path)
    return record


def write_label_calibration(models_dir, record: dict) -> Path:
    """Store ``record`` under its key (:func:`calibration_key`) in
    ``models_dir``/label_calibration.json (atomic)."""
    return write_variant_record(Path(models_dir) / LABEL_CALIBRATION_FILE, record,
                                key=calibration_key(record["variant"], record["method"]))


def read_label_calibrations(models_dir) -> dict:
    """{key: record} of ``models_dir``/label_calibration.json ({} if absent); a file that is
    not such JSON raises ValueError naming it and how to remake it."""
    return read_variant_records(Path(models_dir) / LABEL_CALIBRATION_FILE, "label calibration",
                                "python -m paper_lib benchmark-calibrate, or delete it")


def load_label_calibrations(models_dir, variant: str, weights_path, emulator_path=None,
                            methods=CALIBRATED_METHODS) -> dict:
    """{method: LabelCalibration} of ``variant`` for each of ``methods`` (the network's
    answers, the fit's) whose record was made for these weights (same SHA-256; a record of
    the fit also for this emulator) in this format; the others left out. The file is read
    and each SHA-256 computed once, the emulator's only if a record asks for it."""
    records = read_label_calibrations(models_dir)
    found = {method: records.get(calibration_key(variant, method)) for method in methods}
    found = {method: record for method, record in found.items()
             if record is not None and record.get("format") == LABEL_CALIBRATION_FORMAT}
    if not found:
        return {}
    weights = file_sha256(weights_path)
    emulator = (file_sha256(emulator_path)
                if any("emulator_sha256" in r for r in found.values())
                and emulator_path is not None and Path(emulator_path).exists() else None)
    return {method: LabelCalibration(record) for method, record in found.items()
            if record.get("weights_sha256") == weights
            and record.get("emulator_sha256", emulator) == emulator}

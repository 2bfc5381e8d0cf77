"""Real spectra → one row per input: labels ± σ (total, statistical, systematic), radial
velocity, quality and flags; optionally conditioned on known labels and refined on the grid.

Every row has the same columns, whether its input worked or not (:func:`empty_row`): a failed
input keeps NaN labels and its ``error``, so a table of any batch can be indexed alike.
"""

from __future__ import annotations

import numpy as np
import torch

from ..labels import LABEL_NAMES
from .images import BATCH_SIZE, predict
from .inputs import (PREDICT_OPTIONS, error_text, expand_inputs, input_name, per_input,
                     prepared_chunks)
from .predictor import DEFAULT_MODEL, Predictor
from .uncertainty import systematic_covariance

SIGMA_SUFFIXES = ("", "_sigma", "_sigma_stat", "_sigma_sys")  # a label's value and its three σ
CALIBRATION_SUFFIXES = ("_raw", "_sigma_cal")  # the uncalibrated value, the calibration's σ
ANSWER_SUFFIXES = ("_network", "_fit")  # both answers: the network's (with --fix), the fit's
QUALITY_COLUMNS = ("rv_kms", "rv_source", "rv_significance", "rv_ccf_kms", "ccf_width_kms",
                   "snr", "gap_fraction", "bad_pixel_fraction", "ood_score")  # after the labels


def correlation_columns(predictor: Predictor) -> list[str]:
    """``corr_<a>_<b>`` for every pair of labels where the total covariance has them (a
    full-covariance model, or a systematic model beside the weights), else none."""
    if predictor.covariance != "full" and predictor.systematics is None:
        return []
    return [f"corr_{LABEL_NAMES[i]}_{LABEL_NAMES[j]}" for i in range(4) for j in range(i + 1, 4)]


def empty_row(predictor: Predictor, file: str) -> dict:
    """A row with every column: NaN numbers, None texts, no flags, no error."""
    row = {"file": file, "kind": None}
    for name in LABEL_NAMES:
        for suffix in SIGMA_SUFFIXES + CALIBRATION_SUFFIXES:
            row[f"{name}{suffix}"] = float("nan")
    for name in LABEL_NAMES:
        for suffix in ANSWER_SUFFIXES:
            row[f"{name}{suffix}"] = float("nan")
    row.update(method=None, fixed=None, fit_rms=float("nan"))
    row.update(dict.fromkeys(correlation_columns(predictor), float("nan")))
    row.update(dict.fromkeys(QUALITY_COLUMNS, float("nan")), rv_source=None, rv_significance=None)
    row.update(model=predictor.name, flags=[], error=None)
    return row


def label_rows(predictor: Predictor, inputs: list, batch_size: int, known=(),
               renderer=None, calibrate: bool = True) -> list[dict]:
    """Labels, σ (total, statistical, systematic, calibration), correlations, SNR, OOD score
    and flags of prepared inputs, batched; conditioned on ``known`` labels, fitted if
    ``renderer`` (a :class:`~.refine.GridRefiner` or :class:`~.fit.EmulatorFitter`), then
    calibrated against the benchmark stars if ``calibrate`` and the weights have a label
    calibration for the answer's method (:func:`calibrated`)."""
    from ..observed.quality import estimate_snr, residual_excess
    from .flags import quality_flags
    from .uncertainty import combine

    rows = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start:start + batch_size]
        images = np.stack([inp.image for inp in chunk])
        masks = np.stack([inp.mask for inp in chunk])
        mean, _, cov = predict(predictor.model, torch.as_tensor(images), batch_size=batch_size)
        cov_sys, have_sys = systematic_covariance(predictor.systematics, mean)
        excess, snr = (residual_excess(predictor.dae, images, masks, batch_size=batch_size)
                       if predictor.dae is not None
                       else (np.full(len(chunk), np.nan), estimate_snr(images, masks)))
        if predictor.sigma_calibration is not None:  # σ_stat at the spectrum's own SNR
            cov = predictor.sigma_calibration.apply(cov, snr)
        score = (predictor.calibration.score(excess, snr) if predictor.calibration is not None
                 else np.full(len(chunk), np.nan))
        networks = [combine(mean[k], cov[k], cov_sys[k], known) for k in range(len(chunk))]
        fits = (renderer.fit(images, masks, [a.mean for a in networks], known) if renderer
                else [(None, None)] * len(chunk))
        for k, inp in enumerate(chunk):
            row = empty_row(predictor, input_name(inp))
            row["kind"] = inp.kind
            raw, method = answer_of(networks[k], fits[k][0], cov_sys[k], known, renderer)
            row.update(answer_columns(networks[k], fits[k][0]))
            answer, method = calibrated(predictor, raw, method, mean[k], cov[k], cov_sys[k],
                                        known) if calibrate else (raw, method)
            sigma = answer.sigma
            for i, name in enumerate(LABEL_NAMES):
                row[name], row[f"{name}_sigma"] = float(answer.mean[i]), float(sigma[i])
                row[f"{name}_sigma_stat"] = float(answer.sigma_stat[i])
                row[f"{name}_sigma_sys"] = float(answer.sigma_sys[i]) if have_sys[k] else np.nan
                row[f"{name}_raw"] = float(raw.mean[i])
                row[f"{name}_sigma_cal"] = (float(answer.sigma_cal[i])
                                            if answer.sigma_cal is not None else float("nan"))
            row.update(method=method, fixed=" ".join(str(k) for k in known))
            corr = answer.cov / np.outer(sigma, sigma)
            for column in correlation_columns(predictor):
                a, b = column[5:].split("_")
                row[column] = float(corr[LABEL_NAMES.index(a), LABEL_NAMES.index(b)])
            row.update(rv_kms=inp.rv_kms, rv_source=inp.meta.get("rv_source"),
                       rv_significance=inp.velocity.significance if inp.velocity else None,
                       rv_ccf_kms=inp.ccf.v_kms if inp.ccf else np.nan,
                       ccf_width_kms=inp.ccf.width_kms if inp.ccf else np.nan,
                       snr=float(snr[k]), gap_fraction=inp.gap_fraction,
                       bad_pixel_fraction=inp.bad_pixel_fraction, ood_score=float(score[k]))
            row["flags"] = (quality_flags(row, inp, predictor) + fit_flags(*fits[k])
                            + calibration_flags(predictor, method, raw.mean))
            rows.append(row)
    return rows


def answer_of(network, fitted, cov_sys, known, renderer):
    """(Answer, method) of one input: the least-squares fit's answer where there is one
    (method ``renderer.method``: "refined" on the grid, "fit" on the emulator), else the
    network's, conditioned on ``known`` labels ("network", "network+fix")."""
    from .uncertainty import refined_answer

    if fitted is None:
        return network, "network+fix" if known else "network"
    return refined_answer(fitted, cov_sys, known), renderer.method


def answer_columns(network, fitted) -> dict:
    """``<label>_network``, ``<label>_fit`` (NaN without a fit) and ``fit_rms``."""
    columns = {f"{name}_network": float(network.mean[i]) for i, name in enumerate(LABEL_NAMES)}
    if fitted is not None:
        columns.update({f"{name}_fit": float(fitted.labels[i]) for i, name in enumerate(LABEL_NAMES)})
        columns["fit_rms"] = float(fitted.rms)
    return columns


def fit_flags(fitted, problem) -> list[str]:
    """``refine_failed`` (no fit: ``problem``), ``fit_at_bound``, ``fit_not_converged``."""
    if problem:
        return ["refine_failed"]
    if fitted is None:
        return []
    return ((["fit_at_bound"] if fitted.at_bound else [])
            + ([] if fitted.converged else ["fit_not_converged"]))


def calibration_flags(predictor: Predictor, method: str, raw_mean) -> list[str]:
    """``calibration_extrapolated`` when the answer was calibrated from a raw answer outside the
    calibrators' answers (the correction is then held at the nearest calibrator's)."""
    if not method.endswith("+calibrated"):
        return []
    calibration = predictor.label_calibrations[method.split("+")[0]]
    return ["calibration_extrapolated"] if calibration.extrapolated(raw_mean) else []


def calibrated(predictor: Predictor, raw, method: str, mean, cov_stat, cov_sys, known):
    """(answer, method) calibrated against the benchmark stars where the weights have a label
    calibration (:mod:`paper_lib.evaluation.label_calibration`) fitted on answers of this
    method: the network's answer is calibrated **before** it is conditioned on ``known``
    labels (the calibration was fitted on unconditioned answers); other methods (the refined
    answer) are calibrated only with no label held. Else ``(raw, method)`` unchanged."""
    from .uncertainty import Answer, combine

    calibration = predictor.label_calibrations.get(method.split("+")[0])
    if calibration is None:
        return raw, method
    if method.startswith("network"):
        shifted, sigma_cal = calibration.apply(mean)
        return combine(shifted[0], cov_stat, cov_sys, known, sigma_cal), f"{method}+calibrated"
    if known:
        return raw, method
    shifted, sigma_cal = calibration.apply(raw.mean)
    cov = raw.cov + np.diag(np.square(sigma_cal))
    return Answer(shifted[0], cov, raw.sigma_stat, raw.sigma_sys, sigma_cal), f"{method}+calibrated"


def predict_rows(inputs, model=DEFAULT_MODEL, *, rv=None, wave_path=None, blaze_path=None,
                 profile=None, models_dir=None, vacuum: bool | None = None,
                 batch_size: int = BATCH_SIZE, workers: int = 2, progress: bool | None = None,
                 options: dict | None = None, fix=None, refine=None,
                 grid=None, calibrate: bool = True) -> list[dict]:
    """One dict per input, in order (see :mod:`paper_lib.predict`), all with the same keys; a
    failed input has NaN labels and its ``error``, so one bad file never costs the others
    their results.

    ``model``: a variant name of ``profile`` (default :data:`DEFAULT_PROFILE`, or with
    ``models_dir`` the profile its weights were trained with), or a :class:`Predictor`. ``rv`` [km/s]: None
    (measure it), one value for all, one per input, or {path or file name: value};
    ``wave_path``, ``blaze_path``: the wave and blaze frames of e2ds inputs whose header does
    not give them (same forms). ``vacuum``: True if the wavelengths are in vacuum, None to
    take it from the header. ``workers``: processes that read and prepare the inputs while
    the networks run (threads below 16 inputs, or where the OS cannot fork). ``progress``
    None: a bar from 10 inputs on. ``options``: how
    error messages name the fix (default :data:`~paper_lib.predict.inputs.PREDICT_OPTIONS`,
    these keyword arguments; the command line passes its options). ``fix``: labels known from
    elsewhere (``"logg=4.44±0.05"``, a list of them, or {name: (value, σ)}; :mod:`~.known`),
    which condition the answer. ``refine``: fit every star by least squares from the network's
    answer (None: :data:`~.fit.FIT_BY_DEFAULT`): on the profile's shipped emulator
    (``models_dir``/emulator.pt, :mod:`~.fit`), or, given ``grid`` (a Grid or grid file), on
    the grid (:mod:`~.refine`); or a fitter already loaded (:func:`refinement_renderer`), to
    reuse across calls. The label columns then hold the fit's answer; ``method`` says which,
    and ``<label>_network``, ``<label>_fit`` keep both.
    ``calibrate``: apply the weights' label calibration against the benchmark stars where
    there is one (the label columns then hold the calibrated values, ``<label>_raw`` the
    uncalibrated answer and ``<label>_sigma_cal`` the calibration's σ; ``method`` ends in
    ``+calibrated``); False gives the raw answer (``<label>_raw`` equals the label).
    """
    from .known import known_labels

    predictor = model if isinstance(model, Predictor) else Predictor.load(model, profile, models_dir)
    known = known_labels(fix, predictor.bounds, option=(options or PREDICT_OPTIONS).get("fix", "fix"))
    from .fit import FIT_BY_DEFAULT

    refine = FIT_BY_DEFAULT if refine is None else refine
    renderer = (refine if hasattr(refine, "fit")
                else refinement_renderer(grid, predictor.profile, models_dir) if refine else None)
    check_inputs(inputs, rv)
    items = expand_inputs(inputs)
    if not items:
        raise ValueError("no spectra given")
    per_item = list(zip(per_input(rv, items, "rv"), per_input(wave_path, items, "wave_path"),
                        per_input(blaze_path, items, "blaze_path")))
    progress = progress if progress is not None else len(items) >= 10
    rows = []
    chunks = prepared_chunks(items, per_item, vacuum, workers, progress, batch_size)
    try:  # closed at once on Ctrl-C or an error: its workers stop with it
        for chunk in chunks:
            good = [inp for inp in chunk if not isinstance(inp, Exception)]
            labelled = iter(label_rows(predictor, good, batch_size, known, renderer, calibrate)
                            if good else ())
            for item, inp in zip(items[len(rows):], chunk):
                if isinstance(inp, Exception):
                    failed = empty_row(predictor, input_name(item))
                    failed["error"] = error_text(inp, options or PREDICT_OPTIONS)
                    rows.append(failed)
                else:
                    rows.append(next(labelled))
    finally:
        chunks.close()
    return rows


def check_inputs(inputs, rv) -> None:
    """ValueError in the caller's terms for ``inputs`` that are not files, folders, globs or
    Spectrum objects (e.g. an array of flux), and for a radial velocity that is not finite."""
    from pathlib import Path

    from ..observed.spectrum import Spectrum

    items = [inputs] if isinstance(inputs, (str, Path, Spectrum)) else inputs
    if isinstance(inputs, np.ndarray) or not isinstance(items, (list, tuple)) or not all(
            isinstance(i, (str, Path, Spectrum)) for i in items):
        raise ValueError(f"inputs: give file paths, folders, glob patterns or Spectrum objects "
                         f"(a list of them), not {type(inputs).__name__}; flux in memory goes "
                         f"in a paper_lib.observed.spectrum.Spectrum with its wavelengths")
    values = rv.values() if isinstance(rv, dict) else np.ravel(np.asarray(rv, dtype=object))
    for value in values:
        if value is not None and not (isinstance(value, (int, float, np.number))
                                      and abs(float(value)) < 3e5):
            raise ValueError(f"rv={value!r}: give finite radial velocities in km/s (or None "
                             "to measure them)")


def predict_table(inputs, model=DEFAULT_MODEL, *, rv=None, **options):
    """:func:`predict_rows` as a pandas DataFrame (one row per input, always the same columns;
    ``error`` is None for the files that worked, ``flags`` a list of flag names, empty when all
    is well)."""
    import pandas as pd

    return pd.DataFrame(predict_rows(inputs, model, rv=rv, **options))


def refinement_renderer(grid, profile, models_dir=None, *, network_only: bool = False):
    """The fitter of ``predict --refine``: a :class:`~.refine.GridRefiner` of ``grid`` (a Grid or
    a grid file, checked against the networks: physics id, air wavelengths, coverage), else the
    :class:`~.fit.EmulatorFitter` of the profile's shipped emulator (``models_dir``, default
    ``models/<profile>/``; ``network_only``: its MLP alone, :meth:`~.fit.EmulatorFitter.load`);
    ValueError saying how to make it if none."""
    from ..models.emulator import emulator_file
    from ..profiles import get_profile
    from ..synthetic.grid import Grid
    from .fit import EmulatorFitter
    from .refine import GridRefiner, check_grid_file, check_grid_wavelengths

    if grid is not None:
        if not isinstance(grid, Grid):
            check_grid_file(grid)  # before reading its spectra
            grid = Grid.from_fits(grid)
        check_grid_wavelengths(grid)
        return GridRefiner(grid)
    profile = get_profile(profile)
    path = emulator_file(profile.name, models_dir)
    if not path.exists():
        raise ValueError(f"fitting needs the spectrum emulator of profile {profile.name!r} "
                         f"({path}): train it with python -m paper_lib emulator --profile "
                         f"{profile.name} (needs the grid: python -m paper_lib synth --profile "
                         f"{profile.name}), or fit a grid file with --grid")
    return EmulatorFitter.load(path, network_only=network_only)

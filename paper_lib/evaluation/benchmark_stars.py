"""Real stars with labels known without spectroscopy: the benchmark set, `predict` on it, and its
errors against the references — raw and calibrated with one star left out at a time.

The set is a folder of spectra with ``references.csv`` (columns ``file, star, instrument,
resolving_power, teff, teff_err, logg, logg_err, feh, reference``; the default is
``benchmarks/`` of the shared data folder, see :func:`paper_lib.paths.shared_data_dir`) plus
the two solar spectra of ``sun/`` (reference: the IAU 2015 nominal Sun). Stars whose reference
is a Gaia FGK benchmark star or the IAU Sun are **counted**; others (Vega: approximate
literature values, at the grid's hot end) are reported but never fitted on nor counted.

Conventions: Δ = answer − reference (positive: too high); ``feh`` of the references is
compared with our [M/H]. Every number here counts **stars**, not spectra: a star's Δ is the
mean over its spectra (the Sun has three), so that one well-observed star does not weigh more.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import paths
from ..labels import SUN_REFERENCE
from .label_calibration import CALIBRATED_LABELS

REFERENCES_FILE = "references.csv"
SUN_FILES = {"sun/Sun_HARPS_Ganymede_s1d.fits": ("HARPS (Ganymede)", 115000.0),
             "sun/UVES_Sun-1_cleaned_norm.txt": ("UVES", 80000.0)}  # file: instrument, R
SUN_SOURCE = "IAU 2015 nominal values (Prsa et al. 2016)"
COUNTED_SOURCES = ("Gaia FGK benchmark", "IAU 2015")  # references that are independent labels
BENCHMARK_SOURCE = ("../shared/data/benchmarks/ of this project (files from public GitHub "
                    "repositories, listed in its README.md with commits and licences)")


@dataclass
class BenchmarkSpectrum:
    """One spectrum of a benchmark star: its file, the star, the reference labels (teff [K],
    logg [dex], mh [dex]) with their errors, the reference's source, and whether it counts."""

    path: Path
    star: str
    instrument: str
    resolving_power: float
    reference: dict
    reference_error: dict
    source: str
    counted: bool = field(init=False)

    def __post_init__(self):
        self.counted = self.source.startswith(COUNTED_SOURCES)


def _float(row: dict, key: str, path: Path) -> float:
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: column {key!r} of {row.get('file')!r} is not a number "
                         f"({row.get(key)!r})") from None


def read_references(folder) -> list[BenchmarkSpectrum]:
    """The spectra listed in ``folder``/references.csv, in its order (files that are not
    there raise FileNotFoundError naming them)."""
    folder = Path(folder)
    path = folder / REFERENCES_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {REFERENCES_FILE} in {folder}: a benchmark folder holds "
                                f"the spectra and {REFERENCES_FILE} (columns file, star, "
                                "instrument, resolving_power, teff, teff_err, logg, logg_err, "
                                f"feh, reference). Source of ours: {BENCHMARK_SOURCE}")
    spectra = []
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            file = folder / row["file"]
            if not file.exists():
                raise FileNotFoundError(f"{path} lists {row['file']}, which is not in {folder}")
            spectra.append(BenchmarkSpectrum(
                file, row["star"], row["instrument"], _float(row, "resolving_power", path),
                {k: _float(row, c, path) for k, c in zip(CALIBRATED_LABELS, ("teff", "logg", "feh"))},
                {"teff": _float(row, "teff_err", path), "logg": _float(row, "logg_err", path),
                 "mh": 0.0}, row["reference"]))
    return spectra


def solar_spectra(data_dir) -> list[BenchmarkSpectrum]:
    """The HARPS (Ganymede) and UVES solar spectra of the shared data folder, where present."""
    reference = {k: SUN_REFERENCE[k] for k in CALIBRATED_LABELS}
    error = {"teff": 1.0, "logg": 0.001, "mh": 0.0}
    return [BenchmarkSpectrum(Path(data_dir) / rel, "Sun", instrument, power, reference, error,
                              SUN_SOURCE)
            for rel, (instrument, power) in SUN_FILES.items() if (Path(data_dir) / rel).exists()]


def benchmark_set(folder=None, *, include_sun: bool = True) -> list[BenchmarkSpectrum]:
    """The benchmark spectra: ``folder`` (default the shared data's ``benchmarks/``) and, with
    ``include_sun``, the shared solar spectra. FileNotFoundError saying where to get them."""
    from .. import paths

    data_dir = paths.shared_data_dir()
    spectra = read_references(Path(folder) if folder is not None else data_dir / "benchmarks")
    if include_sun:
        spectra += solar_spectra(data_dir)
    return spectra


def star_order(spectra) -> list[str]:
    """The stars in the order they first appear."""
    return list(dict.fromkeys(s.star for s in spectra))


def predict_benchmarks(spectra, model=None, **options):
    """``paper_lib.predict`` on every benchmark spectrum (``options`` as for it; the raw answer
    unless told otherwise), with the reference labels, Δ and Δ/σ beside it: a DataFrame with
    one row per spectrum and columns ``star``, ``counted``, ``ref_<label>``, ``ref_<label>_err``,
    ``delta_<label>``, ``z_<label>`` (Δ over the total σ and the reference's error). A
    calibrator star of the network's line mask is read by the network blind to the mask made
    without it (:func:`star_readers`)."""
    import pandas as pd

    from ..predict import predict_table
    from ..echelle.line_mask import calibrator_of

    predictor, readers = star_readers(model, options.get("profile"), options.get("models_dir"))
    keys = [star if star in readers else None for star in map(calibrator_of, spectra)]
    parts = []
    for key in dict.fromkeys(keys):
        index = [k for k, found in enumerate(keys) if found == key]
        part = predict_table([spectra[k].path for k in index], readers.get(key, predictor),
                             progress=False, **options)
        parts.append(part.set_axis(index))
    return with_references(pd.concat(parts).sort_index(), spectra)


def star_readers(model=None, profile=None, models_dir=None) -> tuple:
    """(predictor, {calibrator star: predictor}): the :class:`~paper_lib.predict.Predictor` of
    ``model`` (a variant name, default ``predict``'s, or a Predictor) and, when its network
    never sees a line mask made from calibrator stars (:mod:`.line_mask`), the networks that
    read each calibrator star: trained the same way but blind to the mask made without that
    star (``line_mask_folds/<fold>/`` beside the weights), with the main network's σ
    calibration, systematics and label calibration. A fold network that is missing is a
    warning: that star is then read through a mask made from it."""
    import dataclasses
    import warnings

    from ..models import describe
    from ..predict import DEFAULT_MODEL, Predictor
    from ..training.checkpoints import load_model
    from ..echelle.line_mask import FOLDS_DIR, fold_names

    predictor = (model if isinstance(model, Predictor)
                 else Predictor.load(model or DEFAULT_MODEL, profile, models_dir))
    readers = {}
    if not describe(predictor.model).get("kwargs", {}).get("hidden_runs"):
        return predictor, readers
    folder = Path(models_dir or paths.models / predictor.profile) / FOLDS_DIR
    for fold, star in fold_names().items():
        if star is None:  # the shipped network itself
            continue
        path = folder / fold / f"{predictor.name}.pt"
        problem = "is missing" if not path.exists() else (
            None if _finished(path) else "is still training")
        if problem is None:
            readers[star] = dataclasses.replace(predictor, model=load_model(path))
        else:
            warnings.warn(f"{path} {problem}: {star} is read through a line mask made from "
                          f"it (notebook 03 trains it)", stacklevel=2)
    return predictor, readers


def _finished(path) -> bool:
    """Whether the checkpoint at ``path`` holds all the epochs it was trained for."""
    from ..training.checkpoints import load_checkpoint

    checkpoint = load_checkpoint(path)
    return checkpoint["epoch"] >= checkpoint["config"]["epochs"]


def with_references(table, spectra):
    """``table`` (one row per spectrum, in order) with references, Δ and Δ/σ columns."""
    table = table.copy()
    table.insert(0, "star", [s.star for s in spectra])
    table.insert(1, "counted", [s.counted for s in spectra])
    for label in CALIBRATED_LABELS:
        table[f"ref_{label}"] = [s.reference[label] for s in spectra]
        table[f"ref_{label}_err"] = [s.reference_error[label] for s in spectra]
        table[f"delta_{label}"] = table[label] - table[f"ref_{label}"]
        table[f"z_{label}"] = table[f"delta_{label}"] / np.hypot(table[f"{label}_sigma"],
                                                                table[f"ref_{label}_err"])
    return table


def per_star(table):
    """Mean Δ and mean |z| per star (counted stars and the others alike), in the set's order."""
    columns = [f"delta_{k}" for k in CALIBRATED_LABELS] + [f"z_{k}" for k in CALIBRATED_LABELS]
    grouped = table.groupby("star", sort=False)
    out = grouped[columns].mean()
    out.insert(0, "counted", grouped["counted"].first())
    out.insert(1, "spectra", grouped.size())
    return out


def summary(table) -> dict:
    """Over the counted stars: median |Δ| and mean Δ per label (each star's Δ the mean of its
    spectra), and the fraction of (spectrum, label) pairs within 2 σ_total (|z| < 2); spectra
    that ``predict`` could not read are left out (and named under ``unread``)."""
    counted = table[table["counted"] & table["error"].isna()]
    stars = per_star(counted)
    z = np.abs(counted[[f"z_{k}" for k in CALIBRATED_LABELS]].to_numpy())
    return {"stars": int(len(stars)), "spectra": int(len(counted)),
            "unread": [Path(f).name for f in table.loc[table["error"].notna(), "file"]],
            "median_abs_delta": {k: float(np.median(np.abs(stars[f"delta_{k}"])))
                                 for k in CALIBRATED_LABELS},
            "mean_delta": {k: float(np.mean(stars[f"delta_{k}"])) for k in CALIBRATED_LABELS},
            "within_2sigma": float(np.mean(z < 2.0)) if z.size else float("nan")}


def _calibration_inputs(table):
    """(answers, references, stars, σ known) of the counted spectra that ``predict`` read."""
    used = table[table["counted"] & table["error"].isna()]
    answers = {k: used[k].to_numpy(float) for k in CALIBRATED_LABELS}
    references = {k: used[f"ref_{k}"].to_numpy(float) for k in CALIBRATED_LABELS}
    sigma_known = {k: np.hypot(used[f"{k}_sigma"].to_numpy(float),
                               used[f"ref_{k}_err"].to_numpy(float)) for k in CALIBRATED_LABELS}
    return used, answers, references, used["star"].to_numpy(), sigma_known


def loso_calibrated(raw_table):
    """The counted, readable spectra of a raw benchmark table with each answer calibrated by a
    calibration fitted **without its star** (:func:`~.label_calibration.leave_one_star_out`):
    label columns calibrated, ``<label>_raw`` the raw answer, ``<label>_sigma`` with the
    nested σ_cal added (``<label>_sigma_cal``), Δ and z recomputed."""
    from .label_calibration import leave_one_star_out

    used, answers, references, stars, sigma_known = _calibration_inputs(raw_table)
    loso = leave_one_star_out(answers, references, stars, sigma_known)
    out = used.copy()
    for label, (values, sigma_cal) in loso.items():
        out[f"{label}_raw"] = out[label]
        out[label] = values
        out[f"{label}_sigma_cal"] = sigma_cal
        out[f"{label}_sigma"] = np.hypot(out[f"{label}_sigma"], sigma_cal)
        out[f"delta_{label}"] = out[label] - out[f"ref_{label}"]
        out[f"z_{label}"] = out[f"delta_{label}"] / np.hypot(out[f"{label}_sigma"],
                                                            out[f"ref_{label}_err"])
    return out


def calibrate_on_benchmarks(variant: str, *, profile: str = "cpu", models_dir=None,
                            spectra=None, write: bool = True, refine: bool = False,
                            **options) -> dict:
    """Fit the label calibration of ``variant``'s answers on the counted benchmark stars (its
    raw answers: ``predict(..., calibrate=False)``; with ``refine`` the least-squares fit's on
    the profile's emulator, stored as ``<variant>+fit``), store it beside the weights (unless
    ``write`` is False) and return {record, raw, loso, summary_raw, summary_loso}."""
    import warnings

    from .. import paths
    from ..models.emulator import EMULATOR_FILE
    from .label_calibration import calibration_record, fit_all_labels, write_label_calibration

    spectra = spectra if spectra is not None else benchmark_set()
    folder = Path(models_dir or paths.models / profile)
    raw = predict_benchmarks(spectra, variant, profile=profile, models_dir=folder,
                             calibrate=False, refine=refine, **options)
    method = "fit" if refine else "network"
    other = raw[raw["counted"] & raw["error"].isna() & ~raw["method"].eq(method)]
    if len(other):
        warnings.warn(f"{', '.join(map(str, other['star']))}: not answered by the {method} "
                      f"(flags {sorted({f for fl in other['flags'] for f in fl})}): their "
                      f"network answers enter the calibration", stacklevel=2)
    used, answers, references, stars, sigma_known = _calibration_inputs(raw)
    fits = fit_all_labels(answers, references, stars, sigma_known)
    loso = loso_calibrated(raw)
    summary_loso = summary(loso)
    read = {Path(f).name for f in used["file"]}  # the counted files predict could read
    record = calibration_record(
        fits, variant=variant, method=method, weights_path=folder / f"{variant}.pt",
        stars=[{"star": s.star, "file": s.path.name, "reference": s.reference,
                "source": s.source} for s in spectra if s.counted and s.path.name in read],
        loso=summary_loso["median_abs_delta"], answers=answers,
        emulator_path=folder / EMULATOR_FILE if refine else None)
    if write:
        write_label_calibration(folder, record)
    return {"record": record, "raw": raw, "loso": loso, "summary_raw": summary(raw),
            "summary_loso": summary_loso}


def fit_beats_network(fit_loso: dict, network_loso: dict) -> bool:
    """Whether the least-squares fit's answers, calibrated leaving one star out, read the
    benchmark stars at least as well as the network's on every label (median |Δ|) and cover
    as many labels within 2σ: the rule for ``predict`` to fit by default
    (:data:`paper_lib.predict.fit.FIT_BY_DEFAULT`). Arguments: :func:`summary` dicts."""
    better = all(fit_loso["median_abs_delta"][k] <= network_loso["median_abs_delta"][k]
                 for k in network_loso["median_abs_delta"])
    return bool(better and fit_loso["within_2sigma"] >= network_loso["within_2sigma"])

"""The benchmark stars (issue 31): the leave-one-star-out label calibration on constructed cases
with known offsets, its storage tied to the weights, `predict`'s calibrated and raw columns,
and the benchmark set read from a folder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from paper_lib.evaluation import label_calibration as lc
from paper_lib.evaluation.benchmark_stars import (BenchmarkSpectrum, read_references, summary,
                                                  with_references)
from paper_lib.labels import LABEL_NAMES

from .conftest import shared_or_skip


def constructed_stars(n_stars=8, offset=None, slope_in_teff=0.0, noise=None, seed=0):
    """Answers of ``n_stars`` stars (two spectra each) = reference − offset (+ a term linear in
    Teff for log g) + noise: what a biased network would give."""
    rng = np.random.default_rng(seed)
    offset = offset or {"teff": 120.0, "logg": 0.4, "mh": 0.25}
    noise = noise or {"teff": 20.0, "logg": 0.03, "mh": 0.02}
    ref = {"teff": rng.uniform(4000, 6500, n_stars), "logg": rng.uniform(1.0, 4.6, n_stars),
           "mh": rng.uniform(-2.0, 0.3, n_stars)}
    stars = np.repeat([f"star{i}" for i in range(n_stars)], 2)
    references = {k: np.repeat(v, 2) for k, v in ref.items()}
    answers = {}
    for k in lc.CALIBRATED_LABELS:
        answers[k] = references[k] - offset[k] + rng.normal(0, noise[k], len(stars))
    answers["logg"] += slope_in_teff * (answers["teff"] - lc.TERM_CENTRE["teff"]) / 1000.0
    sigma = {k: np.full(len(stars), noise[k]) for k in lc.CALIBRATED_LABELS}
    return answers, references, stars, sigma


def test_a_constant_offset_is_recovered_by_a_zero_point_and_loso_removes_it():
    answers, refs, stars, sigma = constructed_stars()
    fits = lc.fit_all_labels(answers, refs, stars, sigma)
    assert fits["teff"][0].zero_point == pytest.approx(120.0, abs=15.0)
    assert fits["logg"][0].zero_point == pytest.approx(0.4, abs=0.03)
    loso = lc.leave_one_star_out(answers, refs, stars, sigma)
    for k in lc.CALIBRATED_LABELS:
        raw_error = np.median(np.abs(answers[k] - refs[k]))
        calibrated_error = np.median(np.abs(loso[k][0] - refs[k]))
        assert calibrated_error < 0.25 * raw_error, k


def test_a_trend_gets_its_linear_term_and_none_is_added_without_one():
    answers, refs, stars, sigma = constructed_stars(n_stars=10, slope_in_teff=-0.3)
    fit, scores = lc.fit_label(answers, refs["logg"], stars, sigma["logg"], "logg")
    assert fit.term == "teff" and fit.slope == pytest.approx(0.3, abs=0.08)
    assert scores["teff"] < scores["None"]
    plain, _ = lc.fit_label(*_one_label(constructed_stars(n_stars=10, seed=3), "mh"), "mh")
    assert plain.term is None or abs(plain.slope) < 0.05


def _one_label(case, label):
    answers, refs, stars, sigma = case
    return answers, refs[label], stars, sigma[label]


def test_too_few_stars_get_a_zero_point_only():
    answers, refs, stars, sigma = constructed_stars(n_stars=4, slope_in_teff=-0.3)
    fit, scores = lc.fit_label(answers, refs["logg"], stars, sigma["logg"], "logg")
    assert fit.term is None and list(scores) == ["none", "None"]  # no linear term to choose


def test_answers_without_an_offset_are_left_as_they_are():
    """Four stars read ±e about their references: a zero point fitted without one of them is
    off by e/3 on it, so no correction has the lower LOSO error and is chosen."""
    stars = np.repeat(["a", "b", "c", "d"], 2)
    refs = {"teff": np.repeat([4500.0, 5000.0, 5500.0, 6000.0], 2),
            "logg": np.repeat([1.5, 2.5, 3.5, 4.5], 2), "mh": np.repeat([-1.0, -0.5, 0.0, 0.2], 2)}
    sign = np.repeat([1.0, -1.0, 1.0, -1.0], 2)
    step = {"teff": 60.0, "logg": 0.1, "mh": 0.05}
    answers = {k: refs[k] + sign * step[k] for k in lc.CALIBRATED_LABELS}
    sigma = {k: np.full(8, 1.5 * step[k]) for k in lc.CALIBRATED_LABELS}
    fits = lc.fit_all_labels(answers, refs, stars, sigma)
    for label, (fit, scores) in fits.items():
        assert fit.model == lc.NO_CORRECTION and fit.zero_point == 0.0 and fit.term is None, label
        assert scores["none"] == pytest.approx(step[label])
        assert scores["None"] == pytest.approx(step[label] * 4 / 3)
        assert fit.sigma_cal == 0.0  # the raw residuals are within their σ
    loso = lc.leave_one_star_out(answers, refs, stars, sigma)
    np.testing.assert_allclose(loso["teff"][0], answers["teff"])  # nothing removed
    biased, _ = lc.fit_label(*_one_label(constructed_stars(), "teff"), "teff")
    assert biased.model.startswith("zero point")  # an offset of 6σ per star is removed


def test_sigma_cal_gives_the_normalised_residuals_unit_mean_square():
    rng = np.random.default_rng(1)
    stars = np.arange(200).astype(str)
    residuals, known = rng.normal(0, 0.2, 200), np.full(200, 0.05)
    extra = lc.calibration_sigma(residuals, known, stars)
    assert np.mean(residuals ** 2 / (known ** 2 + extra ** 2)) == pytest.approx(1.0, abs=1e-6)
    assert extra == pytest.approx(0.2, rel=0.15)
    assert lc.calibration_sigma(residuals * 0.01, known, stars) == 0.0


def test_stars_weigh_alike_however_many_spectra_they_have():
    weights = lc._star_weights(np.array(["sun", "sun", "sun", "procyon"]))
    assert np.allclose(weights, [1 / 3, 1 / 3, 1 / 3, 1.0])


def test_calibration_applies_to_its_weights_only_and_rejects_nan(tmp_path):
    weights = tmp_path / "net.pt"
    weights.write_bytes(b"weights")
    fits = lc.fit_all_labels(*constructed_stars())
    record = lc.calibration_record(fits, variant="net", method="network", weights_path=weights,
                                   stars=[], loso={})
    lc.write_label_calibration(tmp_path, record)
    calibration = lc.load_label_calibrations(tmp_path, "net", weights)["network"]
    shifted, sigma_cal = calibration.apply(np.array([[5000.0, 3.0, -0.5, 5.0]]))
    assert shifted[0, 0] == pytest.approx(5000.0 + fits["teff"][0].correction(
        {"teff": np.array([5000.0]), "logg": np.array([3.0]), "mh": np.array([-0.5])})[0])
    assert shifted[0, 3] == 5.0 and sigma_cal[3] == 0.0  # v sin i untouched
    weights.write_bytes(b"other weights")
    assert lc.load_label_calibrations(tmp_path, "net", weights) == {}
    record["labels"]["logg"]["zero_point"] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        lc.LabelCalibration(record)
    (tmp_path / lc.LABEL_CALIBRATION_FILE).write_text("{trunc")
    with pytest.raises(ValueError, match="benchmark-calibrate"):
        lc.read_label_calibrations(tmp_path)


def test_a_linear_term_is_held_at_the_calibrators_range_and_flagged_beyond_it(tmp_path):
    answers, refs, stars, sigma = constructed_stars(n_stars=10, slope_in_teff=-0.3)
    fits = lc.fit_all_labels(answers, refs, stars, sigma)
    fit = fits["logg"][0]
    assert fit.term == "teff" and fit.term_range == (answers["teff"].min(), answers["teff"].max())
    hottest = {k: np.array([v.max()]) for k, v in answers.items()}
    beyond = dict(hottest, teff=np.array([9500.0]))  # Vega: 3000 K past the calibrators
    assert fit.correction(beyond) == pytest.approx(fit.correction(hottest))
    weights = tmp_path / "net.pt"
    weights.write_bytes(b"weights")
    record = lc.calibration_record(fits, variant="net", method="network", weights_path=weights,
                                   stars=[], loso={}, answers=answers)
    calibration = lc.LabelCalibration(json.loads(json.dumps(record)))  # as stored
    inside = [np.median(answers[k]) for k in lc.CALIBRATED_LABELS] + [5.0]
    assert calibration.extrapolated(inside) == []
    assert calibration.extrapolated([9500.0, *inside[1:]]) == ["teff"]
    assert calibration.apply([9500.0, *inside[1:]])[0][0, 1] == pytest.approx(
        calibration.apply([answers["teff"].max(), *inside[1:]])[0][0, 1])


def test_the_fits_calibration_is_stored_apart_and_tied_to_the_emulator(tmp_path):
    weights, emulator = tmp_path / "net.pt", tmp_path / "emulator.pt"
    weights.write_bytes(b"weights")
    emulator.write_bytes(b"emulator")
    fits = lc.fit_all_labels(*constructed_stars())
    for method in ("network", "fit"):
        lc.write_label_calibration(tmp_path, lc.calibration_record(
            fits, variant="net", method=method, weights_path=weights, stars=[], loso={},
            emulator_path=emulator if method == "fit" else None))
    assert set(lc.read_label_calibrations(tmp_path)) == {"net", "net+fit"}
    assert set(lc.load_label_calibrations(tmp_path, "net", weights, emulator)) == {"network", "fit"}
    emulator.write_bytes(b"another emulator")
    assert set(lc.load_label_calibrations(tmp_path, "net", weights, emulator)) == {"network"}


def test_references_csv_is_read_and_its_problems_are_named(tmp_path):
    (tmp_path / "a.fits").write_bytes(b"")
    csv_head = "file,star,instrument,resolving_power,teff,teff_err,logg,logg_err,feh,reference\n"
    (tmp_path / "references.csv").write_text(
        csv_head + "a.fits,Star A,HARPS,115000,5000,50,4.5,0.05,-0.1,Gaia FGK benchmark stars v3\n"
        "b.fits,Star B,HARPS,115000,9000,100,4.0,0.1,0.0,approximate literature values\n")
    with pytest.raises(FileNotFoundError, match="b.fits"):
        read_references(tmp_path)
    (tmp_path / "b.fits").write_bytes(b"")
    spectra = read_references(tmp_path)
    assert [s.counted for s in spectra] == [True, False]
    assert spectra[0].reference == {"teff": 5000.0, "logg": 4.5, "mh": -0.1}
    (tmp_path / "references.csv").write_text(csv_head + "a.fits,A,H,1,hot,1,1,1,1,x\n")
    with pytest.raises(ValueError, match="'teff'"):
        read_references(tmp_path)
    with pytest.raises(FileNotFoundError, match="references.csv"):
        read_references(tmp_path / "nowhere")


def test_summary_counts_stars_and_leaves_out_unread_and_uncounted_spectra(tmp_path):
    import pandas as pd

    spectra = [BenchmarkSpectrum(tmp_path / n, star, "x", 1.0, {"teff": 5000.0, "logg": 4.0,
                                 "mh": 0.0}, {"teff": 0.0, "logg": 0.0, "mh": 0.0}, source)
               for n, star, source in (("a", "S", "IAU 2015"), ("b", "S", "IAU 2015"),
                                       ("c", "T", "Gaia FGK benchmark"), ("d", "U", "other"),
                                       ("e", "T", "Gaia FGK benchmark"))]
    rows = pd.DataFrame({"file": [s.path.name for s in spectra],
                         "teff": [4900.0, 4700.0, 5100.0, 0.0, np.nan],
                         "logg": [4.0] * 5, "mh": [0.0] * 5,
                         **{f"{k}_sigma": [50.0, 50.0, 50.0, 50.0, np.nan]
                            for k in ("teff", "logg", "mh")},
                         "error": [None, None, None, None, "unreadable"]})
    numbers = summary(with_references(rows, spectra))
    assert numbers["stars"] == 2 and numbers["unread"] == ["e"]
    assert numbers["median_abs_delta"]["teff"] == pytest.approx(150.0)  # S: −200, T: +100


@pytest.fixture(scope="module")
def calibrated_models(tmp_path_factory):
    """The committed cpu weights of predict's default with a label calibration beside them."""
    from paper_lib import paths
    from paper_lib.predict import DEFAULT_MODEL

    folder = tmp_path_factory.mktemp("models")
    for f in paths.models.joinpath("cpu").iterdir():
        if f.is_file():  # not the line mask's leave-one-out networks
            shutil.copy(f, folder / f.name)
    weights = folder / f"{DEFAULT_MODEL}.pt"
    fit = lc.LabelFit
    fits = {k: (fit(k, z, None, 0.0, s), {}) for k, z, s in
            (("teff", 100.0, 30.0), ("logg", 0.4, 0.1), ("mh", 0.25, 0.05))}
    record = lc.calibration_record(fits, variant=DEFAULT_MODEL, method="network",
                                   weights_path=weights, stars=[], loso={})
    lc.write_label_calibration(folder, record)
    return folder


def test_predict_reports_calibrated_labels_beside_the_raw_ones(calibrated_models):
    from paper_lib.predict import predict_rows

    sun = shared_or_skip("sun/Sun_HARPS_Ganymede_s1d.fits")
    row, = predict_rows([sun], profile="cpu", models_dir=calibrated_models)
    raw, = predict_rows([sun], profile="cpu", models_dir=calibrated_models, calibrate=False)
    assert row["method"] == "network+calibrated" and raw["method"] == "network"
    assert row["teff"] == pytest.approx(raw["teff"] + 100.0)
    assert row["logg"] == pytest.approx(raw["logg"] + 0.4)
    assert row["teff_raw"] == pytest.approx(raw["teff"]) and row["vsini"] == raw["vsini"]
    assert row["logg_sigma_cal"] == pytest.approx(0.1, rel=0.3)
    assert row["logg_sigma"] ** 2 == pytest.approx(raw["logg_sigma"] ** 2 + 0.1 ** 2, rel=0.05)
    assert np.isnan(raw["logg_sigma_cal"]) and raw["logg_raw"] == raw["logg"]
    fixed, = predict_rows([sun], profile="cpu", models_dir=calibrated_models, fix="logg=4.44±0.01")
    assert fixed["method"] == "network+fix+calibrated" and abs(fixed["logg"] - 4.44) < 0.02


def test_cli_no_calibration_gives_the_raw_answer(calibrated_models):
    import subprocess
    import sys

    from paper_lib import paths

    sun = shared_or_skip("sun/Sun_HARPS_Ganymede_s1d.fits")

    def run(*extra):
        out = subprocess.run([sys.executable, "-m", "paper_lib", "predict", str(sun), "--format",
                              "json", "--models-dir", str(calibrated_models), "--profile", "cpu",
                              *extra], capture_output=True, text=True, cwd=paths.root, timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)[0]

    calibrated, raw = run(), run("--no-calibration")
    assert calibrated["method"] == "network+calibrated" and raw["method"] == "network"
    assert calibrated["teff"]["value"] == pytest.approx(raw["teff"]["value"] + 100.0, abs=0.01)
    assert calibrated["teff"]["raw"] == pytest.approx(raw["teff"]["value"], abs=0.01)
    assert set(LABEL_NAMES) <= set(calibrated)


def test_mgb_wing_pixels_lie_in_the_wings_and_not_in_the_cores():
    from paper_lib.echelle.layout import order_wavelengths
    from paper_lib.evaluation.logg_diagnosis import MGB_WING_A, mgb_wing_mask
    from paper_lib.plotting import MG_B

    wave = order_wavelengths()
    wings = mgb_wing_mask(wave)
    distance = np.min([np.abs(wave[wings] - c) for c in MG_B.values()], axis=0)
    assert wings.sum() > 500
    assert distance.min() >= MGB_WING_A[0] and distance.max() <= MGB_WING_A[1]


def test_held_label_fit_finds_the_log_g_of_a_synthetic_star(smoke_grid):
    from types import SimpleNamespace

    from paper_lib.echelle.layout import order_wavelengths
    from paper_lib.evaluation.logg_diagnosis import held_label_fit, mgb_wing_mask
    from paper_lib.predict.forward import GridRenderer

    render = GridRenderer(smoke_grid)
    truth = np.array([5800.0, 4.3, -0.2, 3.0])  # inside the smoke grid's complete cells
    inp = SimpleNamespace(image=render(truth[None])[0], mask=np.ones((8, 4096), bool))
    reference = {"teff": 5800.0, "logg": 4.3, "mh": -0.2}
    start = np.array([5600.0, 4.1, -0.4, 3.0])
    whole = held_label_fit(inp, render, reference, start)
    wings = held_label_fit(inp, render, reference, start, mgb_wing_mask(order_wavelengths()))
    assert whole.labels[1] == pytest.approx(4.3, abs=0.02)
    assert wings.labels[1] == pytest.approx(4.3, abs=0.05)
    assert whole.labels[0] == 5800.0 and whole.labels[2] == -0.2  # held where they were told


def test_the_grid_fit_keeps_the_start_with_the_lower_residual(smoke_grid):
    from types import SimpleNamespace

    from paper_lib.evaluation.logg_diagnosis import _best_grid_fit
    from paper_lib.predict.forward import GridRenderer
    from paper_lib.predict.refine import refine
    from paper_lib.synthetic.grid import OutsideGridError

    render = GridRenderer(smoke_grid)
    truth = np.array([5800.0, 4.3, -0.2, 3.0])
    rng = np.random.default_rng(0)
    inp = SimpleNamespace(image=render(truth[None])[0] + rng.normal(0, 0.01, (8, 4096)),
                          mask=np.ones((8, 4096), bool))
    starts = [np.array([5600.0, 4.1, -0.4, 3.0]), truth]
    fits = [refine(inp.image, inp.mask, start, render) for start in starts]
    best = _best_grid_fit(inp, render, starts)
    assert best.rms == min(f.rms for f in fits)
    outside = np.array([9000.0, 1.0, -2.0, 3.0])  # far from the smoke grid's cells
    assert _best_grid_fit(inp, render, [outside, truth]).rms == fits[1].rms
    with pytest.raises(OutsideGridError):
        _best_grid_fit(inp, render, [outside])


def test_predict_fits_by_default_only_where_the_cpu_benchmark_run_says_the_fit_is_better():
    from paper_lib import paths
    from paper_lib.evaluation.benchmark_stars import fit_beats_network
    from paper_lib.predict.fit import FIT_BY_DEFAULT

    def numbers(teff, logg, mh, within):
        return {"median_abs_delta": {"teff": teff, "logg": logg, "mh": mh}, "within_2sigma": within}

    network = numbers(33.0, 0.16, 0.09, 0.96)
    assert fit_beats_network(numbers(30.0, 0.15, 0.09, 0.96), network)
    assert not fit_beats_network(numbers(30.0, 0.17, 0.05, 1.0), network)  # every label
    assert not fit_beats_network(numbers(30.0, 0.15, 0.05, 0.90), network)  # and coverage
    run = json.loads((paths.root / "results/cpu/09_benchmark_stars.json").read_text())["results"]
    assert run["fit"]["beats_network"] == fit_beats_network(
        run["fit"]["calibrated_loso"], run["variants"][run["default_model"]]["calibrated_loso"])
    assert FIT_BY_DEFAULT == run["fit"]["beats_network"]

"""The σ calibration against SNR: fitted factors, interpolation, the file, and `predict` using it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from paper_lib.evaluation.sigma_calibration import (SIGMA_CALIBRATION_FILE, SigmaCalibration,
                                                    calibrate_sigma, calibration_markdown,
                                                    coverage_summary_markdown,
                                                    load_sigma_calibration,
                                                    write_sigma_calibration)
from paper_lib.labels import LABEL_NAMES

REPORTED_SIGMA = np.array([100.0, 0.1, 0.05, 1.0])


def _predictions(rng, n, snr, truth_over_reported):
    """Gaussian errors whose true σ is ``truth_over_reported`` × the reported σ."""
    true = np.tile([5800.0, 4.4, 0.0, 5.0], (n, 1))
    mean = true + rng.normal(size=(n, 4)) * REPORTED_SIGMA * truth_over_reported
    return {"true": true, "mean": mean, "sigma": np.tile(REPORTED_SIGMA, (n, 1)),
            "estimated_snr": rng.normal(snr, 0.03 * snr, size=n)}


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "net.pt"
    path.write_bytes(b"weights of a network")
    return path


@pytest.fixture
def record(weights):
    rng = np.random.default_rng(7)
    truth = {10.0: 2.0, 100.0: 0.5}  # over-confident at low SNR, cautious at high SNR
    sets = {snr: (_predictions(rng, 4000, snr, f), _predictions(rng, 4000, snr, f))
            for snr, f in truth.items()}
    return calibrate_sigma(sets, variant="net", weights_path=weights, source="test")


def test_factors_undo_a_wrong_sigma_at_each_snr(record):
    rows = {row["snr"]: row for row in record["rows"]}
    for snr, factor in ((10.0, 2.0), (100.0, 0.5)):
        assert [rows[snr]["scale"][n] for n in LABEL_NAMES] == pytest.approx([factor] * 4, rel=0.06)
        raw, calibrated = rows[snr]["test_coverage_raw"], rows[snr]["test_coverage_calibrated"]
        assert abs(raw["1"]["overall"] - 68.27) > 20  # far off before
        assert calibrated["1"]["overall"] == pytest.approx(68.27, abs=2.5)
        assert calibrated["2"]["overall"] == pytest.approx(95.45, abs=2.0)
    assert "10 |" in calibration_markdown(record)
    summary = coverage_summary_markdown({"net": record, "other": record}).splitlines()
    assert summary[0] == "| variant | SNR 10 | SNR 100 |" and len(summary) == 4
    raw, cal = (record["rows"][0][k]["1"]["overall"] for k in ("test_coverage_raw",
                                                              "test_coverage_calibrated"))
    assert summary[2].startswith(f"| net | {raw:.1f} → {cal:.1f} |")


def _one_snr_network(rng, n, snr):
    """A network trained at one SNR: the same σ whatever the noise, its error growing as
    1/SNR; the estimated SNR scatters by 30 % about the true one."""
    out = _predictions(rng, n, snr, 20.0 / snr)
    out["estimated_snr"] = snr * rng.lognormal(0.0, 0.3, size=n)
    return out


def test_factors_are_fitted_as_used_at_each_spectrums_estimated_snr(weights):
    from paper_lib.evaluation.metrics import coverage
    from paper_lib.evaluation.sigma_calibration import calibration_row

    rng = np.random.default_rng(11)
    sets = {snr: (_one_snr_network(rng, 6000, snr), _one_snr_network(rng, 6000, snr))
            for snr in (5.0, 10.0, 20.0, 50.0, 100.0)}
    record = calibrate_sigma(sets, variant="net", weights_path=weights, source="test")
    assert record["format"] == 2 and record["fit"]["largest_remaining_change"] < 1e-3
    for row in record["rows"]:
        assert row["test_coverage_calibrated"]["1"]["overall"] == pytest.approx(68.27, abs=1.5)
    # factors fitted per SNR alone, applied at the scattered estimates: off at the ends
    one_pass = SigmaCalibration({"rows": [calibration_row(snr, val, test)
                                          for snr, (val, test) in sets.items()]})
    worst = max(abs(100 * coverage(t["true"], t["mean"], t["sigma"] * one_pass.factors(
        t["estimated_snr"]))[1]["overall"] - 68.27) for _, t in sets.values())
    assert worst > 4.0


def test_factors_interpolate_in_log_snr_and_hold_beyond(record):
    calibration = SigmaCalibration(record)
    low, high = calibration.scale[0], calibration.scale[-1]
    middle = np.exp(calibration.log_snr.mean())  # halfway in ln SNR
    f = calibration.factors([1.0, middle, 1e4, np.nan, -3.0])
    assert f[0] == pytest.approx(low) and f[2] == pytest.approx(high)
    assert f[1] == pytest.approx((low + high) / 2)
    assert f[3] == pytest.approx(np.maximum(low, high)) and f[4] == pytest.approx(f[3])
    cov = np.tile(np.diag(REPORTED_SIGMA ** 2), (2, 1, 1))
    scaled = calibration.apply(cov, [1.0, 1e4])
    assert np.sqrt(np.diag(scaled[0])) == pytest.approx(REPORTED_SIGMA * low)
    assert np.sqrt(np.diag(scaled[1])) == pytest.approx(REPORTED_SIGMA * high)


def test_file_round_trip_and_weights_check(tmp_path, record, weights):
    write_sigma_calibration(tmp_path, record)
    write_sigma_calibration(tmp_path, {**record, "variant": "other"})  # a second variant kept
    assert set(json.loads((tmp_path / SIGMA_CALIBRATION_FILE).read_text())) == {"net", "other"}
    loaded = load_sigma_calibration(tmp_path, "net", weights)
    assert np.array_equal(loaded.scale, SigmaCalibration(record).scale)
    assert load_sigma_calibration(tmp_path, "missing", weights) is None
    weights.write_bytes(b"retrained")
    assert load_sigma_calibration(tmp_path, "net", weights) is None  # made for other weights
    (tmp_path / SIGMA_CALIBRATION_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="sigma-calibrate"):
        load_sigma_calibration(tmp_path, "net", weights)


def test_predict_scales_the_statistical_sigma_at_the_spectrum_snr(tmp_path):
    from paper_lib import paths
    from paper_lib.observed.quality import file_sha256
    from paper_lib.predict import DEFAULT_MODEL, predict_rows

    from .conftest import shared_or_skip

    sun = shared_or_skip("sun/Sun_HARPS_Ganymede_s1d.fits")
    for name in (f"{DEFAULT_MODEL}.pt", "dae.pt", "ood_calibration.json"):
        shutil.copy(paths.models / "cpu" / name, tmp_path / name)
    plain = predict_rows([sun], profile="cpu", models_dir=tmp_path, progress=False)[0]
    factors = {"teff": 2.0, "logg": 3.0, "mh": 0.5, "vsini": 1.0}
    write_sigma_calibration(tmp_path, {
        "format": 2, "variant": DEFAULT_MODEL, "weights_sha256": file_sha256(tmp_path / f"{DEFAULT_MODEL}.pt"),
        "rows": [{"snr": snr, "estimated_snr": snr, "scale": factors} for snr in (10.0, 300.0)]})
    scaled = predict_rows([sun], profile="cpu", models_dir=tmp_path, progress=False)[0]
    for name, factor in factors.items():
        assert scaled[f"{name}_sigma_stat"] == pytest.approx(factor * plain[f"{name}_sigma_stat"])
        assert scaled[name] == plain[name]


def test_a_synthetic_image_with_filled_pixels_is_measured_at_its_true_snr(smoke_grid):
    """The _real variant's images have the line mask and the CCD gap filled with a noiseless 1.0;
    the σ calibration measures their SNR without those pixels, as predict does on a real
    spectrum (whose filled pixels its mask leaves out), else it would read ~3× too high."""
    import dataclasses

    from paper_lib.echelle.testsets import make_test_set
    from paper_lib.experiments import data_settings
    from paper_lib.observed.quality import estimate_snr, filled_pixels_left_out
    from paper_lib.profiles import get_profile

    settings = data_settings(get_profile("smoke"), real=True)
    assert settings["realism"].masked_wavelengths  # the shipped line mask
    settings["realism"] = dataclasses.replace(settings["realism"], snr_range=None,
                                              gap_probability=1.0)
    noisy = make_test_set(smoke_grid, n=8, seed=3, slant_max=0.05,
                          **{**settings, "snr": 20.0}).noisy.numpy()
    kept = filled_pixels_left_out(noisy)
    assert 0.4 < 1.0 - kept.mean() < 0.6  # the mask (45 %) and the gap
    assert np.median(estimate_snr(noisy, kept)) == pytest.approx(20.0, rel=0.15)
    assert np.median(estimate_snr(noisy)) > 30.0  # what the noiseless pixels did

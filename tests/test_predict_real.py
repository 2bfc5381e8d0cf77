"""predict for real users (issue 14): the committed cpu weights without a grid, batches with bad
files, radial velocities anywhere in ±1000 km/s, quality flags, real HARPS e2ds, the Python API.

One test per row of the issue's attack list; they run the committed ``models/cpu`` weights, the
shipped RV template and the real files of ../shared/data (skipped without them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import paper_lib
from paper_lib import paths
from paper_lib.instrument import C_KMS, HARPS_CCD_GAP_A as GAP  # the solar s1d's zero-flux gap
from paper_lib.observed.fits import vacuum_to_air
from paper_lib.observed.read import read_spectrum
from paper_lib.observed.spectrum import Spectrum
from paper_lib.predict import predict_rows

from .conftest import shared_or_skip

SUN = "sun/Sun_HARPS_Ganymede_s1d.fits"
UVES = "sun/UVES_Sun-1_cleaned_norm.txt"
GL581 = "harps_e2ds/HARPS.2010-09-18T23:42:36.178_s1d_A.fits"
GL273 = "harps_e2ds/HARPS.2003-12-13T06:19:48.371_e2ds_A.fits"
SUN_RV = 0.26  # km/s, measured on the file (≈ rest frame already)


@pytest.fixture(scope="module")
def sun():
    return read_spectrum(shared_or_skip(SUN))


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "paper_lib", *args], capture_output=True,
                          text=True, cwd=paths.root, timeout=300, env={**os.environ, **(env or {})})


def in_memory(wave, flux) -> Spectrum:
    return Spectrum(wave=np.asarray(wave), flux=np.asarray(flux),
                    mask=np.isfinite(flux) & (flux != 0), kind="s1d")


def one(predictor, item, **options) -> dict:
    (row,) = predict_rows([item], predictor, **options)
    assert row["error"] is None, row["error"]
    return row


# --------------------------------------------------------------- shipped weights, no grid

def test_predict_cli_json_with_an_empty_cache_and_no_grid(tmp_path):
    """Done-when 1: committed cpu weights + shipped template, no grid; predict never touches
    the cache, so an empty one or one that cannot even be created (read-only) is fine."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for cache in (tmp_path / "empty_cache", blocker / "unwritable_cache"):
        done = run_cli("predict", str(shared_or_skip(SUN)), "--format", "json",
                       env={"PAPER_LIB_CACHE": str(cache)})
        assert done.returncode == 0, done.stderr
        (row,) = json.loads(done.stdout)
        assert abs(row["rv_kms"] - SUN_RV) < 0.5 and row["flags"] == []
        assert 5000 < row["teff"]["value"] < 6800 and row["teff"]["sigma"] > 0
    assert not (tmp_path / "empty_cache").exists()


def test_real_sun_twice_unflagged_m_dwarfs_out_of_distribution(predictor):
    rows = predict_rows([shared_or_skip(p) for p in (SUN, UVES, GL581, GL273)], predictor)
    sun, uves, gl581, gl273 = rows
    for row in (sun, uves):
        assert row["flags"] == [] and row["ood_score"] < 1.0
    for row in (gl581, gl273):
        assert "out_of_distribution" in row["flags"] and row["ood_score"] > 1.0


def test_harps_e2ds_with_wave_and_blaze_files_across_the_ccd_gap(predictor):
    row = one(predictor, shared_or_skip(GL273))
    assert row["kind"] == "e2ds"
    # Gl 273: RV 18.2 km/s minus the header's BERV 15.26 km/s in the observatory frame
    assert abs(row["rv_kms"] - 2.95) < 0.5
    assert 0.05 < row["gap_fraction"] < 0.1  # the CCD gap inside HARPS-N order 115


# --------------------------------------------------------------- radial velocity

def test_star_at_plus_300_kms_is_found_and_gives_the_same_labels(predictor, sun):
    rest = one(predictor, in_memory(sun.wave, sun.flux))
    moved = one(predictor, in_memory(sun.wave * (1 + 300.0 / C_KMS), sun.flux))
    assert abs(moved["rv_kms"] - 300.0 - SUN_RV) < 0.3
    assert abs(moved["teff"] - rest["teff"]) < 20 and abs(moved["mh"] - rest["mh"]) < 0.02
    given = one(predictor, in_memory(sun.wave * (1 + 300.0 / C_KMS), sun.flux), rv=300.0)
    assert given["rv_source"] == "given" and given["rv_kms"] == 300.0


@pytest.mark.parametrize("snr", [20.0, 300.0])
def test_ccd_gap_holding_noise_does_not_move_the_rv(predictor, sun, snr):
    rng = np.random.default_rng(3)
    level = np.median(sun.flux[sun.mask])
    flux = sun.flux + rng.normal(0, level / snr, sun.flux.size)
    gap = (sun.wave > GAP[0]) & (sun.wave < GAP[1])
    flux[gap] = rng.normal(0, level / snr, gap.sum())  # read noise instead of exact zeros
    row = one(predictor, in_memory(sun.wave, flux))
    assert abs(row["rv_kms"] - SUN_RV) < 0.5 and "rv_unreliable" not in row["flags"]


def test_pure_noise_has_an_unreliable_rv(predictor, sun):
    flux = np.abs(np.random.default_rng(1).normal(1.0, 0.1, sun.wave.size))
    assert "rv_unreliable" in one(predictor, in_memory(sun.wave, flux))["flags"]


def test_vacuum_wavelengths_hinted_and_converted(predictor, sun, tmp_path):
    vacuum = sun.wave * (sun.wave / vacuum_to_air(sun.wave))  # air → vacuum (to 0.01 km/s)
    hinted = one(predictor, in_memory(vacuum, sun.flux))
    assert "vacuum_suspected" in hinted["flags"] and abs(hinted["rv_kms"] - 83.8) < 1.0
    text = tmp_path / "sun_vacuum.txt"
    keep = (sun.wave > 5000) & (sun.wave < 5420)
    np.savetxt(text, np.column_stack([vacuum[keep], sun.flux[keep]]))
    converted = one(predictor, text, vacuum=True)
    assert abs(converted["rv_kms"] - SUN_RV) < 0.3 and "vacuum_suspected" not in converted["flags"]


def test_vacuum_header_is_followed(predictor, sun, tmp_path):
    from astropy.io import fits

    keep = (sun.wave > 5000) & (sun.wave < 5420)
    vacuum = sun.wave[keep] * (sun.wave[keep] / vacuum_to_air(sun.wave[keep]))
    header = fits.Header({"CRVAL1": vacuum[0], "CDELT1": float(np.mean(np.diff(vacuum))),
                          "CRPIX1": 1.0, "CTYPE1": "WAVE"})  # FITS standard: vacuum
    path = tmp_path / "sun_vacuum_s1d.fits"
    fits.PrimaryHDU(np.interp(np.linspace(vacuum[0], vacuum[-1], vacuum.size), vacuum,
                              sun.flux[keep]).astype(np.float32), header=header).writeto(path)
    row = one(predictor, path)
    assert abs(row["rv_kms"] - SUN_RV) < 0.3 and "vacuum_suspected" not in row["flags"]


def test_cli_rv_option_is_used(tmp_path):
    done = run_cli("predict", str(shared_or_skip(UVES)), "--rv", "0", "--format", "json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["rv_kms"] == 0.0 and row["rv_source"] == "given" and row["rv_significance"] is None


# --------------------------------------------------------------- flags

def test_snr_3_is_flagged_low_snr(predictor, sun):
    noisy = sun.flux + np.random.default_rng(2).normal(0, np.median(sun.flux[sun.mask]) / 3,
                                                       sun.flux.size)
    noisy[~sun.mask] = 0.0
    row = one(predictor, in_memory(sun.wave, noisy))
    assert "low_snr" in row["flags"] and row["snr"] < 10
    assert np.isfinite(row["ood_score"])  # the committed calibration's threshold at SNR 5 is 0


def test_much_of_the_range_missing_is_flagged(predictor, sun):
    flux = sun.flux.copy()
    flux[((sun.wave > 5075) & (sun.wave < 5118)) | ((sun.wave > 5160) & (sun.wave < 5200))] = 0.0
    row = one(predictor, in_memory(sun.wave, flux))
    assert "large_gap" in row["flags"] and row["gap_fraction"] > 0.2


def test_weights_without_a_sigma_calibration_are_flagged_and_report_the_raw_sigma(predictor):
    from dataclasses import replace

    sun = shared_or_skip(SUN)
    calibrated = one(predictor, sun)
    raw = one(replace(predictor, sigma_calibration=None), sun)
    assert "sigma_uncalibrated" in raw["flags"] and "sigma_uncalibrated" not in calibrated["flags"]
    assert raw["teff"] == calibrated["teff"]  # the answer is the same, only its σ_stat differs
    factor = predictor.sigma_calibration.factors([calibrated["snr"]])[0][0]
    assert calibrated["teff_sigma_stat"] == pytest.approx(factor * raw["teff_sigma_stat"])


# --------------------------------------------------------------- batches and inputs

def test_batch_with_a_bad_file_keeps_the_good_results(tmp_path):
    bad = tmp_path / "broken.fits"
    bad.write_bytes(b"SIMPLE  = garbage")
    out = tmp_path / "results.csv"
    done = run_cli("predict", str(shared_or_skip(UVES)), str(bad), str(shared_or_skip(SUN)),
                   "--output", str(out))
    assert done.returncode == 1
    assert "broken.fits" in done.stderr and "Traceback" not in done.stderr
    lines = out.read_text().strip().splitlines()
    assert lines[0].startswith("file,kind,model,method,fixed,teff,teff_sigma,") and len(lines) == 3
    assert lines[0].endswith("ood_score,flags")


def test_an_unexpected_error_fails_only_its_file(predictor, monkeypatch):
    import paper_lib.predict.inputs as module

    real = module.prepare

    def flaky(item, rv, wave_path, blaze_path, vacuum):
        if str(item).endswith(".txt"):
            raise TypeError("boom")
        return real(item, rv, wave_path, blaze_path, vacuum)

    monkeypatch.setattr(module, "prepare", flaky)
    bad, good = predict_rows([shared_or_skip(UVES), shared_or_skip(SUN)], predictor)
    assert bad["error"].endswith("UVES_Sun-1_cleaned_norm.txt: TypeError: boom")
    assert good["error"] is None and good["flags"] == []


def test_folders_and_globs_are_expanded(predictor, tmp_path):
    rows = predict_rows([shared_or_skip(GL273).parent], predictor)
    assert [os.path.basename(r["file"])[:16] for r in rows] == ["HARPS.2003-12-13", "HARPS.2010-09-18"]
    assert all(r["error"] is None for r in rows)  # the wave and blaze frames are left out
    rows = predict_rows([str(shared_or_skip(SUN).parent / "*.txt")], predictor)
    assert len(rows) == 1 and rows[0]["file"].endswith(".txt")
    (missing,) = predict_rows([str(tmp_path / "none_*.fits")], predictor)
    assert "no such file" in missing["error"]


def test_text_spectrum_with_header_line_and_commas(predictor, tmp_path):
    wave, flux = np.loadtxt(shared_or_skip(UVES), unpack=True)
    keep = (wave > 5000) & (wave < 5420)
    path = tmp_path / "sun.dat"
    lines = [f"{w:.3f},{f:.5f}" for w, f in zip(wave[keep], flux[keep])]
    path.write_text("wavelength,flux\n" + "\n".join(lines) + "\n")
    row = one(predictor, path)
    assert abs(row["rv_kms"] - SUN_RV) < 0.5


def test_dae_model_and_unwritable_cache_are_one_sentence(tmp_path):
    done = run_cli("predict", str(shared_or_skip(SUN)), "--model", "dae")
    assert done.returncode == 2 and "denoising auto-encoder" in done.stderr
    assert "Traceback" not in done.stderr
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    done = run_cli("synth", "--profile", "smoke", env={"PAPER_LIB_CACHE": str(blocker / "cache")})
    assert done.returncode == 2 and done.stderr.startswith("error:")
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------- Python API

def test_python_api_table(sun):
    table = paper_lib.predict([shared_or_skip(UVES), in_memory(sun.wave, sun.flux)],
                              model="resnet_full", rv={"<spectrum in memory>": 0.0})
    assert list(table["rv_source"]) == ["cross-correlation", "given"]
    assert {"teff", "teff_sigma", "corr_teff_logg", "ood_score", "flags", "error"} <= set(table.columns)
    assert table["error"].isna().all() and np.all(np.abs(table["corr_teff_logg"]) <= 1)


def test_paper_lib_predict_is_callable_after_a_bare_import():
    done = subprocess.run([sys.executable, "-c", "import paper_lib, sys; "
                           "t = paper_lib.predict(sys.argv[1], rv=0.0); print(len(t), t['flags'][0])",
                           str(shared_or_skip(UVES))], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "[]"]


# --------------------------------------------------------------- shipped template, calibration

def test_shipped_template_is_what_the_code_makes_with_todays_physics(smoke_grid):
    from paper_lib.observed.template import load_template, make_template, template_record
    from paper_lib.synthetic.turbospectrum import physics_id

    assert template_record()["physics_id"] == physics_id(), (
        "the synthesis physics changed: remake the template with `python -m paper_lib rv-template`")
    wave, flux = load_template()
    made_wave, made_flux = make_template(smoke_grid)
    np.testing.assert_allclose(wave, made_wave, rtol=1e-12)
    np.testing.assert_allclose(flux, made_flux, atol=1e-5)


def test_training_the_dae_calibrates_ood_on_the_profile_test_set(smoke_grid, tmp_path, monkeypatch):
    from paper_lib import experiments
    from paper_lib.observed.quality import OODCalibration
    from paper_lib.profiles import get_profile

    smoke = get_profile("smoke")
    monkeypatch.setattr(experiments, "OOD_SPECTRA", 100)
    experiments.train_variants(["dae"], smoke, smoke_grid, tmp_path, progress=False)
    record = json.loads((tmp_path / "ood_calibration.json").read_text())
    assert "test-set labels of profile 'smoke'" in record["source"]
    assert [row["snr"] for row in record["rows"]] == list(smoke.snr_curve)
    assert all(row["n"] == 100 for row in record["rows"])
    assert all(fraction <= 0.01 for fraction in record["flagged_fraction"].values())
    assert OODCalibration.load(tmp_path, tmp_path / "dae.pt") is not None
    with open(tmp_path / "dae.pt", "ab") as handle:  # a retrained DAE: other bytes
        handle.write(b"\0")
    assert OODCalibration.load(tmp_path, tmp_path / "dae.pt") is None


def test_zero_low_snr_thresholds_take_the_smallest_positive_one():
    from paper_lib.observed.quality import OODCalibration

    rows = [{"estimated_snr": snr, "threshold": t} for snr, t in ((5, 0.0), (10, 0.0), (20, 0.03), (100, 0.05))]
    calibration = OODCalibration({"rows": rows})
    scores = calibration.score(np.array([0.0, 0.015, 0.06, 0.06]), np.array([3.0, 5.0, 10.0, 100.0]))
    np.testing.assert_allclose(scores, [0.0, 0.5, 2.0, 1.2])
    with pytest.raises(ValueError, match="ood-calibrate"):
        OODCalibration({"rows": [{"estimated_snr": 5, "threshold": 0.0}]})


def test_smoke_grid_of_other_physics_names_the_smoke_rebuild(private_cache):
    from paper_lib.profiles import get_profile
    from paper_lib.synthetic.build import GridPhysicsMismatch, default_grid_file, manifest_path
    from paper_lib.synthetic.grid import load_grid

    grid_file = default_grid_file("smoke")
    grid_file.parent.mkdir(parents=True)
    grid_file.write_bytes(b"")
    manifest_path(grid_file).write_text(json.dumps({"physics_id": "0000000000"}))
    with pytest.raises(GridPhysicsMismatch) as error:
        load_grid(get_profile("smoke"))
    assert "--profile smoke" in str(error.value) and "PAPER_LIB_GRID" not in str(error.value)

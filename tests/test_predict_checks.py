"""predict checks what it is given and never drops a σ silently (issue 29, parts 2–6): the
systematic model tied to its weights, the profile of a --models-dir, a given RV against the
spectrum's CCF, spectra without lines, v sin i beyond the grid, --refine's grid and fit,
--output, and clear errors for the findings that were tracebacks or misleading.

They run the committed ``models/cpu`` weights on the HARPS Sun of ../shared/data (skipped
without it)."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.io import fits

from paper_lib import cli, paths
from paper_lib.labels import LABEL_NAMES
from paper_lib.predict import DEFAULT_MODEL, Predictor, predict_rows
from paper_lib.predict.known import known_labels

from .conftest import shared_or_skip

SUN = "sun/Sun_HARPS_Ganymede_s1d.fits"
CPU = paths.models / "cpu"


@pytest.fixture(scope="module")
def sun():
    path = shared_or_skip(SUN)
    return path, fits.getheader(path), fits.getdata(path).astype(np.float64)


def like_sun(folder, name, sun, flux):
    path = folder / name
    fits.PrimaryHDU(np.asarray(flux, dtype=np.float32), header=sun[1]).writeto(path)
    return path


def models_copy(folder, *extra):
    """The default network, its DAE and OOD calibration (and ``extra`` files) in ``folder``."""
    for name in (f"{DEFAULT_MODEL}.pt", f"{DEFAULT_MODEL}.history.json", "dae.pt",
                 "ood_calibration.json", *extra):
        shutil.copy(CPU / name, folder / name)
    return folder


# ------------------------------------------------------------------ no silent σ_sys

def test_the_committed_systematics_are_tied_to_the_committed_weights(predictor, sun):
    assert predictor.systematics is not None and predictor.systematics_problem is None
    row = predict_rows([sun[0]], predictor)[0]
    assert "sigma_sys_missing" not in row["flags"] and row["teff_sigma_sys"] > 0


def _broken_systematics(folder, how):
    record = json.loads((CPU / "systematics.json").read_text())
    entry = record["models"][DEFAULT_MODEL]
    if how == "other weights":
        entry["weights_sha256"] = "0" * 64
    elif how == "no entry":
        del record["models"][DEFAULT_MODEL]
    elif how == "nan in one label":
        entry["shifts"]["marcs"][0][1] = None
    if how != "absent":
        (folder / "systematics.json").write_text(json.dumps(record))


@pytest.mark.parametrize("how", ["absent", "no entry", "other weights", "nan in one label"])
def test_an_unusable_systematic_model_is_flagged_never_a_silent_zero(tmp_path, sun, how):
    folder = models_copy(tmp_path)
    _broken_systematics(folder, how)
    with pytest.warns(UserWarning, match="sigma_sys_missing"):
        loaded = Predictor.load(DEFAULT_MODEL, models_dir=folder)
    row = predict_rows([sun[0]], loaded)[0]
    assert "sigma_sys_missing" in row["flags"]
    for name in LABEL_NAMES:
        assert np.isnan(row[f"{name}_sigma_sys"])
        assert row[f"{name}_sigma"] == pytest.approx(row[f"{name}_sigma_stat"])


def test_stamping_is_rerunnable_and_keeps_the_shifts(tmp_path):
    from paper_lib.systematic_runs import stamp_systematics_weights

    before = json.loads((CPU / "systematics.json").read_text())
    path, stamped = stamp_systematics_weights(CPU)  # all stamped already: nothing changes
    assert stamped == [] and json.loads(path.read_text()) == before
    record = dict(before, meta={"provenance": {"commit": None}})
    for entry in record["models"].values():
        entry.pop("weights_sha256")
    (tmp_path / "systematics.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="names no clean commit"):
        stamp_systematics_weights(tmp_path)


def test_the_profile_of_a_models_dir_is_read_from_its_weights(tmp_path):
    folder = models_copy(tmp_path, "systematics.json", "sigma_calibration.json")
    loaded = Predictor.load(DEFAULT_MODEL, models_dir=folder)
    assert loaded.profile == "cpu" and loaded.systematics is not None
    with pytest.raises(ValueError, match="trained with profile 'cpu'.*not 'smoke'"):
        Predictor.load(DEFAULT_MODEL, "smoke", models_dir=folder)


def test_a_dae_where_a_regressor_is_expected_is_a_clear_error(tmp_path):
    shutil.copy(CPU / "dae.pt", tmp_path / f"{DEFAULT_MODEL}.pt")
    with pytest.raises(ValueError, match="not a regressor"):
        Predictor.load(DEFAULT_MODEL, "cpu", models_dir=tmp_path)


def test_a_truncated_ood_calibration_names_the_file_and_the_fix(tmp_path):
    folder = models_copy(tmp_path)
    text = (folder / "ood_calibration.json").read_text()
    (folder / "ood_calibration.json").write_text(text[:100])
    with pytest.raises(ValueError, match="ood_calibration.json: not a readable.*ood-calibrate"):
        Predictor.load(DEFAULT_MODEL, "cpu", models_dir=folder)


# ------------------------------------------------------------------ what the user gives

def test_a_given_rv_is_checked_against_the_spectrums_own_ccf(predictor, sun):
    right, wrong, far = (predict_rows([sun[0]], predictor, rv=rv)[0] for rv in (0.27, 25.0, 5000.0))
    assert "rv_mismatch" not in right["flags"] and abs(right["rv_ccf_kms"] - 0.27) < 0.5
    assert "rv_mismatch" in wrong["flags"] and "rv_mismatch" in far["flags"]
    assert wrong["rv_significance"] is None and abs(wrong["rv_ccf_kms"] - 0.27) < 0.5


def test_spectra_without_stellar_lines_are_flagged(predictor, sun, tmp_path):
    rng = np.random.default_rng(3)
    noise = like_sun(tmp_path, "noise.fits", sun, 1.0 + rng.normal(0.0, 0.01, sun[2].size))
    flat = like_sun(tmp_path, "flat.fits", sun, np.ones(sun[2].size))
    rows = predict_rows([noise, flat, sun[0]], predictor, rv=0.0)
    assert ["no_stellar_lines" in r["flags"] for r in rows] == [True, True, False]
    measured = predict_rows([noise], predictor)[0]
    assert {"no_stellar_lines", "rv_unreliable"} <= set(measured["flags"])


def test_a_star_rotating_faster_than_the_grid_is_flagged(predictor, sun, tmp_path):
    from paper_lib.instrument import C_KMS
    from paper_lib.synthetic.broadening import rotation_kernel

    step_kms = C_KMS * sun[1]["CDELT1"] / 5200.0
    flux = sun[2]
    rows = []
    for vsini in (20.0, 150.0):
        kernel = np.asarray(rotation_kernel(vsini, step_kms)).ravel()
        broad = np.convolve(flux, kernel / kernel.sum(), mode="same")
        rows.append(predict_rows([like_sun(tmp_path, f"v{vsini:g}.fits", sun,
                                           np.where(flux > 0, broad, 0.0))], predictor)[0])
    assert "vsini_beyond_grid" not in rows[0]["flags"] and "vsini_beyond_grid" in rows[1]["flags"]


def test_refine_refuses_a_grid_of_other_physics_frame_or_coverage(tmp_path):
    from paper_lib.predict.refine import check_grid_file, check_grid_wavelengths
    from paper_lib.synthetic.runner import grid_wavelengths
    from paper_lib.synthetic.turbospectrum import physics_id

    def grid_file(name, physics, unit):
        primary = fits.PrimaryHDU(np.zeros((1, 3), np.float32))
        if physics:
            primary.header["PHYSICS"] = physics
        wave = fits.ImageHDU(np.arange(3.0), name="WAVE")
        wave.header["BUNIT"] = unit
        fits.HDUList([primary, wave]).writeto(tmp_path / name)
        return tmp_path / name

    with pytest.raises(ValueError, match="physics id None"):
        check_grid_file(grid_file("none.fits", None, "Angstrom (air)"))
    with pytest.raises(ValueError, match="physics id 'other'"):
        check_grid_file(grid_file("other.fits", "other", "Angstrom (air)"))
    with pytest.raises(ValueError, match="vacuum wavelengths"):
        check_grid_file(grid_file("vac.fits", physics_id(), "Angstrom (vacuum)"))
    check_grid_file(grid_file("ok.fits", physics_id(), "Angstrom (air)"))
    shifted = grid_wavelengths() * (1 + 90.0 / 299792.458)
    with pytest.raises(ValueError, match="coverage, sampling or a shift") as error:
        check_grid_wavelengths(SimpleNamespace(wavelength=shifted, source="g.fits"))
    assert "pad_with_continuum" not in str(error.value)
    check_grid_wavelengths(SimpleNamespace(wavelength=grid_wavelengths()))


def test_a_fit_at_a_bound_or_with_a_huge_sigma_fails():
    from paper_lib.predict.refine import Refined

    lower, upper = np.array([5500.0, 4.0, -0.5, 0.0]), np.array([6000.0, 4.5, 0.0, 30.0])
    cov = np.diag([30.0, 0.05, 0.05, 1.0]) ** 2

    def fit(labels, cov=cov, held=()):
        return Refined(np.array(labels), cov, 0.01, 10, True, lower=lower, upper=upper,
                       held=held).problem()

    assert fit([5750.0, 4.3, -0.2, 0.0]) is None  # v sin i 0: a slow rotator
    assert "ended at a bound" in fit([6000.0, 4.3, -0.2, 2.0])
    assert fit([6000.0, 4.3, -0.2, 2.0], held=(0,)) is None  # a held label may sit there
    assert "not finite and small" in fit([5750.0, 4.3, -0.2, 2.0],
                                         np.diag([228317.0, 0.05, 0.05, 1.0]) ** 2)
    assert "not finite and small" in fit([5750.0, 4.3, -0.2, 2.0], np.full((4, 4), np.nan))


# ------------------------------------------------------------------ output and errors

@pytest.mark.parametrize("output, message", [("/sys/res.csv", "cannot write in /sys"),
                                             ("nowhere/res.csv", "does not exist")])
def test_an_unwritable_output_is_refused_before_the_run(capsys, output, message):
    assert cli.main(["predict", "missing.fits", "--output", output]) == 2
    err = capsys.readouterr().err
    assert f"--output {output}" in err and message in err


def test_an_output_folder_is_refused_before_the_run(capsys, tmp_path):
    assert cli.main(["predict", "missing.fits", "--format", "csv", "--output", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_results_go_to_stdout_when_writing_fails_at_the_end(capsys, monkeypatch, sun, tmp_path):
    import paper_lib.fileio

    def fail(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(paper_lib.fileio, "atomic_write_bytes", fail)
    assert cli.main(["predict", str(sun[0]), "--output", str(tmp_path / "r.csv")]) == 2
    out = capsys.readouterr()
    assert "No space left on device" in out.err and "results follow on stdout" in out.err
    assert out.out.startswith("file,") and "Sun_HARPS_Ganymede_s1d.fits" in out.out


def test_known_labels_as_papers_write_them():
    assert [str(k) for k in known_labels(["Teff=5772±50", "mh=−0.25±0.05", "log g = 4.4"])] == [
        "teff=5772±50", "mh=-0.25±0.05", "logg=4.4±0.05"]


@pytest.mark.parametrize("fix, message", [
    ("logg=4.44±1e300", "says nothing"), ({"logg": (4.44,)}, "give a value or"),
    (4, "not int"), ("Teff=hot", "expected LABEL=VALUE"), ("age=4±1", "unknown label")])
def test_bad_known_labels_are_clear_errors(fix, message):
    with pytest.raises(ValueError, match=message):
        known_labels(fix)


def test_inputs_that_are_not_files_and_a_nan_rv_are_clear_errors(predictor, capsys):
    with pytest.raises(ValueError, match="inputs: give file paths"):
        predict_rows(np.ones(1000), predictor)
    with pytest.raises(ValueError, match="rv=nan"):
        predict_rows(["a.fits"], predictor, rv=float("nan"))
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["predict", "a.fits", "--rv", "nan"])
    assert "give a finite velocity" in capsys.readouterr().err

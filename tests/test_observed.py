"""Tests of paper_lib.observed: real-file readers, the rest-frame velocity, the 8 × 4096 model
input and the DACE download helper (never touching the network). Bad files:
test_observed_errors; gaps and bad pixels: test_observed_pixels."""

from __future__ import annotations

import re
import sys
import tarfile
import types

import numpy as np
import pytest
from astropy.io import fits

from paper_lib.echelle.continuum import normalise_orders
from paper_lib.echelle.layout import order_wavelengths
from paper_lib.instrument import C_KMS, HARPS_CCD_GAP_A as HARPS_GAP  # zero flux in the s1d
from paper_lib.observed.dace import fetch_dace_sun
from paper_lib.observed.fits import e2ds_wavelengths, vacuum_to_air
from paper_lib.observed.model_input import to_model_input
from paper_lib.observed.read import read_e2ds, read_spectrum
from paper_lib.observed.spectrum import Spectrum, SpectrumFileError
from paper_lib.observed.velocity import rest_frame_velocity

from .conftest import shared_or_skip
from .observed_files import (BLAZE, SUN_S1D, SUN_UVES, WAVE_MATRIX, broadened_sun,
                             calibration_header, line_spectrum, solar_node, synthetic_e2ds,
                             write_e2ds, write_s1d)


# --------------------------------------------------------------------------- wavelengths


@pytest.mark.parametrize("prefix", ["TNG", "ESO"])
def test_header_polynomial_recovers_wavelength_matrix(prefix):
    matrix = fits.getdata(shared_or_skip(WAVE_MATRIX)).astype(np.float64)
    wave = e2ds_wavelengths(calibration_header(prefix), 69)
    assert wave.shape == (69, 4096)
    assert np.abs(wave - matrix).max() <= 1e-3  # all 69 rows (float32 storage: 2.4e-4 Å)


def test_reader_uses_header_polynomial_of_the_calibration_file():
    spectrum = read_e2ds(shared_or_skip(WAVE_MATRIX), blaze_path=shared_or_skip(BLAZE))
    matrix = fits.getdata(shared_or_skip(WAVE_MATRIX)).astype(np.float64)
    assert spectrum.meta["wave_source"].startswith("header polynomial")
    assert np.abs(spectrum.wave - matrix).max() <= 1e-3
    assert [rows[0] for rows in spectrum.meta["rows"]] == list(range(36, 44))


def test_separate_wave_file_replaces_missing_polynomial(tmp_path):
    matrix_path = shared_or_skip(WAVE_MATRIX)
    blaze = fits.getdata(shared_or_skip(BLAZE))
    path = write_e2ds(tmp_path, np.full((69, 4096), 100.0), fits.Header(), blaze=blaze)
    spectrum = read_spectrum(path, wave_path=matrix_path)
    np.testing.assert_array_equal(spectrum.wave, fits.getdata(matrix_path).astype(np.float64))


def test_s1d_axis_respects_crpix(tmp_path):
    path = write_s1d(tmp_path / "s1d.fits", 5000.0, 0.01, np.ones(50000), crpix=11.0)
    spectrum = read_spectrum(path)
    assert spectrum.kind == "s1d"
    assert spectrum.wave[10] == pytest.approx(5000.0)
    assert spectrum.wave[11] - spectrum.wave[10] == pytest.approx(0.01)


def test_vacuum_to_air_refractivity():
    air = vacuum_to_air(np.array([5000.0, 5400.0]))
    assert np.all((2.77e-4 < 5000.0 / air[0] - 1) & (5000.0 / air[0] - 1 < 2.80e-4))
    assert air[1] < 5400.0


# --------------------------------------------------------------------------- e2ds → model input


def test_e2ds_round_trip_matches_original_image(tmp_path):
    path, original = synthetic_e2ds(tmp_path)
    spectrum = read_spectrum(path)  # blaze found through HIERARCH TNG DRS BLAZE FILE
    assert spectrum.kind == "e2ds" and spectrum.meta["blaze_corrected"]
    model = to_model_input(spectrum, rv_kms=0.0)
    assert model.image.shape == (8, 4096) and model.image.dtype == np.float32
    assert model.mask.all() and model.gap_fraction == 0.0
    assert np.abs(model.image - original).max() <= 1e-4
    assert np.abs(model.image - normalise_orders(original)).max() <= 1e-4


def test_e2ds_round_trip_with_measured_velocity(tmp_path):
    path, original = synthetic_e2ds(tmp_path)
    template_wave = np.arange(5000.0, 5420.0, 0.01)
    template = (template_wave, line_spectrum(template_wave)[0])
    model = to_model_input(read_spectrum(path), template=template)
    assert abs(model.rv_kms) < 0.02
    assert model.gap_fraction < 1e-3  # at most the end pixels of the orders
    assert np.abs(model.image - original)[model.mask].max() <= 2e-3


def test_harps_eso_frame_with_72_rows(tmp_path):
    """ESO keywords and a frame whose matching orders are rows 39–46, not 36–43."""
    header = calibration_header("ESO", row_offset=3)
    for row in range(3):  # three extra blue rows, 45 Å apart
        for j in range(4):
            value = header[f"HIERARCH ESO DRS CAL TH COEFF LL{4 * 3 + j}"]
            header[f"HIERARCH ESO DRS CAL TH COEFF LL{4 * row + j}"] = (
                value - 45.0 * (3 - row) if j == 0 else value)
    wave = e2ds_wavelengths(header, 72)
    blaze = np.vstack([np.ones((3, 4096)), fits.getdata(shared_or_skip(BLAZE))])
    flux = 800.0 * line_spectrum(wave) * blaze
    path = write_e2ds(tmp_path, flux, header, name="HARPS.test_e2ds_A.fits")
    blaze_path = tmp_path / "HARPS.test_blaze_A.fits"
    fits.PrimaryHDU(blaze.astype(np.float32)).writeto(blaze_path)
    model = to_model_input(read_e2ds(path, blaze_path=blaze_path), rv_kms=0.0)
    assert [rows[0] for rows in model.meta["rows"]] == list(range(39, 47))
    # a HARPS frame (ESO keys, 72 rows): its CCD gap is masked by wavelength, whatever it holds
    (lo, hi), = model.meta["gaps_masked_A"]
    wave = order_wavelengths()
    assert not model.mask[(wave > lo) & (wave < hi)].any()
    assert model.mask[(wave < lo - 0.1) | (wave > hi + 0.1)].all()
    assert np.abs(model.image - line_spectrum(wave))[model.mask].max() <= 1e-4


def test_newer_drs_s2d_and_table_s1d(tmp_path):
    """The DACE formats: S2D (SCIDATA + WAVEDATA_AIR_BARY + QUALDATA) and a table S1D."""
    wave = fits.getdata(shared_or_skip(WAVE_MATRIX)).astype(np.float64)
    quality = np.zeros((69, 4096), dtype=np.int16)
    quality[40, 1000:1100] = 1
    hdus = fits.HDUList([fits.PrimaryHDU(),
                         fits.ImageHDU(line_spectrum(wave).astype(np.float32), name="SCIDATA"),
                         fits.ImageHDU(quality, name="QUALDATA"),
                         fits.ImageHDU(wave, name="WAVEDATA_AIR_BARY")])
    hdus.writeto(tmp_path / "r.HARPN.2016-01-03T12-00-00.000_S2D_A.fits")
    s2d = read_spectrum(tmp_path / "r.HARPN.2016-01-03T12-00-00.000_S2D_A.fits")
    assert s2d.kind == "s2d" and not s2d.mask[40, 1000:1100].any()
    model = to_model_input(s2d, rv_kms=0.0)
    assert 0 < model.gap_fraction < 0.01 and not model.mask[4, 1000:1100].any()
    assert np.abs(model.image - line_spectrum(order_wavelengths()))[model.mask].max() < 1e-3

    air = np.arange(5000.0, 5420.0, 0.01)
    table = fits.BinTableHDU.from_columns([
        fits.Column(name="wavelength", format="D", array=air * 1.000278),
        fits.Column(name="wavelength_air", format="D", array=air),
        fits.Column(name="flux", format="E", array=line_spectrum(air)[0]),
        fits.Column(name="quality", format="I", array=(np.abs(air - 5200) < 1).astype(np.int16))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "S1D_A.fits")
    s1d = read_spectrum(tmp_path / "S1D_A.fits")
    assert s1d.kind == "s1d"
    np.testing.assert_array_equal(s1d.wave, air)
    assert not s1d.mask[np.abs(air - 5200) < 1].any() and s1d.mask[np.abs(air - 5200) > 1].all()


# --------------------------------------------------------------------------- radial velocity


def test_rest_frame_velocity_recovers_injected_shift(reference_grid):
    """Broadened solar node on the 8 orders, shifted by +15 km/s, blazed, Poisson S/N ≈ 200."""
    log_wave, flux = broadened_sun(reference_grid)
    order_wave = order_wavelengths()
    inside = (order_wave > log_wave[0]) & (order_wave < log_wave[-1])  # grid: 5030–5370 Å
    rest_image = np.ones_like(order_wave)
    rest_image[inside] = np.interp(order_wave[inside], log_wave, flux)
    blaze = fits.getdata(shared_or_skip(BLAZE))[36:44].astype(np.float64)
    counts = np.random.default_rng(7).poisson(rest_image * blaze * 200.0**2).astype(np.float64)
    t_wave, t_flux = solar_node(reference_grid)
    for v_true in (15.0, -15.0):
        observed_wave = order_wave * (1.0 + v_true / C_KMS)
        v = rest_frame_velocity(observed_wave, counts / blaze, t_wave, t_flux, mask=inside)
        assert abs(v - v_true) <= 0.2


def test_model_input_removes_the_shift(reference_grid):
    """A 1D spectrum at +15 km/s gives (nearly) the rest-frame image: checks the sign."""
    log_wave, flux = broadened_sun(reference_grid)
    rest = Spectrum(log_wave, flux, np.ones(flux.shape, bool), kind="text")
    moved = Spectrum(log_wave * (1 + 15.0 / C_KMS), flux,
                            np.ones(flux.shape, bool), kind="text")
    expected = to_model_input(rest, rv_kms=0.0)
    model = to_model_input(moved, template=reference_grid)
    assert model.rv_kms == pytest.approx(15.0, abs=0.2)
    assert "5750" in model.meta["template"]
    both = expected.mask & model.mask
    assert both.mean() > 0.9  # the grid covers 5030–5370 Å, the orders 5026–5395 Å
    assert np.abs(model.image - expected.image)[both].max() < 5e-3


def test_unmeasurable_velocity_names_the_file(tmp_path):
    path = write_s1d(tmp_path / "featureless_s1d.fits", 5000.0, 0.01, np.ones(42000))
    template_wave = np.arange(5000.0, 5420.0, 0.01)
    with pytest.raises(SpectrumFileError, match="featureless_s1d.fits.*radial velocity"):
        to_model_input(read_spectrum(path),
                              template=(template_wave, line_spectrum(template_wave)[0]))


def test_model_input_without_lines_has_no_velocity():
    """Without a template the shipped one is used; a spectrum without lines has no CCF peak."""
    spectrum = Spectrum(np.linspace(5000, 5420, 1000), np.ones(1000), np.ones(1000, bool), "text")
    with pytest.raises(ValueError, match="radial velocity could not be measured.*rv_kms"):
        to_model_input(spectrum)


# --------------------------------------------------------------------------- the real Sun


def test_real_harps_sun_s1d(reference_grid):
    spectrum = read_spectrum(shared_or_skip(SUN_S1D))
    assert spectrum.kind == "s1d" and spectrum.wave.shape == (313025,)
    in_gap = (spectrum.wave > HARPS_GAP[0] + 0.01) & (spectrum.wave < HARPS_GAP[1] - 0.01)
    assert not spectrum.mask[in_gap].any()
    near = ((spectrum.wave > 5290) & (spectrum.wave < HARPS_GAP[0] - 0.01)) | (
        (spectrum.wave > HARPS_GAP[1] + 0.01) & (spectrum.wave < 5350))
    assert spectrum.mask[near].all()

    model = to_model_input(spectrum, template=reference_grid)
    assert model.image.shape == (8, 4096) and np.isfinite(model.image).all()
    assert abs(model.rv_kms) < 1.5  # README: ≈ rest frame already (Mg b within ~0.7 km/s)
    assert 0.06 < model.gap_fraction < 0.09  # the gap: ~2270 px of order 115, ~200 of 114
    gap_pixels = (model.order_wave > HARPS_GAP[0] + 0.05) & (model.order_wave < HARPS_GAP[1] - 0.05)
    assert not model.mask[gap_pixels].any() and np.all(model.image[gap_pixels] == 1.0)
    assert model.mask[:6].all()
    continuum = np.percentile(model.image[model.mask], 95)
    assert 0.99 < continuum < 1.03


def test_real_uves_sun_text(reference_grid):
    spectrum = read_spectrum(shared_or_skip(SUN_UVES))
    assert spectrum.kind == "text" and np.all(np.diff(spectrum.wave) > 0)  # 47 repeats merged
    model = to_model_input(spectrum, template=reference_grid)
    assert np.isfinite(model.image).all()
    assert abs(model.rv_kms) < 1.5
    assert model.gap_fraction < 1e-3


# --------------------------------------------------------------------------- DACE (no network)


def test_fetch_dace_sun_without_package(private_cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "dace_query", None)
    monkeypatch.setitem(sys.modules, "dace_query.sun", None)
    with pytest.raises(ImportError, match=re.escape('pip install "paper_lib[dace]"')):
        fetch_dace_sun("2016-01-03")


def _fake_dace(monkeypatch, sun):
    package = types.ModuleType("dace_query")
    module = types.ModuleType("dace_query.sun")
    module.Sun = sun
    monkeypatch.setitem(sys.modules, "dace_query", package)
    monkeypatch.setitem(sys.modules, "dace_query.sun", module)


def test_fetch_dace_sun_without_network(private_cache, monkeypatch):
    class RequestsConnectionError(OSError):  # requests.ConnectionError is an OSError too
        pass

    class OfflineSun:
        @staticmethod
        def query_database(**_):
            raise RequestsConnectionError("Max retries exceeded with url: /sun-webapp/search")

    _fake_dace(monkeypatch, OfflineSun)
    with pytest.raises(ConnectionError, match="Could not reach the DACE archive"):
        fetch_dace_sun("2016-01-03")


def test_fetch_dace_sun_unpacks_and_caches(private_cache, monkeypatch, tmp_path):
    source = write_s1d(tmp_path / "r.HARPN.2016-01-03T12-00-00.000_S1D_A.fits", 4000.0, 0.01,
                       np.ones(200000))
    calls = []

    class FakeSun:
        @staticmethod
        def query_database(limit, filters):
            calls.append(filters)
            return {"file_rootpath": ["harpn/DRS-2.3.5/reduced/2016-01-03/r.HARPN.2016-01-03"]}

        @staticmethod
        def download(file_type, filters, output_directory):
            calls.append(filters)
            with tarfile.open(f"{output_directory}/spectroscopy_download.tar.gz", "w:gz") as tar:
                tar.add(source, arcname=f"2016-01-03/{source.name}")

    _fake_dace(monkeypatch, FakeSun)
    files = fetch_dace_sun("2016-01-03")
    assert [f.name for f in files] == [source.name]
    assert files[0].is_relative_to(private_cache / "dace")
    assert not list(files[0].parents[1].glob("*.tar.gz"))
    assert read_spectrum(files[0]).kind == "s1d"
    monkeypatch.setitem(sys.modules, "dace_query.sun", None)  # cached: no import, no network
    assert fetch_dace_sun("2016-01-03") == files
    assert len(calls) == 2

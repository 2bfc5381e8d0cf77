"""The formats real benchmark stars come in (issue 31, issue 29 finding 6): iSpec and Gaia
benchmark library text (gzipped, nm), iSpec-style FITS tables and images, échelle orders of any
instrument with their wavelength image (same file or another), a spectrum in FITS extension 1,
decreasing wavelengths, units from the file or from the values (with a note), and the error
that names what a file holds. The real solar atlas goes through predict (skipped without it)."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pytest
from astropy.io import fits

from paper_lib.echelle.layout import order_wavelengths
from paper_lib.observed.model_input import to_model_input
from paper_lib.observed.read import read_spectrum
from paper_lib.observed.spectrum import SpectrumFileError, SpectrumNote
from paper_lib.predict.inputs import expand_inputs

from .conftest import shared_or_skip
from .observed_files import line_spectrum

AIR = np.arange(5000.0, 5420.0, 0.01)  # [Å]
FLUX = line_spectrum(AIR)[0]
ERROR = np.full(AIR.size, 0.01)
ATLAS = "benchmarks/ATLAS.Sun_47000.txt.gz"


def quietly(read, *args, **kwargs):
    """``read(*args)`` and the SpectrumNote messages it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spectrum = read(*args, **kwargs)
    return spectrum, [str(w.message) for w in caught if issubclass(w.category, SpectrumNote)]


def assert_reads_back(spectrum, wave=AIR, flux=FLUX):
    np.testing.assert_allclose(spectrum.wave, wave, rtol=0, atol=1e-6)
    np.testing.assert_allclose(spectrum.flux, flux, rtol=1e-6)
    assert spectrum.mask.all()


def write_text(path, header: str | None, columns, delimiter="\t", compress=False):
    lines = ([header] if header is not None else []) + [
        delimiter.join(repr(float(v)) for v in row) for row in np.column_stack(columns)]
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


# --------------------------------------------------------------------------- text


def test_ispec_text_gzipped_in_nm(tmp_path):
    path = write_text(tmp_path / "star.txt.gz", "waveobs\tflux\terr", [AIR / 10, FLUX, ERROR],
                      compress=True)
    spectrum, notes = quietly(read_spectrum, path)
    assert spectrum.kind == "text" and notes == []  # waveobs is nm by convention: no note
    assert spectrum.meta["wave_unit"] == "nm"
    assert_reads_back(spectrum)


@pytest.mark.parametrize("header, scale, delimiter", [
    ("lambda(nm),flux", 0.1, ","), ("# wave_A flux", 1.0, " "),
    ("wavelength [Angstrom]\tflux\terror", 1.0, "\t"), ("WAVE_AIR;FLUX", 1.0, ";")])
def test_text_units_and_columns_from_the_header(tmp_path, header, scale, delimiter):
    columns = [AIR * scale, FLUX] + ([ERROR] if header.count("\t") == 2 else [])
    path = write_text(tmp_path / "spectrum.csv", header, columns, delimiter)
    spectrum, notes = quietly(read_spectrum, path)
    assert notes == []
    assert_reads_back(spectrum)


def test_columns_chosen_by_name_not_position(tmp_path):
    path = write_text(tmp_path / "reordered.dat", "err flux waveobs", [ERROR, FLUX, AIR / 10], " ")
    assert_reads_back(read_spectrum(path))


def test_text_error_column_marks_pixels_without_data(tmp_path):
    error = ERROR.copy()
    error[100:110] = np.nan
    path = write_text(tmp_path / "star.txt", "waveobs flux err", [AIR / 10, FLUX, error], " ")
    assert read_spectrum(path).mask.sum() == AIR.size - 10


def test_unit_from_the_values_gives_a_note(tmp_path):
    path = write_text(tmp_path / "no_header.txt", None, [AIR / 10, FLUX], " ")
    with pytest.warns(SpectrumNote, match="no_header.txt: no unit stated; .* read as nm"):
        spectrum = read_spectrum(path)
    assert spectrum.meta["wave_unit_source"] == "values" and len(spectrum.meta["notes"]) == 1
    assert_reads_back(spectrum)
    angstrom = write_text(tmp_path / "angstrom.txt", None, [AIR, FLUX], " ")
    assert quietly(read_spectrum, angstrom)[1] == []  # Å: the documented default, no note


def test_waveobs_in_angstrom_is_read_as_angstrom_with_a_note(tmp_path):
    path = write_text(tmp_path / "star.txt", "waveobs flux", [AIR, FLUX], " ")
    with pytest.warns(SpectrumNote, match="usually holds nm"):
        assert_reads_back(read_spectrum(path))


def test_decreasing_text_is_put_in_order(tmp_path):
    path = write_text(tmp_path / "red_to_blue.txt", "waveobs flux", [AIR[::-1] / 10, FLUX[::-1]], " ")
    assert_reads_back(read_spectrum(path))


def test_compressed_text_is_found_in_folders(tmp_path):
    write_text(tmp_path / "a.txt.gz", "waveobs flux", [AIR / 10, FLUX], compress=True)
    write_text(tmp_path / "b.csv.gz", "waveobs,flux", [AIR / 10, FLUX], ",", compress=True)
    assert [p.name for p in expand_inputs(tmp_path)] == ["a.txt.gz", "b.csv.gz"]


def test_a_csv_catalogue_names_its_columns(tmp_path):
    path = tmp_path / "references.csv"
    path.write_text("file,star,wavelength_range,flux_unit\nsun.txt,Sun,4800,1\n")
    with pytest.raises(SpectrumFileError, match="no row of two or more numbers .the first line "
                                                 "reads 'file,star,wavelength_range,flux_unit'"):
        read_spectrum(path)


# --------------------------------------------------------------------------- FITS tables, images


def table_hdu(columns: dict, units=None, name=None):
    units = units or {}
    return fits.BinTableHDU.from_columns(
        [fits.Column(name=k, format="D", unit=units.get(k), array=v) for k, v in columns.items()],
        name=name)


@pytest.mark.parametrize("columns, units", [
    ({"waveobs": AIR / 10, "flux": FLUX, "err": ERROR}, {"waveobs": "nm"}),
    ({"waveobs": AIR / 10, "flux": FLUX, "err": ERROR}, {}),
    ({"AWAV": AIR / 10, "FLUX": FLUX, "SIGMA": ERROR}, {"AWAV": "NM"}),
    ({"wave": AIR / 10, "flux": FLUX}, {}),  # no unit, no convention: the values (a note)
], ids=["TUNIT nm", "waveobs convention", "iSpec AWAV", "from values"])
def test_ispec_fits_table_in_a_later_extension(tmp_path, columns, units):
    other = table_hdu({"ORDER": np.arange(3.0), "SNR": np.ones(3)}, name="ORDERS")
    path = tmp_path / "ispec.fits"
    fits.HDUList([fits.PrimaryHDU(), other, table_hdu(columns, units)]).writeto(path)
    spectrum, notes = quietly(read_spectrum, path)
    assert spectrum.kind == "s1d" and len(notes) == (0 if units or "waveobs" in columns else 1)
    assert_reads_back(spectrum)


def test_ispec_fits_image_in_nm_with_an_error_extension(tmp_path):
    header = fits.Header({"CUNIT1": "NM", "CTYPE1": "AWAV", "CRVAL1": AIR[0] / 10,
                          "CDELT1": 0.001, "CRPIX1": 1})
    path = tmp_path / "ispec_image.fits"
    fits.HDUList([fits.PrimaryHDU(FLUX, header=header),
                  fits.ImageHDU(ERROR, name="SIGMA")]).writeto(path)
    spectrum = read_spectrum(path)
    assert spectrum.meta["wave_unit"] == "nm" and spectrum.meta["header_vacuum"] is False
    assert_reads_back(spectrum)


def test_ispec_matrix_image_of_wavelength_flux_error(tmp_path):
    path = tmp_path / "matrix.fits"
    fits.PrimaryHDU(np.stack([AIR / 10, FLUX, ERROR]), header=fits.Header({"CUNIT1": "NM"})
                    ).writeto(path)
    assert_reads_back(read_spectrum(path))


def test_spectrum_in_extension_1(tmp_path):
    header = fits.Header({"CRVAL1": AIR[0], "CDELT1": 0.01, "CRPIX1": 1})
    path = tmp_path / "extension.fits"
    fits.HDUList([fits.PrimaryHDU(header=fits.Header({"OBJECT": "Sun"})),
                  fits.ImageHDU(FLUX, header=header, name="FLUX")]).writeto(path)
    spectrum = read_spectrum(path)
    assert spectrum.kind == "s1d" and spectrum.meta["object"] == "Sun"
    assert_reads_back(spectrum)


def test_decreasing_wavelengths_in_a_table_and_an_image(tmp_path):
    table = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), table_hdu({"WAVE": AIR[::-1], "FLUX": FLUX[::-1]})]).writeto(table)
    spectrum = read_spectrum(table)
    assert spectrum.meta["wave_order"] == "decreasing: reversed"
    assert_reads_back(spectrum)
    image = tmp_path / "image.fits"
    fits.PrimaryHDU(FLUX[::-1], header=fits.Header({"CRVAL1": AIR[-1], "CDELT1": -0.01})).writeto(image)
    assert_reads_back(read_spectrum(image), flux=FLUX)
    model = to_model_input(read_spectrum(table), template=(AIR, FLUX))  # measured: not blamed on the RV
    assert abs(model.rv_kms) < 0.05


def test_an_unplaceable_file_names_each_hdu_and_what_is_accepted(tmp_path):
    path = tmp_path / "cube.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((2, 3, 4)), name="CUBE"),
                  table_hdu({"RA": np.ones(2)}, name="CAT")]).writeto(path)
    with pytest.raises(SpectrumFileError) as error:
        read_spectrum(path)
    message = str(error.value)
    assert "HDU 0 (PRIMARY): no data" in message and "HDU 1 (CUBE): image (2, 3, 4)" in message
    assert "table with columns RA" in message and "accepted:" in message


# --------------------------------------------------------------------------- échelle orders


def echelle_orders(n_px: int = 8000):
    """(wave [Å], flux, blaze) of 12 orders of 70 Å, 40 Å apart, running red to blue down the
    rows and blue to red along each row (as some instruments write them): flux = lines × blaze."""
    centres = np.arange(5440.0, 4970.0, -40.0)[:, None]
    wave = centres + np.linspace(-35.0, 35.0, n_px)[::-1][None, :]  # decreasing along rows
    blaze = 1000.0 * (1.0 - 0.6 * np.linspace(-1, 1, n_px) ** 2)[None, :].repeat(len(centres), 0)
    return wave, line_spectrum(wave) * blaze, blaze


def assert_orders_match_the_lines(spectrum):
    assert spectrum.kind == "orders" and spectrum.meta["blaze_corrected"]
    assert np.all(np.diff(spectrum.wave, axis=1) > 0)  # each order reversed into increasing λ
    np.testing.assert_allclose(spectrum.flux, line_spectrum(spectrum.wave), atol=1e-9)
    model = to_model_input(spectrum, rv_kms=0.0)
    assert model.mask.all()
    original = line_spectrum(order_wavelengths())
    assert np.abs(model.image - original).max() <= 2e-3


def test_orders_with_wavelength_and_blaze_images_in_one_file(tmp_path):
    wave, flux, blaze = echelle_orders()
    path = tmp_path / "other_instrument.fits"
    fits.HDUList([fits.PrimaryHDU(flux, header=fits.Header({"INSTRUME": "FIES"})),
                  fits.ImageHDU(wave / 10, header=fits.Header({"BUNIT": "nm"}), name="WAVE"),
                  fits.ImageHDU(blaze, name="BLAZE")]).writeto(path)
    spectrum, notes = quietly(read_spectrum, path)
    assert notes == [] and spectrum.meta["wave_unit_source"].startswith("BUNIT")
    assert spectrum.meta["instrume"] == "FIES" and spectrum.meta["frame"] == "unknown"
    assert_orders_match_the_lines(spectrum)


def test_orders_with_unnamed_wavelength_extension(tmp_path):
    wave, flux, blaze = echelle_orders()
    path = tmp_path / "unnamed.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(flux / blaze), fits.ImageHDU(wave)]).writeto(path)
    with pytest.warns(SpectrumNote, match="no blaze image"):
        assert_orders_match_the_lines(read_spectrum(path))


def test_orders_with_wavelengths_in_another_file(tmp_path):
    wave, flux, blaze = echelle_orders()
    flux_path, wave_path, blaze_path = (tmp_path / f"night_{k}.fits" for k in ("flux", "wave", "blaze"))
    fits.PrimaryHDU(flux).writeto(flux_path)
    fits.PrimaryHDU(wave).writeto(wave_path)
    fits.PrimaryHDU(blaze).writeto(blaze_path)
    with pytest.raises(SpectrumFileError, match="without wavelengths.*wave_path=<file>"):
        read_spectrum(flux_path)
    spectrum = read_spectrum(flux_path, wave_path=wave_path, blaze_path=blaze_path)
    assert spectrum.meta["wave_source"] == str(wave_path)
    assert_orders_match_the_lines(spectrum)


def test_orders_whose_wavelength_image_has_another_shape(tmp_path):
    wave, flux, _ = echelle_orders()
    wave_path = tmp_path / "wave.fits"
    fits.PrimaryHDU(wave[:, :2000]).writeto(wave_path)
    fits.PrimaryHDU(flux).writeto(tmp_path / "flux.fits")
    with pytest.raises(SpectrumFileError, match=r"shape \(12, 8000\) \(2D images: \(12, 2000\)\)"):
        read_spectrum(tmp_path / "flux.fits", wave_path=wave_path)


# --------------------------------------------------------------------------- the real atlas


def test_real_solar_atlas_reads_and_predicts():
    from paper_lib.predict import DEFAULT_MODEL, predict_rows

    path = shared_or_skip(ATLAS)
    spectrum, notes = quietly(read_spectrum, path)
    assert spectrum.kind == "text" and notes == [] and spectrum.meta["wave_unit"] == "nm"
    assert spectrum.wave[0] == pytest.approx(4800.0) and spectrum.wave[-1] == pytest.approx(6799.99)
    (row,) = predict_rows([path], DEFAULT_MODEL, profile="cpu", workers=1, progress=False)
    assert row["error"] is None, row["error"]
    assert abs(row["rv_kms"]) < 1.0  # the atlas is at rest: a unit error would show here
    assert 5200 < row["teff"] < 6200 and 3.8 < row["logg"] < 4.8 and abs(row["mh"]) < 0.5

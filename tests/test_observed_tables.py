"""1D spectra in FITS binary tables (paper_lib.observed.tables): ESO Phase-3 files, one row of
array cells or flat columns, ERR and QUAL, units, air or vacuum from the header."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from paper_lib.observed.fits import vacuum_to_air
from paper_lib.observed.read import read_spectrum
from paper_lib.observed.spectrum import SpectrumFileError

from .observed_files import line_spectrum

AIR = np.arange(5000.0, 5420.0, 0.01)


def phase3(path, columns: dict, *, cells: bool = True, units=None, primary=None, table=None):
    """An ESO Phase-3 style file: an empty primary HDU and a binary table of ``columns``,
    either one row of array cells (the archive's standard) or flat columns."""
    units = units or {}
    made = []
    for name, values in columns.items():
        values = np.asarray(values)
        form = f"{values.size}{'D' if values.dtype.kind == 'f' else 'J'}" if cells else \
            ("D" if values.dtype.kind == "f" else "J")
        made.append(fits.Column(name=name, format=form, unit=units.get(name),
                                array=values[None] if cells else values))
    hdus = fits.HDUList([fits.PrimaryHDU(header=primary),
                         fits.BinTableHDU.from_columns(made, header=table)])
    hdus.writeto(path)
    return path


@pytest.mark.parametrize("cells", [True, False], ids=["array cells", "flat columns"])
def test_phase3_table_reads_like_an_s1d(tmp_path, cells):
    flux = 1000.0 * line_spectrum(AIR)[0]
    error = np.sqrt(flux)
    error[100:110] = np.nan  # no error estimate: no data
    quality = np.zeros(AIR.size, dtype=np.int32)
    quality[300:305] = 1
    path = phase3(tmp_path / "ADP.2007-04-13T00_00_00.000.fits",
                  {"WAVE": AIR, "FLUX": flux, "ERR": error, "QUAL": quality}, cells=cells,
                  primary=fits.Header({"INSTRUME": "HARPS", "SPECSYS": "BARYCENT"}))
    spectrum = read_spectrum(path)
    assert spectrum.kind == "s1d" and spectrum.meta["instrument"] == "HARPS"
    assert spectrum.meta["frame"] == "barycentric"
    np.testing.assert_array_equal(spectrum.wave, AIR)
    np.testing.assert_array_equal(spectrum.flux, flux)
    assert not spectrum.mask[100:110].any() and not spectrum.mask[300:305].any()
    assert spectrum.mask.sum() == AIR.size - 15


def test_phase3_units_and_vacuum_from_the_header(tmp_path):
    vacuum = AIR * (AIR / vacuum_to_air(AIR))
    path = phase3(tmp_path / "vacuum_nm.fits", {"WAVE": vacuum / 10.0, "FLUX": line_spectrum(AIR)[0]},
                  units={"WAVE": "nm"}, table=fits.Header({"AIRORVAC": "vac"}))
    spectrum = read_spectrum(path)
    assert spectrum.meta["vacuum_source"] == "header"
    np.testing.assert_allclose(spectrum.wave, AIR, atol=2e-4)


def test_a_table_without_spectrum_columns_lists_what_it_has_and_wanted(tmp_path):
    path = phase3(tmp_path / "catalogue.fits", {"RA": AIR, "DEC": AIR}, cells=False)
    with pytest.raises(SpectrumFileError) as error:
        read_spectrum(path)
    message = str(error.value)
    assert "catalogue.fits" in message and "HDU 1 (unnamed): table with columns RA, DEC" in message
    assert "accepted:" in message and "WAVE" in message and "FLUX" in message


def test_a_table_of_several_spectra_is_refused(tmp_path):
    columns = [fits.Column(name="WAVE", format=f"{AIR.size}D", array=np.stack([AIR, AIR])),
               fits.Column(name="FLUX", format=f"{AIR.size}D", array=np.ones((2, AIR.size)))]
    path = tmp_path / "two.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(columns)]).writeto(path)
    with pytest.raises(SpectrumFileError, match="holds 2 spectra"):
        read_spectrum(path)

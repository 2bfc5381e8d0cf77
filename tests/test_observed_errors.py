"""Bad spectrum files: every problem raises SpectrumFileError naming the file, the problem
and, where the user can supply what is missing, the fix."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from paper_lib.observed.read import read_spectrum
from paper_lib.observed.spectrum import SpectrumFileError

from .conftest import shared_or_skip
from .observed_files import BLAZE, calibration_header, synthetic_e2ds, write_e2ds, write_s1d


def _truncated(folder):
    path, _ = synthetic_e2ds(folder)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path, "truncated or corrupt"


def _garbage(folder):
    path = folder / "garbage.fits"
    path.write_bytes(b"this is not a FITS file at all " * 200)
    return path, "not a readable FITS file"


def _no_wavelength_keys(folder):
    blaze = fits.getdata(shared_or_skip(BLAZE))
    return write_e2ds(folder, np.full((69, 4096), 50.0), fits.Header(), blaze=blaze), \
        "missing wavelength keys"


def _one_coefficient_missing(folder):
    header = calibration_header()
    del header["HIERARCH TNG DRS CAL TH COEFF LL150"]
    blaze = fits.getdata(shared_or_skip(BLAZE))
    return write_e2ds(folder, np.full((69, 4096), 50.0), header, blaze=blaze), "COEFF LL150"


def _wrong_shape(folder):
    return write_e2ds(folder, np.ones((69, 2048)), calibration_header()), "wrong shape"


def _all_nan_order(folder):
    return synthetic_e2ds(folder, fill_rows={38: np.nan})[0], "row 38 (5110.63–5168.08 Å)"


def _all_zero_order(folder):
    return synthetic_e2ds(folder, fill_rows={40: 0.0})[0], "is all zero"


def _s1d_all_nan_order(folder):
    wave = np.arange(4000.0, 6000.0, 0.01)
    flux = np.where((wave > 5150) & (wave < 5220), np.nan, 1.0)
    return write_s1d(folder / "sun_s1d.fits", 4000.0, 0.01, flux), "is all NaN"


def _s1d_short_coverage(folder):
    return write_s1d(folder / "narrow_s1d.fits", 5100.0, 0.01, np.ones(90001)), \
        "covers 5100.00–6000.00 Å"


def _text_short_coverage(folder):
    path = folder / "blue.txt"
    wave = np.arange(4000.0, 5200.0, 0.05)
    np.savetxt(path, np.column_stack([wave, np.ones_like(wave)]))
    return path, "insufficient wavelength coverage"


def _text_in_no_known_unit(folder):  # (nm, Å and µm are read: tests/test_readers.py)
    path = folder / "tenths.dat"
    wave = np.arange(48000.0, 56000.0, 0.1)
    np.savetxt(path, np.column_stack([wave, np.ones_like(wave)]))
    return path, "in no known unit"


def _text_nm_said_to_be_angstrom(folder):
    path = folder / "contradiction.txt"
    wave = np.arange(480.0, 560.0, 0.001)
    np.savetxt(path, np.column_stack([wave, np.ones_like(wave)]), header="wave_A flux", comments="")
    return path, "said to be in Å (column 'wave_A')"


def _unparseable_text(folder):
    path = folder / "notes.txt"
    path.write_text("wavelength flux\nfive thousand one\nmore words here\n")
    return path, "no row of two or more numbers (the first line reads 'wavelength flux')"


def _no_blaze(folder):
    header = calibration_header()
    return write_e2ds(folder, np.full((69, 4096), 50.0), header), "no blaze"


def _blaze_file_absent(folder):
    header = calibration_header()
    header["HIERARCH TNG DRS BLAZE FILE"] = "HARPN.2016-10-12_blaze_A.fits"
    return write_e2ds(folder, np.full((69, 4096), 50.0), header), "HARPN.2016-10-12_blaze_A.fits"


BAD_FILES = [_truncated, _garbage, _no_wavelength_keys, _one_coefficient_missing, _wrong_shape,
             _all_nan_order, _all_zero_order, _s1d_all_nan_order, _s1d_short_coverage,
             _text_short_coverage, _text_in_no_known_unit, _text_nm_said_to_be_angstrom,
             _unparseable_text, _no_blaze, _blaze_file_absent]


@pytest.mark.parametrize("make", BAD_FILES, ids=[f.__name__.strip("_") for f in BAD_FILES])
def test_bad_files_raise_naming_file_and_problem(tmp_path, make):
    path, problem = make(tmp_path)
    with pytest.raises(SpectrumFileError) as info:
        read_spectrum(path)
    message = str(info.value)
    assert path.name in message
    assert problem in message, message


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.fits"):
        read_spectrum(tmp_path / "nothing.fits")

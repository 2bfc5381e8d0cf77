"""Readers of the supported spectrum files: e2ds/s2d frames, s1d (image or table), text.

:func:`read_spectrum` detects the format; see :mod:`paper_lib.observed` for what each one holds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..instrument import N_PIXELS
from .checks import check_1d, check_echelle
from .fits import (BLAZE_FILE_KEY, WAVE_FILE_KEY, companion, e2ds_wavelengths, hdu, header_meta,
                   image_from_file, instrument_prefix, read_fits, vacuum_to_air)
from .spectrum import Spectrum, file_error
from .tables import find_table, read_table, table_frame

E2DS_ROWS = {69: "HARPS-N", 72: "HARPS"}  # number of orders of each instrument's frames
TEXT_SUFFIXES = (".txt", ".dat", ".asc", ".csv", ".tsv",
                 ".txt.gz", ".dat.gz", ".asc.gz", ".csv.gz", ".tsv.gz")  # gzip: numpy reads it
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")


def _e2ds_from_hdus(path: Path, hdus: list, wave_path=None, blaze_path=None) -> Spectrum:
    """Spectrum of an e2ds (primary image) or s2d (SCIDATA extension) file."""
    header = hdus[0][1]
    scidata = hdu(hdus, "SCIDATA")
    kind = "s2d" if scidata is not None else "e2ds"
    data = scidata[1] if scidata is not None else hdus[0][2]
    if data is None:
        raise file_error(path, "wrong shape: the file holds no image data")
    flux = np.asarray(data, dtype=np.float64)
    if flux.ndim != 2 or flux.shape[0] not in E2DS_ROWS or flux.shape[1] != N_PIXELS:
        expected = " or ".join(f"({rows}, {N_PIXELS}) ({name})" for rows, name in E2DS_ROWS.items())
        raise file_error(path, f"wrong shape for an e2ds frame: {flux.shape}, expected {expected}")
    meta = header_meta(header)
    meta.setdefault("instrument", E2DS_ROWS[flux.shape[0]])
    meta["header_vacuum"] = header_says_vacuum(header)
    valid = np.isfinite(flux) & (flux != 0)
    wave = _e2ds_wave(path, hdus, flux.shape, wave_path, meta)
    meta["frame"] = "barycentric" if meta["wave_source"].startswith("WAVEDATA") else "observatory"
    quality = hdu(hdus, "QUALDATA")
    if quality is not None:
        valid &= np.asarray(quality[1]) == 0
    flux, valid = _divide_blaze(path, header, kind, flux, valid, blaze_path, meta)
    meta["blaze_corrected"] = True
    spectrum = Spectrum(wave=wave, flux=flux, mask=valid, kind=kind, path=path, meta=meta)
    spectrum.meta["rows"] = check_echelle(spectrum, np.asarray(data, dtype=np.float64))
    return spectrum


def _e2ds_wave(path: Path, hdus: list, shape: tuple, wave_path, meta: dict) -> np.ndarray:
    """Wavelengths [Å] of an e2ds/s2d frame: from ``wave_path``, the ``WAVEDATA_AIR_BARY``
    extension, the header polynomial, or the wave file the header names (in that order);
    records where they came from in ``meta["wave_source"]``."""
    header = hdus[0][1]
    air = hdu(hdus, "WAVEDATA_AIR_BARY")
    if wave_path is not None:
        wave = image_from_file(Path(wave_path), shape, "wavelength")
        meta["wave_source"] = str(wave_path)
    elif air is not None:
        wave = np.asarray(air[1], dtype=np.float64)
        meta["wave_source"] = "WAVEDATA_AIR_BARY extension"
    elif instrument_prefix(header) is not None:
        wave = e2ds_wavelengths(header, shape[0], path=path)
        meta["wave_source"] = f"header polynomial ({instrument_prefix(header)} DRS CAL TH)"
    else:
        named = companion(path, header, WAVE_FILE_KEY, None, "wave")
        if named is None:
            e2ds_wavelengths(header, shape[0], path=path)  # raises: names the missing keys
        wave = image_from_file(named, shape, "wavelength")
        meta["wave_source"] = str(named)
    if wave.shape != shape:
        raise file_error(path, f"wrong shape: wavelengths {wave.shape} do not match the flux {shape}")
    return wave


def _divide_blaze(path: Path, header, kind: str, flux, valid, blaze_path, meta: dict):
    """(flux / blaze, valid) of an e2ds frame (s2d flux is already blaze-corrected); the blaze
    is ``blaze_path`` or the file the header names beside ``path``."""
    needs_blaze = kind == "e2ds" or "BLAZE" in path.name.upper()
    blaze_file = companion(path, header, BLAZE_FILE_KEY, blaze_path, "blaze")
    if needs_blaze and blaze_file is None:
        raise file_error(path, f"no blaze: the {kind} flux must be divided by the blaze function "
                         "and the header names no blaze file (for HARPS-N a reference blaze such "
                         "as HARPN_BLAZE_A.fits can stand in, with a less exact continuum)", "blaze")
    if blaze_file is None:
        return flux, valid
    blaze = image_from_file(blaze_file, flux.shape, "blaze")
    good = np.isfinite(blaze) & (blaze > 0)
    meta["blaze_path"] = str(blaze_file)
    return np.where(good, flux / np.where(good, blaze, 1.0), np.nan), valid & good


def _s1d_from_hdus(path: Path, hdus: list) -> Spectrum:
    """Spectrum of an s1d file: 1D image with a linear axis, or a binary table
    (:mod:`~paper_lib.observed.tables`: the DRS S1D and ESO Phase-3 spectra)."""
    header, data = hdus[0][1], hdus[0][2]
    table = find_table(hdus) if data is None else None
    meta = header_meta(header)
    if table is not None:
        wave, flux, valid, what = read_table(path, table)
        meta["frame"] = table_frame(header, table[0])
        if what == "header":
            meta["header_vacuum"] = next((says for says in map(header_says_vacuum, (header, table[0]))
                                          if says is not None), None)
    else:
        wave, flux = _linear_axis(path, header, data)
        valid = np.isfinite(flux) & (flux != 0)
        meta["frame"] = "barycentric"  # the HARPS and HARPS-N DRS s1d
        meta["header_vacuum"] = header_says_vacuum(header)
    spectrum = Spectrum(wave=wave, flux=flux, mask=valid, kind="s1d", path=path, meta=meta)
    check_1d(spectrum)
    return spectrum


def _linear_axis(path: Path, header, data) -> tuple[np.ndarray, np.ndarray]:
    """(wave [Å], flux) of a 1D image with λ_i = CRVAL1 + CDELT1·(i + 1 − CRPIX1)."""
    flux = np.asarray(data, dtype=np.float64).ravel()
    step = header.get("CDELT1", header.get("CD1_1"))
    if "CRVAL1" not in header or step is None:
        raise file_error(path, "missing wavelength keys: a 1D spectrum needs CRVAL1 and CDELT1")
    if not float(step) > 0:
        raise file_error(path, f"the wavelength step CDELT1 = {step} is not positive")
    if "LOG" in str(header.get("CTYPE1", "")).upper():
        raise file_error(path, f"unsupported wavelength axis CTYPE1 = {header['CTYPE1']!r} "
                               "(only linear λ axes are read)")
    # CRVAL1 + CDELT1·(pixel − CRPIX1), pixels counted from 1, in place (one array, not four)
    wave = np.arange(flux.size, dtype=np.float64)
    wave += 1.0
    wave -= float(header.get("CRPIX1", 1.0))
    wave *= float(step)
    wave += float(header["CRVAL1"])
    if str(header.get("CUNIT1", "")).strip().lower() == "nm":
        wave = wave * 10.0
    return wave, flux


def header_says_vacuum(header) -> bool | None:
    """True/False where the header says vacuum/air wavelengths (CTYPE1 'WAVE' / 'AWAV' of the
    FITS standard, or AIRORVAC / VACUUM keys), None where it says nothing."""
    ctype = str(header.get("CTYPE1", "")).strip().upper()
    if ctype in ("WAVE", "VWAV") or ctype.startswith("WAVE-"):
        return True
    if ctype.startswith("AWAV"):
        return False
    flag = str(header.get("AIRORVAC", header.get("VACUUM", ""))).strip().lower()
    if flag in ("vac", "vacuum", "true", "t", "1"):
        return True
    if flag in ("air", "false", "f", "0"):
        return False
    return None


def to_air(spectrum: Spectrum, vacuum: bool | None) -> Spectrum:
    """The spectrum with air wavelengths: converted if ``vacuum`` is True, or if it is None and
    the header said vacuum (``meta["header_vacuum"]``, set by the readers); records
    ``meta["vacuum_source"]`` when it converted."""
    if vacuum is None and spectrum.meta.get("header_vacuum"):
        spectrum.meta["vacuum_source"] = "header"
    elif vacuum:
        spectrum.meta["vacuum_source"] = "given"
    else:
        return spectrum
    spectrum.wave = vacuum_to_air(spectrum.wave)
    return spectrum


def read_e2ds(path, *, wave_path=None, blaze_path=None) -> Spectrum:
    """Read a HARPS-N/HARPS e2ds (or newer-DRS s2d) file; see the module docstring.

    ``wave_path``: a ``_wave_A`` frame (same shape) used instead of the header polynomial.
    ``blaze_path``: the ``_blaze_A`` frame; default: the file named in ``DRS BLAZE FILE``
    in the same folder. The returned flux is divided by the blaze.
    """
    path = Path(path)
    return _e2ds_from_hdus(path, read_fits(path), wave_path, blaze_path)


def read_s1d(path) -> Spectrum:
    """Read an s1d FITS file (1D image with CRVAL1/CDELT1/CRPIX1, or a binary table)."""
    path = Path(path)
    return _s1d_from_hdus(path, read_fits(path))


def _text_columns(path: Path) -> np.ndarray:
    """The first two numeric columns of a text spectrum, (n, 2): header lines (any line that
    does not start with two numbers) and '#'/'%' comments skipped; commas, semicolons, tabs or
    spaces separate the columns."""
    import re
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.loadtxt(path, usecols=(0, 1), comments=("#", "%"), ndmin=2)  # plain columns
    except (ValueError, IndexError):
        pass  # a header, commas, …: the tolerant reader below
    except OSError as error:
        raise file_error(path, f"cannot be read: {error.strerror or error}") from None
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        raise file_error(path, f"cannot be read: {error.strerror or error}") from None
    rows = []
    for line in text.splitlines():
        fields = [f for f in re.split(r"[,;\s]+", line.strip()) if f]
        if len(fields) < 2 or line.lstrip().startswith(("#", "%")):
            continue
        try:
            rows.append((float(fields[0]), float(fields[1])))
        except ValueError:
            if rows:  # text after the data started: not a spectrum
                raise file_error(path, f"not a two-column text spectrum (wavelength, flux): "
                                 f"line {line.strip()[:60]!r} is not two numbers") from None
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


def read_text_spectrum(path) -> Spectrum:
    """Read a text spectrum: two columns, air wavelength [Å] and flux.

    Header lines and lines starting with '#' or '%' are skipped; commas, semicolons, tabs or
    spaces separate the columns (further columns are ignored). Rows are sorted by wavelength;
    rows repeating a wavelength (as at the seams of spliced spectra) are averaged.
    """
    path = Path(path)
    columns = _text_columns(path)
    if len(columns) < 2:
        raise file_error(path, "not a two-column text spectrum (wavelength, flux): fewer than two "
                         "rows of numbers")
    if not np.all(np.isfinite(columns[:, 0])):
        raise file_error(path, "the wavelength column contains NaN or inf")
    wave, first, counts = np.unique(columns[:, 0], return_inverse=True, return_counts=True)
    flux = np.bincount(first, weights=columns[:, 1]) / counts  # repeated λ: mean flux
    spectrum = Spectrum(wave=wave, flux=flux, mask=np.isfinite(flux) & (flux != 0), kind="text",
                        path=path)
    check_1d(spectrum)
    return spectrum


def _is_fits(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(9) == b"SIMPLE  ="


def _classify(path: Path, hdus: list) -> str:
    """'e2ds' or 's1d' from the data layout and header keys."""
    header, data = hdus[0][1], hdus[0][2]
    if hdu(hdus, "SCIDATA") is not None:
        return "e2ds"
    if data is None and find_table(hdus) is not None:
        return "s1d"
    ndim = np.ndim(data) if data is not None else 0
    if ndim == 1 or (ndim == 2 and np.shape(data)[0] == 1 and "CRVAL1" in header):
        return "s1d"
    if ndim >= 2 or instrument_prefix(header) is not None:
        return "e2ds"
    raise file_error(path, "unrecognised layout: neither an e2ds frame (69 × 4096), nor an s1d "
                           "(1D data with CRVAL1/CDELT1, or a table with WAVE and FLUX columns)")


def read_spectrum(path, *, wave_path=None, blaze_path=None, vacuum: bool | None = None) -> Spectrum:
    """Read any supported spectrum file, detecting its format.

    Text by extension (.txt, .dat, .asc, .csv, .tsv) or when the file neither has a FITS
    extension nor starts like one. Among FITS files: e2ds by 2D data (69 × 4096 HARPS-N,
    72 × 4096 HARPS), an ``SCIDATA`` extension (s2d) or the DRS wavelength keys; s1d by 1D
    data with CRVAL1/CDELT1 or by a binary table (the DRS S1D, ESO Phase-3 spectra:
    :mod:`~paper_lib.observed.tables`).
    ``wave_path``/``blaze_path`` are passed to :func:`read_e2ds`. ``vacuum``: True if the
    wavelengths are in vacuum (converted to air), False if in air, None to follow the header
    (CTYPE1 'WAVE'/'AWAV', AIRORVAC; air where it says nothing).
    """
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{path}: is a folder, not a spectrum file (the command line "
                                "and paper_lib.predict take folders and read the files inside)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffixes = "".join(path.suffixes[-2:]).lower()
    is_fits = suffixes.endswith(FITS_SUFFIXES) or _is_fits(path)
    if path.suffix.lower() in TEXT_SUFFIXES or not is_fits:
        return to_air(read_text_spectrum(path), vacuum)
    hdus = read_fits(path)
    if _classify(path, hdus) == "e2ds":
        spectrum = _e2ds_from_hdus(path, hdus, wave_path, blaze_path)
    else:
        spectrum = _s1d_from_hdus(path, hdus)
    return to_air(spectrum, vacuum)

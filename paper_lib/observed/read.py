"""Readers of the supported spectrum files: HARPS/HARPS-N e2ds/s2d frames, échelle orders of
any instrument (:mod:`~paper_lib.observed.orders`), s1d (1D image or table, in any HDU), text
(:mod:`~paper_lib.observed.text`).

:func:`read_spectrum` detects the format; see :mod:`paper_lib.observed` for what each one holds.
A FITS file it cannot place gets an error naming what each HDU holds and what is accepted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..instrument import N_PIXELS
from .checks import check_1d, check_echelle
from .fits import (BLAZE_FILE_KEY, WAVE_FILE_KEY, companion, describe_hdus, e2ds_wavelengths, hdu,
                   header_meta, header_says_vacuum, image_from_file, instrument_prefix, read_fits,
                   vacuum_to_air)
from .orders import find_orders, looks_like_wavelengths, read_orders
from .spectrum import Spectrum, file_error
from .tables import find_table, in_wavelength_order, read_table, table_frame
from .text import TEXT_SUFFIXES, read_text_spectrum
from .units import unit_scale, wave_scale

__all__ = ["read_spectrum", "read_e2ds", "read_s1d", "read_text_spectrum", "header_says_vacuum",
           "to_air", "TEXT_SUFFIXES", "FITS_SUFFIXES"]

E2DS_ROWS = {69: "HARPS-N", 72: "HARPS"}  # number of orders of each instrument's frames
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
ACCEPTED = ("accepted: a 1D spectrum in any HDU (an image with CRVAL1 and CDELT1, or a table "
            "with wavelength and flux columns: WAVE, waveobs, AWAV, wavelength, lambda, … and "
            "FLUX, with a unit in TUNITn or the name, e.g. wave_A); échelle orders (a "
            "2D flux image with a wavelength image of the same shape in another HDU or in "
            "wave_path; HARPS/HARPS-N e2ds and s2d with their DRS header)")


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


def _s1d_from_hdus(path: Path, hdus: list, index: int | None = 0) -> Spectrum:
    """Spectrum of an s1d file: the 1D image of HDU ``index`` with a linear axis (or a 2- or
    3-row image of wavelength, flux and error), or, for ``index`` None, a binary table
    (:mod:`~paper_lib.observed.tables`: the DRS S1D, ESO Phase-3 and iSpec spectra)."""
    primary = hdus[0][1]
    meta = header_meta(primary)
    if index is None:
        table = find_table(hdus)
        wave, flux, valid, what = read_table(path, table, meta)
        meta["frame"] = table_frame(primary, table[0])
        if what == "header":
            meta["header_vacuum"] = next((says for says in map(header_says_vacuum, (primary, table[0]))
                                          if says is not None), None)
    else:
        name, header, data = hdus[index]
        meta.update(header_meta(header), **({"spectrum_hdu": f"{index} ({name})"} if index else {}))
        if _is_matrix(header, data):
            wave, flux, valid = _matrix(path, header, data, meta)
        else:
            wave, flux = _linear_axis(path, header, data, meta)
            valid = np.isfinite(flux) & (flux != 0)
        meta["frame"] = "barycentric"  # the HARPS and HARPS-N DRS s1d
        meta["header_vacuum"] = next((says for says in map(header_says_vacuum, (header, primary))
                                      if says is not None), None)
    spectrum = Spectrum(wave=wave, flux=flux, mask=valid, kind="s1d", path=path, meta=meta)
    check_1d(spectrum)
    return spectrum


def _is_matrix(header, data) -> bool:
    """A 2- or 3-row image without a wavelength axis whose first row is wavelengths (as iSpec
    writes irregularly sampled spectra: wavelength, flux, error)."""
    return (np.ndim(data) == 2 and np.shape(data)[0] in (2, 3) and "CRVAL1" not in header
            and looks_like_wavelengths(np.asarray(data)[:1]))


def _matrix(path: Path, header, data, meta: dict):
    """(wave [Å], flux, valid) of a :func:`_is_matrix` image, in increasing wavelength."""
    data = np.asarray(data, dtype=np.float64)
    stated = unit_scale(header.get("CUNIT1"))
    scale = wave_scale(data[0], meta, path, stated=stated, where="CUNIT1" if stated else "row 1")
    valid = np.isfinite(data[1]) & (data[1] != 0)
    if len(data) == 3:
        valid &= np.isfinite(data[2]) & (data[2] >= 0)
    return in_wavelength_order(path, data[0] * scale, data[1], valid, meta)


def _linear_axis(path: Path, header, data, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """(wave [Å], flux) of a 1D image with λ_i = CRVAL1 + CDELT1·(i + 1 − CRPIX1), its unit
    from CUNIT1, else from the values (:func:`~paper_lib.observed.units.wave_scale`), in
    increasing wavelength (both reversed where CDELT1 is negative)."""
    flux = np.asarray(data, dtype=np.float64).ravel()
    step = header.get("CDELT1", header.get("CD1_1"))
    if "CRVAL1" not in header or step is None:
        raise file_error(path, "missing wavelength keys: a 1D spectrum needs CRVAL1 and CDELT1")
    if not (np.isfinite(float(step)) and float(step) != 0):
        raise file_error(path, f"the wavelength step CDELT1 = {step} is zero or not finite")
    if "LOG" in str(header.get("CTYPE1", "")).upper():
        raise file_error(path, f"unsupported wavelength axis CTYPE1 = {header['CTYPE1']!r} "
                               "(only linear λ axes are read)")
    # CRVAL1 + CDELT1·(pixel − CRPIX1), pixels counted from 1, in place (one array, not four)
    wave = np.arange(flux.size, dtype=np.float64)
    wave += 1.0
    wave -= float(header.get("CRPIX1", 1.0))
    wave *= float(step)
    wave += float(header["CRVAL1"])
    stated = unit_scale(header.get("CUNIT1"))
    ends = wave[[0, -1]]
    scale = wave_scale(ends, meta, path, stated=stated,
                       where=f"CUNIT1 = {str(header.get('CUNIT1')).strip()!r}" if stated else "CRVAL1")
    if scale != 1.0:
        wave *= scale
    if float(step) < 0:
        meta["wave_order"] = "decreasing: reversed"
        return wave[::-1].copy(), flux[::-1].copy()
    return wave, flux


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
    """Read an s1d FITS file (1D image with CRVAL1/CDELT1/CRPIX1 in any HDU, or a table)."""
    path = Path(path)
    hdus = read_fits(path)
    kind, index = _classify(path, hdus)
    if kind != "s1d":
        raise file_error(path, f"not a 1D spectrum: {describe_hdus(hdus)}; {ACCEPTED}")
    return _s1d_from_hdus(path, hdus, index)


def _is_fits(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(9) == b"SIMPLE  ="


def _spectrum_in_extensions(hdus: list) -> tuple[str, int | None] | None:
    """(kind, HDU index) of a spectrum in an extension of a file whose primary HDU is empty."""
    if (table := find_table(hdus)) is not None:
        from .tables import choose_columns

        if None not in map(choose_columns(table[1].columns.names).get, ("wave", "flux")):
            return "s1d", None
    for index, (_, header, data) in enumerate(hdus[1:], start=1):
        if isinstance(data, np.ndarray) and data.dtype.names is None and data.size:
            if np.ndim(data) == 1 or (np.shape(data)[0] == 1 and "CRVAL1" in header):
                return "s1d", index
            if np.ndim(data) == 2 and _is_matrix(header, data):
                return "s1d", index
    if find_orders(hdus)[0] is not None:
        return "orders", None
    return None


def _classify(path: Path, hdus: list, wave_path=None) -> tuple[str, int | None]:
    """(kind, HDU index): "e2ds" (HARPS/HARPS-N e2ds or s2d), "orders" (échelle orders of any
    instrument), or "s1d" (the 1D image of HDU index, or a table for None)."""
    header, data = hdus[0][1], hdus[0][2]
    if hdu(hdus, "SCIDATA") is not None:
        return "e2ds", 0
    if data is None or not np.size(data):
        found = _spectrum_in_extensions(hdus)
        if found is None:
            raise file_error(path, f"unrecognised layout: {describe_hdus(hdus)}; {ACCEPTED}")
        return found
    ndim, shape = np.ndim(data), np.shape(data)
    if ndim == 1 or (ndim == 2 and shape[0] == 1 and "CRVAL1" in header) or _is_matrix(header, data):
        return "s1d", 0
    if ndim == 2 and instrument_prefix(header) is None:
        harps_shape = shape[0] in E2DS_ROWS and shape[1] == N_PIXELS
        if find_orders(hdus)[1] is not None or not harps_shape:
            return "orders", None
    if ndim >= 2 or instrument_prefix(header) is not None:
        return "e2ds", 0
    raise file_error(path, f"unrecognised layout: {describe_hdus(hdus)}; {ACCEPTED}")


def read_spectrum(path, *, wave_path=None, blaze_path=None, vacuum: bool | None = None) -> Spectrum:
    """Read any supported spectrum file, detecting its format.

    Text (:mod:`~paper_lib.observed.text`, gzipped or not) by extension (.txt, .dat, .asc,
    .csv, .tsv, each also .gz) or when the file neither has a FITS extension nor starts like
    one. Among FITS files: HARPS/HARPS-N e2ds by the DRS wavelength keys or 2D data of 69 or
    72 × 4096, or an ``SCIDATA`` extension (s2d); échelle orders of any instrument by a 2D
    flux image with a wavelength image of the same shape in the file or in ``wave_path``
    (:mod:`~paper_lib.observed.orders`); s1d by 1D data with CRVAL1/CDELT1 in the primary HDU
    or any extension, or by a binary table (the DRS S1D, ESO Phase-3, iSpec:
    :mod:`~paper_lib.observed.tables`).
    ``wave_path``/``blaze_path``: the wavelength and blaze images of an e2ds frame or échelle
    orders whose file does not give them. ``vacuum``: True if the wavelengths are in vacuum
    (converted to air), False if in air, None to follow the file (CTYPE1 'WAVE'/'AWAV',
    AIRORVAC, a column or HDU named as vacuum; air where it says nothing).
    """
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{path}: is a folder, not a spectrum file (the command line "
                                "and paper_lib.predict take folders and read the files inside)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    name = path.name.lower()
    is_fits = name.endswith(FITS_SUFFIXES) or _is_fits(path)
    if name.endswith(TEXT_SUFFIXES) or not is_fits:
        return to_air(read_text_spectrum(path), vacuum)
    hdus = read_fits(path)
    kind, index = _classify(path, hdus, wave_path)
    if kind == "e2ds":
        spectrum = _e2ds_from_hdus(path, hdus, wave_path, blaze_path)
    elif kind == "orders":
        spectrum = read_orders(path, hdus, wave_path, blaze_path)
    else:
        spectrum = _s1d_from_hdus(path, hdus, index)
    return to_air(spectrum, vacuum)

"""1D spectra stored as FITS binary tables: the newer (ESPRESSO-type) DRS ``S1D`` products and
ESO Phase-3 spectra (the archive's ``ADP`` files).

A table holds a wavelength column and a flux column, either as one row whose cells are whole
arrays (the ESO Science Data Products standard) or as flat columns, one row per pixel. Column
names are matched without regard to case:

* wavelength: ``wavelength_air`` or ``WAVE_AIR`` (air), ``WAVE`` (air unless the header says
  vacuum: ``AIRORVAC``, ``VACUUM`` or a ``CTYPE1`` of ``WAVE``), ``wavelength`` (vacuum, the
  DRS ``S1D``); in Å, or in nm where the column's unit says so;
* flux: ``FLUX``; pixels whose ``ERR``/``error`` is NaN or negative, or whose ``QUAL``/
  ``quality`` is not 0, hold no data.
"""

from __future__ import annotations

import numpy as np

from .fits import vacuum_to_air
from .spectrum import file_error

WAVE_COLUMNS = {"wavelength_air": "air", "wave_air": "air", "wave": "header",
                "wavelength": "vacuum"}  # in order of preference: name → what its values are
FLUX_COLUMNS = ("flux",)
ERROR_COLUMNS = ("err", "error")
QUALITY_COLUMNS = ("qual", "quality")
FRAMES = {"BARYCENT": "barycentric", "TOPOCENT": "observatory"}  # SPECSYS → frame


def find_table(hdus: list):
    """(header, data) of the first HDU holding a table with named columns, or None."""
    for _, header, data in hdus:
        if getattr(getattr(data, "columns", None), "names", None):
            return header, data
    return None


def _column(path, data, name: str) -> np.ndarray:
    """A column as one float64 array: a single row of array cells or a flat column."""
    values = np.asarray(data[name], dtype=np.float64)
    if values.ndim == 2 and values.shape[0] > 1 and values.shape[1] > 1:
        raise file_error(path, f"column {name!r} holds {values.shape[0]} spectra (one row each); "
                               "one spectrum per file is read")
    return values.ravel()


def _first(lower: dict, names) -> str | None:
    """The file's spelling of the first of ``names`` it has (``lower``: lower-case → name)."""
    return next((lower[n] for n in names if n in lower), None)


def _unit_scale(data, name: str) -> float:
    """10 for a column in nm, 1 for Å (or no unit)."""
    unit = str(getattr(data.columns[name], "unit", None) or "").strip().lower()
    return 10.0 if unit in ("nm", "nanometer", "nanometers") else 1.0


def read_table(path, table) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(wave [Å], flux, valid, what the wavelengths are: "air" or "header") of the table
    ``table`` = (header, data) (vacuum columns are converted to air here).

    Raises SpectrumFileError listing the columns it has and those it looked for."""
    _, data = table
    lower = {name.lower(): name for name in data.columns.names}
    wave_name = _first(lower, WAVE_COLUMNS)
    flux_name = _first(lower, FLUX_COLUMNS)
    if wave_name is None or flux_name is None:
        raise file_error(path, f"a table without the columns of a spectrum: it has "
                               f"{', '.join(data.columns.names)}; looked for a wavelength column "
                               f"({', '.join(n.upper() for n in WAVE_COLUMNS)}) and a flux column "
                               f"({', '.join(n.upper() for n in FLUX_COLUMNS)})")
    wave = _column(path, data, wave_name) * _unit_scale(data, wave_name)
    flux = _column(path, data, flux_name)
    if wave.shape != flux.shape:
        raise file_error(path, f"columns {wave_name!r} ({wave.size} values) and {flux_name!r} "
                               f"({flux.size} values) differ in length")
    what = WAVE_COLUMNS[wave_name.lower()]
    if what == "vacuum":
        wave, what = vacuum_to_air(wave), "air"
    valid = np.isfinite(flux) & (flux != 0)
    error_name, quality_name = _first(lower, ERROR_COLUMNS), _first(lower, QUALITY_COLUMNS)
    if error_name is not None:
        error = _column(path, data, error_name)
        valid &= np.isfinite(error) & (error >= 0)
    if quality_name is not None:
        valid &= _column(path, data, quality_name) == 0
    return wave, flux, valid, what


def table_frame(*headers) -> str:
    """"barycentric" or "observatory" from the first ``SPECSYS`` among ``headers``; an s1d
    without one is taken as barycentric (as the HARPS and HARPS-N DRS write them)."""
    for header in headers:
        if header is not None and "SPECSYS" in header:
            return FRAMES.get(str(header["SPECSYS"]).strip().upper(), "barycentric")
    return "barycentric"

"""1D spectra as tables of columns: FITS binary tables (the newer (ESPRESSO-type) DRS ``S1D``
products, ESO Phase-3 spectra, the tables iSpec and the Gaia benchmark library write) and, through
:func:`choose_columns`, the header line of text spectra (:mod:`~paper_lib.observed.text`).

A FITS table holds a wavelength column and a flux column, either as one row whose cells are
whole arrays (the ESO Science Data Products standard) or as flat columns, one row per pixel,
in the primary HDU's first table extension or any later one. Column names are matched without
regard to case, and a unit may end the name (``wave_A``, ``lambda(nm)``, ``wavelength
[Angstrom]``):

* wavelength: ``wavelength_air``, ``WAVE_AIR`` or ``AWAV`` (air); ``waveobs`` (iSpec, the Gaia
  benchmark library: air, nm unless stated), ``WAVE``, ``lambda``, ``lam``, ``wl`` (air unless
  the header says vacuum: ``AIRORVAC``, ``VACUUM`` or a ``CTYPE1`` of ``WAVE``); ``wave_vac``,
  ``wavelength_vac`` (vacuum); ``wavelength`` (vacuum in FITS tables, as in the DRS ``S1D``);
  the unit from ``TUNITn``, else the name, else the values (:mod:`~paper_lib.observed.units`);
* flux: ``FLUX`` (also ``fluxes``, ``flux_norm``, ``norm_flux``, ``normalized_flux``,
  ``intensity``); pixels whose error (``ERR``, ``error``, ``SIGMA``, ``noise``, ``flux_err``)
  is NaN or negative, or whose ``QUAL``/``quality`` is not 0, hold no data.

Rows in decreasing or mixed wavelength order are put in increasing order (``meta["wave_order"]``).
"""

from __future__ import annotations

import numpy as np

from .fits import vacuum_to_air
from .spectrum import file_error
from .units import split_name, unit_scale, wave_scale

# base name → what its values are: "air", "vacuum", "header" (air unless the header says
# vacuum), "drs_vacuum" (the DRS S1D's vacuum column: vacuum in FITS tables, air in text);
# in order of preference
WAVE_COLUMNS = {"wavelength_air": "air", "wave_air": "air", "awav": "air", "waveobs": "header",
                "wave": "header", "lambda": "header", "lam": "header", "wl": "header",
                "wave_vac": "vacuum", "wavelength_vac": "vacuum", "wavelength_vacuum": "vacuum",
                "wavelength": "drs_vacuum"}
NM_CONVENTION = {"waveobs": 10.0}  # names whose unit, when unstated, is by convention nm
FLUX_COLUMNS = ("flux", "fluxes", "flux_norm", "norm_flux", "normalized_flux", "intensity")
ERROR_COLUMNS = ("err", "error", "sigma", "noise", "flux_err", "uncertainty")
QUALITY_COLUMNS = ("qual", "quality")
FRAMES = {"BARYCENT": "barycentric", "TOPOCENT": "observatory"}  # SPECSYS → frame


def choose_columns(names) -> dict:
    """The file's column names for each role: {"wave", "flux", "error", "quality": name or
    None, "wave_base": the wavelength column's base name (a key of WAVE_COLUMNS), "name_unit":
    the factor to Å its name states, or None}."""
    split = {name: split_name(name) for name in names}
    by_base = {}
    for name, (base, _) in split.items():
        by_base.setdefault(base, name)
    first = lambda wanted: next((by_base[b] for b in wanted if b in by_base), None)  # noqa: E731
    wave = first(WAVE_COLUMNS)
    return {"wave": wave, "flux": first(FLUX_COLUMNS), "error": first(ERROR_COLUMNS),
            "quality": first(QUALITY_COLUMNS), "wave_base": split[wave][0] if wave else None,
            "name_unit": split[wave][1] if wave else None}


def to_angstrom(path, wave, chosen: dict, meta: dict, unit_keyword=None) -> np.ndarray:
    """``wave`` of the column ``chosen["wave"]`` in Å: its unit from ``unit_keyword`` (the text
    of its TUNITn, if any), else its name, else the naming convention, else its values (a
    ``chosen["wave"]`` of None: the first column of a text file without a header)."""
    name, base = chosen["wave"], chosen["wave_base"]
    column = f"column {name!r}" if name is not None else "the first column"
    if unit_scale(unit_keyword) is not None:
        scale = wave_scale(wave, meta, path, stated=unit_scale(unit_keyword),
                           where=f"the unit of column {name!r}: {str(unit_keyword).strip()!r}")
    elif chosen["name_unit"] is not None:
        scale = wave_scale(wave, meta, path, stated=chosen["name_unit"], where=column)
    else:
        scale = wave_scale(wave, meta, path, convention=NM_CONVENTION.get(base), where=column)
    return wave * scale if scale != 1.0 else wave


def in_wavelength_order(path, wave, flux, valid, meta: dict):
    """(wave, flux, valid) with strictly increasing wavelengths: reversed if they decrease,
    else sorted with repeated wavelengths merged (mean of their valid fluxes); recorded in
    ``meta["wave_order"]``. SpectrumFileError if a wavelength is NaN or inf."""
    if not np.all(np.isfinite(wave)):
        raise file_error(path, f"the wavelength column contains NaN or inf "
                               f"({int(np.sum(~np.isfinite(wave)))} of {wave.size} values)")
    steps = np.diff(wave)
    if np.all(steps > 0):
        return wave, flux, valid
    if np.all(steps < 0):
        meta["wave_order"] = "decreasing: reversed"
        return wave[::-1].copy(), flux[::-1].copy(), valid[::-1].copy()
    unique, inverse = np.unique(wave, return_inverse=True)
    n_valid = np.bincount(inverse, weights=valid, minlength=unique.size)
    total = np.bincount(inverse, weights=np.where(valid, flux, 0.0), minlength=unique.size)
    meta["wave_order"] = ("unsorted: sorted" + (", repeated wavelengths averaged"
                                                if unique.size < wave.size else ""))
    with np.errstate(invalid="ignore", divide="ignore"):
        return unique, np.where(n_valid > 0, total / n_valid, np.nan), n_valid > 0


def find_table(hdus: list):
    """(header, data) of the first HDU holding a table with a wavelength and a flux column
    (:func:`choose_columns`), else of the first table with named columns, or None."""
    tables = [(header, data) for _, header, data in hdus
              if getattr(getattr(data, "columns", None), "names", None)]
    spectral = (t for t in tables if None not in map(choose_columns(t[1].columns.names).get,
                                                     ("wave", "flux")))
    return next(spectral, tables[0] if tables else None)


def _column(path, data, name: str) -> np.ndarray:
    """A column as one float64 array: a single row of array cells or a flat column."""
    values = np.asarray(data[name], dtype=np.float64)
    if values.ndim == 2 and values.shape[0] > 1 and values.shape[1] > 1:
        raise file_error(path, f"column {name!r} holds {values.shape[0]} spectra (one row each); "
                               "one spectrum per file is read")
    return values.ravel()


def missing_columns_error(path, names, where: str = "a table"):
    """The SpectrumFileError of a table whose columns are not those of a spectrum."""
    return file_error(path, f"{where} without the columns of a spectrum: it has "
                      f"{', '.join(names)}; looked for a wavelength column "
                      f"({', '.join(n.upper() for n in WAVE_COLUMNS)}, optionally with a unit: "
                      f"wave_A, lambda(nm)) and a flux column "
                      f"({', '.join(n.upper() for n in FLUX_COLUMNS)})")


def read_table(path, table, meta: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(wave [Å], flux, valid, what the wavelengths are: "air" or "header") of the table
    ``table`` = (header, data), in increasing wavelength (vacuum columns are converted to air
    here); the unit and order of the wavelengths are recorded in ``meta``.

    Raises SpectrumFileError listing the columns it has and those it looked for."""
    _, data = table
    chosen = choose_columns(data.columns.names)
    if chosen["wave"] is None or chosen["flux"] is None:
        raise missing_columns_error(path, data.columns.names)
    unit = getattr(data.columns[chosen["wave"]], "unit", None)
    wave = to_angstrom(path, _column(path, data, chosen["wave"]), chosen, meta, unit)
    flux = _column(path, data, chosen["flux"])
    if wave.shape != flux.shape:
        raise file_error(path, f"columns {chosen['wave']!r} ({wave.size} values) and "
                               f"{chosen['flux']!r} ({flux.size} values) differ in length")
    what = WAVE_COLUMNS[chosen["wave_base"]]
    if what in ("vacuum", "drs_vacuum"):
        wave, what = vacuum_to_air(wave), "air"
        meta["vacuum_source"] = f"column {chosen['wave']!r}"
    valid = np.isfinite(flux) & (flux != 0)
    if chosen["error"] is not None:
        error = _column(path, data, chosen["error"])
        valid &= np.isfinite(error) & (error >= 0)
    if chosen["quality"] is not None:
        valid &= _column(path, data, chosen["quality"]) == 0
    return (*in_wavelength_order(path, wave, flux, valid, meta), what)


def table_frame(*headers) -> str:
    """"barycentric" or "observatory" from the first ``SPECSYS`` among ``headers``; an s1d
    without one is taken as barycentric (as the HARPS and HARPS-N DRS write them)."""
    for header in headers:
        if header is not None and "SPECSYS" in header:
            return FRAMES.get(str(header["SPECSYS"]).strip().upper(), "barycentric")
    return "barycentric"

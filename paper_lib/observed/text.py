"""Text spectra: columns of numbers, plain or gzipped, with or without a header line naming
the columns — two columns of air Å and flux, or the format of iSpec and the Gaia benchmark
spectral library (``waveobs flux err``, wavelengths in nm).

The header is the last line before the numbers (a ``#`` comment line counts too) whose fields
are not numbers; its names choose the wavelength, flux and error columns
(:func:`~paper_lib.observed.tables.choose_columns`), and a unit in a name (``wave_A``,
``lambda(nm)``) or the ``waveobs`` convention (nm) gives the wavelengths' unit; else the values
do (:mod:`~paper_lib.observed.units`). Without a header the first two columns are wavelength
and flux. Commas, semicolons, tabs or spaces separate the columns.
"""

from __future__ import annotations

import gzip
import io
import re
import warnings
import zlib
from pathlib import Path

import numpy as np

from .checks import check_1d
from .fits import vacuum_to_air
from .spectrum import Spectrum, add_note, file_error
from .tables import (FLUX_COLUMNS, WAVE_COLUMNS, choose_columns, in_wavelength_order,
                     missing_columns_error, to_angstrom)

PLAIN_TEXT_SUFFIXES = (".txt", ".dat", ".asc", ".csv", ".tsv")
TEXT_SUFFIXES = PLAIN_TEXT_SUFFIXES + tuple(f"{s}.gz" for s in PLAIN_TEXT_SUFFIXES)
COMMENTS = ("#", "%")
GZIP_MAGIC = b"\x1f\x8b"
SEPARATORS = re.compile(r"[,;\s]+")


def read_text(path: Path) -> str:
    """The text of ``path``, gunzipped if it is gzip data (whatever its name)."""
    try:
        raw = path.read_bytes()
        if raw[:2] == GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except OSError as error:  # gzip.BadGzipFile is an OSError
        raise file_error(path, f"cannot be read: {getattr(error, 'strerror', None) or error}") from None
    except (EOFError, zlib.error) as error:
        raise file_error(path, f"cannot be read: truncated or corrupt gzip data ({error})") from None
    return raw.decode("utf-8", errors="replace")


def _numbers(fields: list[str]) -> bool:
    try:
        [float(f) for f in fields[:2]]
    except ValueError:
        return False
    return len(fields) >= 2


def _fields(line: str) -> list[str]:
    return [f for f in SEPARATORS.split(line.strip().lstrip("#%").strip()) if f]


def _header_names(line: str, n_columns: int) -> list[str] | None:
    """The column names of a header line (a tab, comma or semicolon separates them if the line
    has one; else spaces, a bracketed unit staying with its name), or None if they are not
    ``n_columns`` names."""
    text = line.strip().lstrip("#%").strip()
    separator = next((s for s in ("\t", ",", ";") if s in text), None)
    if separator is not None:
        names = [n.strip() for n in text.split(separator) if n.strip()]
    else:
        names = []
        for token in text.split():
            if names and token[0] in "([{":
                names[-1] += " " + token
            else:
                names.append(token)
    return names if len(names) == n_columns and not _numbers(names) else None


def split_header(text: str, path) -> tuple[list[str] | None, list[str]]:
    """(column names or None, the lines from the first row of numbers on)."""
    lines = text.splitlines()
    for start, line in enumerate(lines):
        if line.lstrip().startswith(COMMENTS):
            continue
        fields = _fields(line)
        if _numbers(fields):
            before = [ln for ln in lines[:start] if ln.strip()]
            names = _header_names(before[-1], len(fields)) if before else None
            return names, lines[start:]
    first = next((ln.strip() for ln in lines if ln.strip()), "")
    raise file_error(path, "not a text spectrum: no row of two or more numbers"
                     + (f" (the first line reads {first[:70]!r})" if first else " (the file is empty)"))


def _table(path, lines: list[str], columns: tuple[int, ...]) -> np.ndarray:
    """(n, len(columns)) numbers of ``lines``; comments and blank lines skipped."""
    delimiter = "," if "," in lines[0] else ";" if ";" in lines[0] else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.loadtxt(io.StringIO("\n".join(lines)), delimiter=delimiter, usecols=columns,
                              comments=COMMENTS, ndmin=2, dtype=np.float64)
    except (ValueError, IndexError):
        pass  # mixed separators, text between the numbers: read line by line to say where
    rows = []
    for line in lines:
        fields = _fields(line)
        if not fields or line.lstrip().startswith(COMMENTS):
            continue
        try:
            rows.append([float(fields[c]) for c in columns])
        except (ValueError, IndexError):
            raise file_error(path, f"not a text spectrum: line {line.strip()[:60]!r} does not "
                             f"hold numbers in columns {', '.join(str(c + 1) for c in columns)}") from None
    return np.array(rows, dtype=np.float64).reshape(-1, len(columns))


def _columns_of(path, names: list[str] | None, meta: dict) -> tuple[dict, tuple[int, ...]]:
    """(choose_columns' answer, the indices of wave, flux and, if any, error columns)."""
    if names is None:
        return {"wave": None, "flux": None, "error": None, "wave_base": None, "name_unit": None}, (0, 1)
    chosen = choose_columns(names)
    if chosen["wave"] is None and chosen["flux"] is None:
        if any(n.lower().startswith(("wave", "lambda", "flux")) for n in names):
            raise missing_columns_error(path, names, "a text table")
        add_note(meta, path, f"the header names no known columns ({', '.join(names)}): the first "
                 f"two were read as wavelength and flux (known names: wavelength "
                 f"{', '.join(WAVE_COLUMNS)}; flux {', '.join(FLUX_COLUMNS)})")
        return {**chosen, "wave": None}, (0, 1)
    if chosen["wave"] is None or chosen["flux"] is None:
        raise missing_columns_error(path, names, "a text table")
    wanted = [chosen["wave"], chosen["flux"]] + ([chosen["error"]] if chosen["error"] else [])
    return chosen, tuple(names.index(n) for n in wanted)


def read_text_spectrum(path) -> Spectrum:
    """Read a text spectrum (see the module docstring) into air Å and flux, in increasing
    wavelength (rows repeating a wavelength, as at the seams of spliced spectra, averaged).
    A wavelength column named as vacuum (``wave_vac``) is converted to air; any other is air
    unless the caller says vacuum."""
    path = Path(path)
    meta = {}
    names, lines = split_header(read_text(path), path)
    chosen, columns = _columns_of(path, names, meta)
    table = _table(path, lines, columns)
    if len(table) < 2:
        raise file_error(path, "not a text spectrum: fewer than two rows of numbers")
    if chosen["wave"] is not None:
        meta["columns"] = {"wave": chosen["wave"], "flux": chosen["flux"], "error": chosen["error"]}
    wave = to_angstrom(path, table[:, 0], chosen, meta)
    if chosen["wave"] is not None and WAVE_COLUMNS[chosen["wave_base"]] == "vacuum":
        wave = vacuum_to_air(wave)
        meta["vacuum_source"] = f"column {chosen['wave']!r}"
    flux = table[:, 1]
    valid = np.isfinite(flux) & (flux != 0)
    if table.shape[1] > 2:
        valid &= np.isfinite(table[:, 2]) & (table[:, 2] >= 0)
    wave, flux, valid = in_wavelength_order(path, wave, flux, valid, meta)
    spectrum = Spectrum(wave=wave, flux=flux, mask=valid, kind="text", path=path, meta=meta)
    check_1d(spectrum)
    return spectrum

"""The unit of a file's wavelengths → Å: from what the file states (a unit keyword such as
``TUNITn``/``CUNIT1``, a unit in the column's name such as ``wave_A``, ``lambda(nm)``,
``wavelength [Angstrom]``), from a naming convention (``waveobs``: nm, as the Gaia benchmark
library and iSpec write it), or from the values themselves (with a note).

Optical spectra lie within :data:`OPTICAL_A` = 3000–11000 Å: values there are Å, values in
300–1100 are nm, values in 0.3–1.1 are µm. A stated unit whose values fall outside that
range for it is refused rather than guessed around.
"""

from __future__ import annotations

import re

import numpy as np

from .spectrum import add_note, file_error

ANGSTROM_NAMES = ("a", "aa", "å", "angstrom", "angstroms", "angstroem", "0.1 nm", "0.1nm")
NM_NAMES = ("nm", "nanometer", "nanometers", "nanometre", "nanometres")
UM_NAMES = ("um", "µm", "micron", "microns", "micrometer", "micrometers", "micrometre")
SCALE_TO_A = {**dict.fromkeys(ANGSTROM_NAMES, 1.0), **dict.fromkeys(NM_NAMES, 10.0),
              **dict.fromkeys(UM_NAMES, 1e4)}  # unit name → factor to Å
UNIT_LABELS = {1.0: "Å", 10.0: "nm", 1e4: "µm"}
OPTICAL_A = (3000.0, 11000.0)  # [Å] where the wavelengths of an optical spectrum lie
# a unit at the end of a column name, after a separator or in brackets: wave_A, lambda(nm),
# "wavelength [Angstrom]", WAVE-NM
NAME_UNIT = re.compile(r"^(?P<base>.*?[a-z])\s*(?:[\s_\-]+|[\s_\-]*[(\[{])\s*(?P<unit>[^()\[\]{}]+?)"
                       r"\s*[)\]}]?$", re.IGNORECASE)


def unit_scale(text) -> float | None:
    """Factor to Å of a unit's name (``"nm"`` → 10, ``"Angstrom"`` → 1, ``"um"`` → 1e4), or
    None for no unit or one that is not a length."""
    key = " ".join(str(text or "").strip().lower().split())
    return SCALE_TO_A.get(key)


def split_name(name: str) -> tuple[str, float | None]:
    """(base name in lower case, factor to Å of the unit the name states, or None):
    ``"wave_A"`` → ("wave", 1.0), ``"lambda(nm)"`` → ("lambda", 10.0), ``"flux"`` → ("flux",
    None), ``"wave_air"`` → ("wave_air", None)."""
    match = NAME_UNIT.match(name.strip())
    if match is not None and unit_scale(match["unit"]) is not None:
        return match["base"].strip().lower(), unit_scale(match["unit"])
    return name.strip().lower(), None


def scale_from_values(values) -> float | None:
    """Factor to Å that brings the median of ``values`` into :data:`OPTICAL_A`, or None."""
    values = np.asarray(values, dtype=np.float64).ravel()
    sample = values[:: max(1, values.size // 4096)]  # the order of magnitude is all it needs
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return None
    middle = float(np.median(sample))
    return next((scale for scale in UNIT_LABELS if OPTICAL_A[0] <= middle * scale <= OPTICAL_A[1]),
                None)


def _range_text(values) -> str:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    return f"{finite.min():.6g}–{finite.max():.6g}" if finite.size else "no finite values"


def wave_scale(values, meta: dict, path, *, stated: float | None = None, where: str = "",
               convention: float | None = None) -> float:
    """Factor that turns ``values`` into Å, recorded in ``meta["wave_unit"]`` and
    ``meta["wave_unit_source"]``.

    ``stated``: the factor the file states (``where`` says how: "TUNIT1 = 'nm'", "column name
    'wave_A'"); values that do not fit it raise SpectrumFileError. ``convention``: the factor a
    naming convention implies (``waveobs``: nm); values that fit another unit win, with a note.
    Otherwise the values decide: Å silently (the documented default), nm or µm with a note.
    """
    from_values = scale_from_values(values)
    if stated is not None:
        if from_values not in (None, stated):
            raise file_error(path, f"the wavelengths are said to be in {UNIT_LABELS[stated]} "
                             f"({where}) but their values ({_range_text(values)}) are those of "
                             f"an optical spectrum in {UNIT_LABELS[from_values]}")
        meta.update(wave_unit=UNIT_LABELS[stated], wave_unit_source=where)
        return stated
    if from_values is None:
        raise file_error(path, f"wavelengths {_range_text(values)}{' (' + where + ')' if where else ''}"
                         f" are in no known unit: an optical spectrum lies in "
                         f"{OPTICAL_A[0]:.0f}–{OPTICAL_A[1]:.0f} Å (300–1100 nm)")
    unit = UNIT_LABELS[from_values]
    if convention is not None and from_values == convention:
        meta.update(wave_unit=unit, wave_unit_source=f"{where} (the convention: {unit})")
        return from_values
    meta.update(wave_unit=unit, wave_unit_source="values")
    if convention is not None or from_values != 1.0:
        reason = (f"{where} usually holds {UNIT_LABELS[convention]}, but " if convention else
                  "no unit stated; ")
        add_note(meta, path, f"{reason}the wavelengths ({_range_text(values)}) were read as {unit}")
    return from_values

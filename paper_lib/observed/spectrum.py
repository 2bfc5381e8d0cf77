"""An observed spectrum as read from a file, and the error every problem with a file raises."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# What a user can give to get past an error, and how the readers' keyword arguments spell it;
# the callers above name them in their own terms (paper_lib.predict: PREDICT_OPTIONS, the
# command line: cli.CLI_OPTIONS) through SpectrumFileError.text.
FIXES = {
    "rv": "if the radial velocity is known, pass it: {option}",
    "wave": "pass the wavelength frame (the _wave_A file of the same night): {option}",
    "blaze": "pass the blaze frame (the _blaze_A file of the same night): {option}",
}
READER_OPTIONS = {"rv": "rv_kms=<km/s>", "wave": "wave_path=<file>", "blaze": "blaze_path=<file>"}


class SpectrumFileError(ValueError):
    """A spectrum file that cannot be used; the message names the file, the problem and, where
    the user can supply what is missing, the fix (``fix``: a key of :data:`FIXES`)."""

    def __init__(self, path, problem: str, fix: str | None = None):
        self.path, self.problem, self.fix = path, problem, fix
        super().__init__(self.text())

    def text(self, options: dict | None = None) -> str:
        """The message, naming the fix with ``options`` ({fix key: how the caller spells the
        option}; default :data:`READER_OPTIONS`, the keyword arguments of the readers)."""
        where = self.path if self.path is not None else "<spectrum in memory>"
        message = f"{where}: {self.problem}"
        if self.fix is not None:
            option = (options or READER_OPTIONS)[self.fix]
            message += "; " + FIXES[self.fix].format(option=option)
        return message

    def __reduce__(self):  # picklable despite the extra arguments
        return type(self), (self.path, self.problem, self.fix)


def file_error(path, problem: str, fix: str | None = None) -> SpectrumFileError:
    """A :class:`SpectrumFileError` whose message starts with the file (or "<spectrum in memory>")
    and ends with the fix (``fix``: a key of :data:`FIXES`, or None)."""
    return SpectrumFileError(path, problem, fix)


class SpectrumNote(UserWarning):
    """A choice a reader made that the file did not state (e.g. wavelengths taken as nm from
    their values): shown as a warning, and kept in ``Spectrum.meta["notes"]``."""


def add_note(meta: dict, path, text: str) -> None:
    """Record ``text`` in ``meta["notes"]`` and warn with it (a :class:`SpectrumNote` whose
    message starts with the file, so that each file's note is shown)."""
    meta.setdefault("notes", []).append(text)
    where = path if path is not None else "<spectrum in memory>"
    warnings.warn(f"{where}: {text}", SpectrumNote, stacklevel=3)


@dataclass
class Spectrum:
    """An observed spectrum as read from a file.

    Attributes
    ----------
    wave : float64 array, (n,) for 1D spectra or (n_orders, 4096) for e2ds/s2d
        Air wavelengths [Å], in the frame of the file (observatory or barycentric).
    flux : float64 array, same shape
        Flux in the file's units; blaze-corrected for e2ds/s2d.
    mask : bool array, same shape
        True where the pixel holds valid data (finite, non-zero, good quality flag).
    kind : "e2ds", "s2d", "orders" (échelle orders of any instrument), "s1d" or "text"
    path : Path of the file (None for spectra built in memory)
    meta : dict – header facts (object, date, ``instrument`` "HARPS"/"HARPS-N", ``berv_kms``),
        ``frame`` of the wavelengths ("observatory" or "barycentric"), the rows that match the
        8 training orders (e2ds/s2d), where the wavelengths and blaze came from. A spectrum
        built in memory may set ``instrument``, ``frame`` and ``berv_kms`` itself, so that
        its instrument's CCD gap is masked (:mod:`paper_lib.observed.pixels`). ``wave_unit``
        and ``wave_unit_source`` say what the file's wavelengths were in and how that was known;
        ``notes`` lists the choices a reader made that the file did not state
        (:func:`add_note`).
    """

    wave: np.ndarray
    flux: np.ndarray
    mask: np.ndarray
    kind: str
    path: Path | None = None
    meta: dict = field(default_factory=dict)

    @property
    def is_echelle(self) -> bool:
        """True for order-by-order (2D) spectra."""
        return self.wave.ndim == 2

"""An observed spectrum as read from a file, and the error every problem with a file raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

class SpectrumFileError(ValueError):
    """A spectrum file that cannot be used; the message names the file and the problem."""


def file_error(path, problem: str) -> SpectrumFileError:
    """A :class:`SpectrumFileError` whose message starts with the file (or "<spectrum in memory>")."""
    return SpectrumFileError(f"{path if path is not None else '<spectrum in memory>'}: {problem}")


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
    kind : "e2ds", "s2d", "s1d" or "text"
    path : Path of the file (None for spectra built in memory)
    meta : dict – header facts (object, date, BERV [km/s]), the rows that match the 8
        training orders (e2ds/s2d), where the wavelengths and blaze came from.
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

"""Stage 6 — predictions in physical units: what users, the command line and the notebooks call.

* ``paper_lib.predict(paths_or_spectra, model=..., rv=None)`` (this package is callable; it
  calls :func:`predict_table`) – real spectrum files, folders, globs or
  :class:`~paper_lib.observed.spectrum.Spectrum` objects → a pandas table, one row per file:
  the four labels with σ (and their correlations for full-covariance models), the radial
  velocity, the estimated SNR, the gap fraction, the out-of-distribution score, quality
  ``flags`` and, for a file that could not be used, its ``error``. Needs only the repository:
  the weights in ``models/<profile>/``, the radial-velocity template in ``paper_lib/data/``.
* :func:`predict_rows` – the same as a list of dicts (what the command line writes);
* ``refine=True`` (``--refine``) fits every star by least squares from the network's answer:
  on the shipped spectrum emulator (:mod:`~paper_lib.predict.fit`), or on a grid given as
  ``grid`` (:mod:`~paper_lib.predict.refine`); :data:`FIT_BY_DEFAULT` (off) is the default;
* :func:`predict` – a trained regressor on échelle images (N, 8, 4096) → mean, σ and
  covariance of (Teff [K], log g [dex], [M/H] [dex], v sin i [km/s]).

Modules: :mod:`~paper_lib.predict.images` (networks on images), :mod:`~.predictor` (a loaded
regressor with its DAE and OOD calibration), :mod:`~.inputs` (files → prepared inputs),
:mod:`~.rows` (one row per input), :mod:`~.flags` (the quality flags and their thresholds),
:mod:`~.formatting` (JSON, CSV and the command line's table).

The networks themselves work on scaled labels; :func:`paper_lib.training.loop.predict_scaled`
gives their raw output (and a DAE's denoised spectra).
"""

from __future__ import annotations

import sys
import types

from .fit import FIT_BY_DEFAULT
from .images import BATCH_SIZE, predict
from .inputs import expand_inputs
from .predictor import DEFAULT_MODEL, DEFAULT_PROFILE, Predictor
from .rows import predict_rows, predict_table

__all__ = ["BATCH_SIZE", "DEFAULT_MODEL", "DEFAULT_PROFILE", "FIT_BY_DEFAULT", "Predictor",
           "expand_inputs",
           "predict", "predict_rows", "predict_table"]


class _CallableModule(types.ModuleType):
    """Makes ``paper_lib.predict(...)`` call :func:`predict_table`."""

    def __call__(self, inputs, model=DEFAULT_MODEL, *, rv=None, **options):
        return predict_table(inputs, model, rv=rv, **options)


sys.modules[__name__].__class__ = _CallableModule

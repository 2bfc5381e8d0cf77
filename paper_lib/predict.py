"""Predictions in physical units — what users, the command line and the notebooks call.

* ``paper_lib.predict(paths_or_spectra, model=..., rv=None)`` (this module is callable; it
  calls :func:`predict_table`) – real spectrum files, folders, globs or
  :class:`~paper_lib.observed.spectrum.Spectrum` objects → a pandas table, one row per file:
  the four labels with σ (and their correlations for full-covariance models), the radial
  velocity, the estimated SNR, the gap fraction, the out-of-distribution score, quality
  ``flags`` and, for a file that could not be used, its ``error``. Needs only the repository:
  the weights in ``models/<profile>/``, the radial-velocity template in ``paper_lib/data/``.
* :func:`predict_rows` – the same as a list of dicts (what the command line writes);
* :func:`predict` – a trained regressor on échelle images (N, 8, 4096) → mean, σ and
  covariance of (Teff [K], log g [dex], [M/H] [dex], v sin i [km/s]).

The networks themselves work on scaled labels; :func:`paper_lib.training.loop.predict_scaled`
gives their raw output (and a DAE's denoised spectra). Quality flags: :mod:`paper_lib.flags`.
"""

from __future__ import annotations

import glob
import re
import sys
import types
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .labels import LABEL_NAMES, to_physical
from .models.gaussian import GaussianOutput
from .profiles import REAL_VARIANT
from .training.loop import predict_scaled

DEFAULT_MODEL = REAL_VARIANT  # the variant `predict` uses unless told otherwise: made for real spectra
DEFAULT_PROFILE = "cpu"  # whose committed weights (models/<profile>/)
BATCH_SIZE = 32  # spectra per network call (and per chunk of files read ahead)
# companion calibration frames that a folder of DRS products holds beside the spectra
CALIBRATION_FILE_NAMES = re.compile(r"_(wave|blaze)_[AB]\.|WAVE_MATRIX|_BLAZE_", re.IGNORECASE)


def predict(model, spectra, *, batch_size: int = BATCH_SIZE, device=None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run a trained regressor on spectra and return its Gaussian in physical units.

    ``spectra``: (N, 8, 4096) continuum-normalised images (tensor or array), run in chunks of
    ``batch_size`` in eval mode without gradients (the model's train/eval mode is restored);
    ``device`` None keeps the model where it is. Returns ``(mean (N, 4), sigma (N, 4),
    cov (N, 4, 4))`` in K, dex, dex, km/s (see :func:`paper_lib.labels.to_physical`).
    """
    out = predict_scaled(model, spectra, batch_size=batch_size, device=device)
    if not isinstance(out, GaussianOutput):
        raise TypeError("predict() needs a regressor (a model returning a GaussianOutput); a DAE "
                        "returns spectra: use paper_lib.training.loop.predict_scaled")
    return to_physical(out.mean.double().numpy(), out.scale_tril.double().numpy())


@dataclass
class Predictor:
    """A trained regressor with what its answers need: the profile's DAE and OOD calibration
    (for the out-of-distribution score) and the label box it was trained on."""

    name: str
    model: torch.nn.Module
    covariance: str
    dae: torch.nn.Module | None
    calibration: object  # paper_lib.observed.quality.OODCalibration or None
    bounds: np.ndarray  # (4, 2) physical label range of the training data

    @classmethod
    def load(cls, model: str = DEFAULT_MODEL, profile=DEFAULT_PROFILE, models_dir=None
             ) -> "Predictor":
        """The variant ``model`` of ``profile`` from ``models_dir`` (default models/<profile>/)."""
        from . import paths
        from .flags import training_bounds
        from .observed.quality import OODCalibration
        from .profiles import get_profile
        from .training.checkpoints import load_model, load_variant_file
        from .training.variants import parse_variant

        profile = get_profile(profile)
        variant = parse_variant(model)
        if variant.network == "dae":
            raise ValueError("'dae' is the denoising auto-encoder: it returns spectra, not labels; "
                             f"choose a regressor, e.g. --model {DEFAULT_MODEL}")
        folder = Path(models_dir or paths.models / profile.name)  # experiments.models_dir
        regressor = load_variant_file(folder, model, profile.name)
        dae_path = folder / "dae.pt"
        dae = load_model(dae_path).eval() if dae_path.exists() else None
        calibration = OODCalibration.load(folder, dae_path) if dae is not None else None
        return cls(model, regressor, variant.covariance, dae, calibration,
                   training_bounds(profile, limited=variant.limited))


def expand_inputs(items) -> list:
    """Files, folders (their spectrum files, sorted, without the DRS wave and blaze frames) and
    glob patterns → a flat list of inputs; Spectrum objects pass through. A pattern that
    matches nothing stays, to fail on its own."""
    from .observed.read import FITS_SUFFIXES, TEXT_SUFFIXES
    from .observed.spectrum import Spectrum

    if isinstance(items, (str, Path, Spectrum)):
        items = [items]
    out = []
    for item in items:
        if isinstance(item, Spectrum):
            out.append(item)
        elif Path(item).is_dir():
            out += sorted(p for p in Path(item).iterdir() if p.is_file()
                          and p.name.lower().endswith(FITS_SUFFIXES + TEXT_SUFFIXES)
                          and not CALIBRATION_FILE_NAMES.search(p.name))
        elif not Path(item).exists() and glob.has_magic(str(item)):
            out += sorted(Path(p) for p in glob.glob(str(item))) or [Path(item)]
        else:
            out.append(Path(item))
    return out


def _per_input(value, items: list, what: str) -> list:
    """A scalar, a sequence (one per input) or a {path or name: value} dict → one per input."""
    if value is None or np.isscalar(value):
        return [value] * len(items)
    if isinstance(value, dict):
        names = [_name(i) for i in items]
        return [value.get(n, value.get(Path(n).name)) for n in names]
    value = list(value)
    if len(value) != len(items):
        raise ValueError(f"{what} has {len(value)} values for {len(items)} spectra")
    return value


def _name(item) -> str:
    """The file of an input, for messages and the table's ``file`` column."""
    if hasattr(item, "path"):
        return str(item.path) if item.path is not None else "<spectrum in memory>"
    return str(item)


def _prepare(item, rv, vacuum):
    """ModelInput of one input (a path or a Spectrum); raises on a bad file."""
    from .observed.model_input import to_model_input
    from .observed.read import read_spectrum
    from .observed.spectrum import Spectrum

    spectrum = item if isinstance(item, Spectrum) else read_spectrum(item, vacuum=vacuum)
    return to_model_input(spectrum, rv_kms=None if rv is None else float(rv))


def _prepared_chunks(items, rvs, vacuum, workers: int, progress: bool, size: int):
    """Yield lists of ``size`` prepared inputs (a ModelInput or the exception), in order, while
    threads go on preparing the next ones (reading and resampling overlap the networks)."""
    from tqdm.auto import tqdm

    def one(args):
        try:
            return _prepare(*args, vacuum)
        except (ValueError, OSError) as error:  # a bad file: its message names it
            return error
        except Exception as error:  # anything else still fails this file alone, named
            return RuntimeError(f"{_name(args[0])}: {type(error).__name__}: {error}")

    with (ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
          tqdm(total=len(items), desc="predict", unit="file", disable=not progress) as bar):
        futures = [pool.submit(one, args) for args in zip(items, rvs)]
        for future in futures:
            future.add_done_callback(lambda _: bar.update())
        for start in range(0, len(futures), size):
            yield [future.result() for future in futures[start:start + size]]


def _label_rows(predictor: Predictor, inputs: list, batch_size: int) -> list[dict]:
    """Labels, σ, correlations, SNR, OOD score and flags of prepared inputs, batched."""
    from .flags import quality_flags
    from .observed.quality import estimate_snr, residual_excess

    rows = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start:start + batch_size]
        images = np.stack([inp.image for inp in chunk])
        masks = np.stack([inp.mask for inp in chunk])
        mean, sigma, cov = predict(predictor.model, torch.as_tensor(images), batch_size=batch_size)
        excess, snr = (residual_excess(predictor.dae, images, masks, batch_size=batch_size)
                       if predictor.dae is not None
                       else (np.full(len(chunk), np.nan), estimate_snr(images, masks)))
        score = (predictor.calibration.score(excess, snr) if predictor.calibration is not None
                 else np.full(len(chunk), np.nan))
        for k, inp in enumerate(chunk):
            row = {"file": _name(inp), "kind": inp.kind}
            for i, name in enumerate(LABEL_NAMES):
                row[name], row[f"{name}_sigma"] = float(mean[k, i]), float(sigma[k, i])
            if predictor.covariance == "full":
                corr = cov[k] / np.outer(sigma[k], sigma[k])
                for i in range(4):
                    for j in range(i + 1, 4):
                        row[f"corr_{LABEL_NAMES[i]}_{LABEL_NAMES[j]}"] = float(corr[i, j])
            row.update(rv_kms=inp.rv_kms, rv_source=inp.meta.get("rv_source"),
                       rv_significance=inp.velocity.significance if inp.velocity else None,
                       snr=float(snr[k]), gap_fraction=inp.gap_fraction,
                       ood_score=float(score[k]), model=predictor.name)
            row["flags"] = quality_flags(row, inp, predictor)
            row["error"] = None
            rows.append(row)
    return rows


def predict_rows(inputs, model=DEFAULT_MODEL, *, rv=None, profile=DEFAULT_PROFILE,
                 models_dir=None, vacuum: bool | None = None, batch_size: int = BATCH_SIZE,
                 workers: int = 2, progress: bool | None = None) -> list[dict]:
    """One dict per input, in order (see the module docstring); failures hold only ``file``
    and ``error``, so one bad file never costs the others their results.

    ``model``: a variant name of ``profile``, or a :class:`Predictor`. ``rv`` [km/s]: None
    (measure it), one value for all, one per input, or {path or file name: value}.
    ``vacuum``: True if the wavelengths are in vacuum, None to take it from the header.
    ``progress`` None: a bar from 10 inputs on.
    """
    predictor = model if isinstance(model, Predictor) else Predictor.load(model, profile, models_dir)
    items = expand_inputs(inputs)
    if not items:
        raise ValueError("no spectra given")
    rvs = _per_input(rv, items, "rv")
    progress = progress if progress is not None else len(items) >= 10
    rows = []
    for chunk in _prepared_chunks(items, rvs, vacuum, workers, progress, batch_size):
        good = [inp for inp in chunk if not isinstance(inp, Exception)]
        labelled = iter(_label_rows(predictor, good, batch_size) if good else ())
        rows += [next(labelled) if not isinstance(inp, Exception)
                 else {"file": _name(item), "error": str(inp)}
                 for item, inp in zip(items[len(rows):], chunk)]
    return rows


def predict_table(inputs, model=DEFAULT_MODEL, *, rv=None, **options):
    """:func:`predict_rows` as a pandas DataFrame (one row per input; ``error`` is None for the
    files that worked, ``flags`` a list of flag names, empty when all is well)."""
    import pandas as pd

    return pd.DataFrame(predict_rows(inputs, model, rv=rv, **options))


class _CallableModule(types.ModuleType):
    """Makes ``paper_lib.predict(...)`` call :func:`predict_table`."""

    def __call__(self, inputs, model=DEFAULT_MODEL, *, rv=None, **options):
        return predict_table(inputs, model, rv=rv, **options)


sys.modules[__name__].__class__ = _CallableModule

"""Real spectra → one row per input: labels ± σ, radial velocity, quality and flags.

Every row has the same columns, whether its input worked or not (:func:`empty_row`): a failed
input keeps NaN labels and its ``error``, so a table of any batch can be indexed alike.
"""

from __future__ import annotations

import numpy as np
import torch

from ..labels import LABEL_NAMES
from .images import BATCH_SIZE, predict
from .inputs import (PREDICT_OPTIONS, error_text, expand_inputs, input_name, per_input,
                     prepared_chunks)
from .predictor import DEFAULT_MODEL, DEFAULT_PROFILE, Predictor

QUALITY_COLUMNS = ("rv_kms", "rv_source", "rv_significance", "snr", "gap_fraction",
                   "bad_pixel_fraction", "ood_score")  # after the labels, in this order


def correlation_columns(predictor: Predictor) -> list[str]:
    """``corr_<a>_<b>`` for every pair of labels of a full-covariance model, else none."""
    if predictor.covariance != "full":
        return []
    return [f"corr_{LABEL_NAMES[i]}_{LABEL_NAMES[j]}" for i in range(4) for j in range(i + 1, 4)]


def empty_row(predictor: Predictor, file: str) -> dict:
    """A row with every column: NaN numbers, None texts, no flags, no error."""
    row = {"file": file, "kind": None}
    for name in LABEL_NAMES:
        row[name] = row[f"{name}_sigma"] = float("nan")
    row.update(dict.fromkeys(correlation_columns(predictor), float("nan")))
    row.update(dict.fromkeys(QUALITY_COLUMNS, float("nan")), rv_source=None, rv_significance=None)
    row.update(model=predictor.name, flags=[], error=None)
    return row


def label_rows(predictor: Predictor, inputs: list, batch_size: int) -> list[dict]:
    """Labels, σ, correlations, SNR, OOD score and flags of prepared inputs, batched."""
    from ..observed.quality import estimate_snr, residual_excess
    from .flags import quality_flags

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
            row = empty_row(predictor, input_name(inp))
            row["kind"] = inp.kind
            for i, name in enumerate(LABEL_NAMES):
                row[name], row[f"{name}_sigma"] = float(mean[k, i]), float(sigma[k, i])
            corr = cov[k] / np.outer(sigma[k], sigma[k])
            for column in correlation_columns(predictor):
                a, b = column[5:].split("_")
                row[column] = float(corr[LABEL_NAMES.index(a), LABEL_NAMES.index(b)])
            row.update(rv_kms=inp.rv_kms, rv_source=inp.meta.get("rv_source"),
                       rv_significance=inp.velocity.significance if inp.velocity else None,
                       snr=float(snr[k]), gap_fraction=inp.gap_fraction,
                       bad_pixel_fraction=inp.bad_pixel_fraction, ood_score=float(score[k]))
            row["flags"] = quality_flags(row, inp, predictor)
            rows.append(row)
    return rows


def predict_rows(inputs, model=DEFAULT_MODEL, *, rv=None, wave_path=None, blaze_path=None,
                 profile=DEFAULT_PROFILE, models_dir=None, vacuum: bool | None = None,
                 batch_size: int = BATCH_SIZE, workers: int = 2, progress: bool | None = None,
                 options: dict | None = None) -> list[dict]:
    """One dict per input, in order (see :mod:`paper_lib.predict`), all with the same keys; a
    failed input has NaN labels and its ``error``, so one bad file never costs the others
    their results.

    ``model``: a variant name of ``profile``, or a :class:`Predictor`. ``rv`` [km/s]: None
    (measure it), one value for all, one per input, or {path or file name: value};
    ``wave_path``, ``blaze_path``: the wave and blaze frames of e2ds inputs whose header does
    not give them (same forms). ``vacuum``: True if the wavelengths are in vacuum, None to
    take it from the header. ``progress`` None: a bar from 10 inputs on. ``options``: how
    error messages name the fix (default :data:`~paper_lib.predict.inputs.PREDICT_OPTIONS`,
    these keyword arguments; the command line passes its options).
    """
    predictor = model if isinstance(model, Predictor) else Predictor.load(model, profile, models_dir)
    items = expand_inputs(inputs)
    if not items:
        raise ValueError("no spectra given")
    per_item = list(zip(per_input(rv, items, "rv"), per_input(wave_path, items, "wave_path"),
                        per_input(blaze_path, items, "blaze_path")))
    progress = progress if progress is not None else len(items) >= 10
    rows = []
    for chunk in prepared_chunks(items, per_item, vacuum, workers, progress, batch_size):
        good = [inp for inp in chunk if not isinstance(inp, Exception)]
        labelled = iter(label_rows(predictor, good, batch_size) if good else ())
        for item, inp in zip(items[len(rows):], chunk):
            if isinstance(inp, Exception):
                failed = empty_row(predictor, input_name(item))
                failed["error"] = error_text(inp, options or PREDICT_OPTIONS)
                rows.append(failed)
            else:
                rows.append(next(labelled))
    return rows


def predict_table(inputs, model=DEFAULT_MODEL, *, rv=None, **options):
    """:func:`predict_rows` as a pandas DataFrame (one row per input, always the same columns;
    ``error`` is None for the files that worked, ``flags`` a list of flag names, empty when all
    is well)."""
    import pandas as pd

    return pd.DataFrame(predict_rows(inputs, model, rv=rv, **options))

"""Real spectra → one row per input: labels ± σ, radial velocity, quality and flags."""

from __future__ import annotations

import numpy as np
import torch

from ..labels import LABEL_NAMES
from .images import BATCH_SIZE, predict
from .inputs import expand_inputs, input_name, per_input, prepared_chunks
from .predictor import DEFAULT_MODEL, DEFAULT_PROFILE, Predictor


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
            row = {"file": input_name(inp), "kind": inp.kind}
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
    """One dict per input, in order (see :mod:`paper_lib.predict`); failures hold only ``file``
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
    rvs = per_input(rv, items, "rv")
    progress = progress if progress is not None else len(items) >= 10
    rows = []
    for chunk in prepared_chunks(items, rvs, vacuum, workers, progress, batch_size):
        good = [inp for inp in chunk if not isinstance(inp, Exception)]
        labelled = iter(label_rows(predictor, good, batch_size) if good else ())
        rows += [next(labelled) if not isinstance(inp, Exception)
                 else {"file": input_name(item), "error": str(inp)}
                 for item, inp in zip(items[len(rows):], chunk)]
    return rows


def predict_table(inputs, model=DEFAULT_MODEL, *, rv=None, **options):
    """:func:`predict_rows` as a pandas DataFrame (one row per input; ``error`` is None for the
    files that worked, ``flags`` a list of flag names, empty when all is well)."""
    import pandas as pd

    return pd.DataFrame(predict_rows(inputs, model, rv=rv, **options))

"""Predictions in physical units — what users, the command line and the notebooks call.

* :func:`predict` – a trained regressor on échelle images (N, 8, 4096) → mean, σ and
  covariance of (Teff [K], log g [dex], [M/H] [dex], v sin i [km/s]);
* :func:`predict_files` – real spectrum files (HARPS-N/HARPS e2ds, s1d, text) → the same, via
  :func:`paper_lib.observed.model_input.to_model_input`.

The networks themselves work on scaled labels; :func:`paper_lib.training.loop.predict_scaled`
gives their raw output (and a DAE's denoised spectra).
"""

from __future__ import annotations

import numpy as np
import torch

from .labels import to_physical
from .models.gaussian import GaussianOutput
from .observed.model_input import to_model_input
from .observed.read import read_spectrum
from .training.loop import predict_scaled


def predict(model, spectra, *, batch_size: int = 64, device=None
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


def predict_files(files, model, template, *, progress: bool = False) -> list[dict]:
    """Read real spectra, bring them to the model input and predict; one dict per file.

    ``template``: the grid whose solar-like node measures the radial velocity (see
    :func:`~paper_lib.observed.model_input.to_model_input`). Each dict: path, kind, rv_kms,
    gap_fraction, mean (4,), sigma (4,), correlation (4, 4) in physical units, and the
    ModelInput itself (``input``).
    """
    from tqdm.auto import tqdm

    out = []
    for path in tqdm(list(files), desc="predict", unit="file", disable=not progress):
        inp = to_model_input(read_spectrum(path), template=template)
        mean, sigma, cov = predict(model, torch.as_tensor(inp.image[None]))
        corr = cov[0] / np.outer(sigma[0], sigma[0])
        out.append({"path": str(path), "kind": inp.kind, "rv_kms": inp.rv_kms,
                    "gap_fraction": inp.gap_fraction, "mean": mean[0], "sigma": sigma[0],
                    "correlation": corr, "input": inp})
    return out

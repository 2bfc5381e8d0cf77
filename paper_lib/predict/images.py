"""Networks on échelle images → the Gaussian over the four labels in physical units."""

from __future__ import annotations

import numpy as np

from ..labels import to_physical
from ..models.gaussian import GaussianOutput
from ..training.loop import predict_scaled

BATCH_SIZE = 32  # spectra per network call (and per chunk of files read ahead)


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

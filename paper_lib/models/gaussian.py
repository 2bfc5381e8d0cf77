"""The output side every regressor shares: a Gaussian over the 4 scaled labels, and its layer.

The covariance is always carried as its lower-triangular Cholesky factor ``L`` (``Σ = L Lᵀ``)
with a positive diagonal: diagonal for ``covariance="diagonal"``, with free off-diagonal
entries for ``covariance="full"`` (see :mod:`paper_lib.losses` for the likelihoods).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..labels import N_LABELS

COVARIANCES = ("diagonal", "full")


class GaussianOutput(NamedTuple):
    """A batch of Gaussians over the scaled labels.

    mean: (B, 4) means, scaled labels (dimensionless, ~[0, 1]).
    scale_tril: (B, 4, 4) lower-triangular Cholesky factor of the covariance, positive diagonal.
    """

    mean: Tensor
    scale_tril: Tensor

    @property
    def covariance(self) -> Tensor:
        """(B, 4, 4) covariance ``L Lᵀ`` in scaled-label units squared."""
        return self.scale_tril @ self.scale_tril.transpose(-1, -2)

    @property
    def sigma(self) -> Tensor:
        """(B, 4) marginal standard deviations ``sqrt(diag(Σ))`` (row norms of ``L``)."""
        return self.scale_tril.square().sum(dim=-1).sqrt()

    def detach(self) -> GaussianOutput:
        return GaussianOutput(self.mean.detach(), self.scale_tril.detach())

    def to(self, *args, **kwargs) -> GaussianOutput:
        return GaussianOutput(self.mean.to(*args, **kwargs), self.scale_tril.to(*args, **kwargs))


class GaussianHead(nn.Module):
    """Linear layer from features to a :class:`GaussianOutput` over ``n_labels`` labels.

    features: (B, in_features) → mean (B, n), scale_tril (B, n, n).
    The Cholesky diagonal is ``softplus(raw) + min_scale`` (``min_scale`` in scaled-label units;
    1e-3 is 6 K in T_eff, 0.03 km/s in v sin i), so it is positive and bounded away from zero.
    ``covariance="full"`` adds n(n−1)/2 free entries below the diagonal. The final layer runs in
    float32 with autocast disabled, so the likelihood never sees bfloat16 rounding.
    At initialisation the means sit near 0.5 (the centre of the label box) and σ near 0.1.
    """

    def __init__(
        self,
        *,
        in_features: int,
        n_labels: int = N_LABELS,
        covariance: str = "diagonal",
        min_scale: float = 1e-3,
        init_scale: float = 0.1,
    ) -> None:
        super().__init__()
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        if not init_scale > min_scale > 0:
            raise ValueError("need init_scale > min_scale > 0")
        self.n_labels = n_labels
        self.covariance = covariance
        self.min_scale = float(min_scale)
        n_off = n_labels * (n_labels - 1) // 2 if covariance == "full" else 0
        self.linear = nn.Linear(in_features, 2 * n_labels + n_off)
        self.register_buffer("tril_index", torch.tril_indices(n_labels, n_labels, offset=-1), persistent=False)
        with torch.no_grad():  # small weights, means at 0.5, σ at init_scale
            self.linear.weight.mul_(0.1)
            self.linear.bias.zero_()
            self.linear.bias[:n_labels] = 0.5
            self.linear.bias[n_labels : 2 * n_labels] = _inverse_softplus(init_scale - min_scale)

    def forward(self, features: Tensor) -> GaussianOutput:
        n = self.n_labels
        with torch.autocast(device_type=features.device.type, enabled=False):
            raw = self.linear(features.float())
        mean = raw[:, :n]
        diag = F.softplus(raw[:, n : 2 * n]) + self.min_scale
        scale_tril = torch.diag_embed(diag)
        if self.covariance == "full":
            off = torch.zeros_like(scale_tril)
            off[:, self.tril_index[0], self.tril_index[1]] = raw[:, 2 * n :]
            scale_tril = scale_tril + off
        return GaussianOutput(mean, scale_tril)


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))

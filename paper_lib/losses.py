"""Gaussian likelihoods for the 4 stellar labels, the DAE reconstruction loss (paper Eq. 2 and 4).

The regressors predict a Gaussian :math:`\\mathcal N(\\mu, \\Sigma)` over the 4 labels
(T_eff, log g, [M/H], v sin i), each scaled to [0, 1]. The covariance is always carried as its
lower-triangular Cholesky factor ``L`` (``Σ = L Lᵀ``) with a positive diagonal:

* ``covariance="diagonal"``: ``L`` is diagonal, ``L_ii = σ_i``;
* ``covariance="full"``: ``L`` is lower-triangular with free off-diagonal entries.

The negative log-likelihood then needs no matrix inverse and no determinant:
``log|Σ| = 2 Σ_i log L_ii`` and ``(y-μ)ᵀ Σ⁻¹ (y-μ) = ‖L⁻¹(y-μ)‖²`` with one triangular solve.

This module also holds what the three networks share with the losses: the output type
:class:`GaussianOutput`, the output layer :class:`GaussianHead` that produces it, and the input
checks :func:`check_spectra` / :func:`check_labels`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

N_LABELS = 4
N_ORDERS = 8
N_PIXELS = 4096
COVARIANCES = ("diagonal", "full")
LOG_2PI = math.log(2.0 * math.pi)


# output type


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


# validation


def check_spectra(x: Tensor, name: str = "spectra") -> Tensor:
    """Check a batch of échelle images and return it as float32.

    x: (B, 8, 4096) continuum-normalised flux (8 HARPS-N orders × 4096 pixels).
    Raises ValueError on a wrong shape, a non-floating dtype or NaN/inf values.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, {N_ORDERS}, {N_PIXELS}), got {type(x).__name__}")
    if x.ndim != 3 or tuple(x.shape[1:]) != (N_ORDERS, N_PIXELS) or x.shape[0] == 0:
        raise ValueError(
            f"{name} must have shape (batch, {N_ORDERS}, {N_PIXELS}) "
            f"({N_ORDERS} échelle orders × {N_PIXELS} pixels, batch ≥ 1), got {tuple(x.shape)}"
        )
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} must be a floating-point tensor (float32), got dtype {x.dtype}")
    if not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contain {n_bad} NaN or infinite values; expected finite flux of shape (batch, {N_ORDERS}, {N_PIXELS})")
    return x if x.dtype == torch.float32 else x.float()


def check_labels(y: Tensor, batch: int | None = None, name: str = "labels") -> Tensor:
    """Check scaled labels y: (B, 4) finite floats; ``batch`` is the expected B, if known."""
    if not isinstance(y, Tensor) or y.ndim != 2 or y.shape[1] != N_LABELS:
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"{name} must be a tensor of shape (batch, {N_LABELS}), got {shape}")
    if batch is not None and y.shape[0] != batch:
        raise ValueError(f"{name} have batch size {y.shape[0]} but the predictions have {batch}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError(f"{name} contain NaN or infinite values")
    return y


# losses


def diagonal_gaussian_nll(
    mean: Tensor,
    target: Tensor,
    *,
    log_var: Tensor | None = None,
    scale: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """NLL of ``target`` under independent Gaussians, per sample summed over the 4 labels.

    mean, target: (B, D). Give exactly one of log_var (B, D) (log σ²) or scale (B, D) (σ > 0).
    Returns the per-sample NLL (B,) for ``reduction="none"``, else its mean or sum, in nats,
    including the constant ``D/2 log 2π`` (so it equals ``-MultivariateNormal.log_prob``).
    """
    if (log_var is None) == (scale is None):
        raise ValueError("give exactly one of log_var or scale")
    check_labels(target, mean.shape[0], name="target")
    if log_var is None:
        log_var = 2.0 * torch.log(scale)
    z2 = (target - mean).square() * torch.exp(-log_var)
    nll = 0.5 * (LOG_2PI + log_var + z2).sum(dim=-1)
    return _reduce(nll, reduction)


def full_gaussian_nll(mean: Tensor, scale_tril: Tensor, target: Tensor, *, reduction: str = "mean") -> Tensor:
    """NLL of ``target`` under ``N(mean, L Lᵀ)`` (paper Eq. 2, per sample).

    mean, target: (B, D); scale_tril: (B, D, D) lower-triangular with positive diagonal (only the
    lower triangle is read). ``log|Σ| = 2 Σ log L_ii`` and the Mahalanobis term comes from one
    triangular solve ``L z = y - μ`` — no inverse, no determinant. Units: nats, with the
    ``D/2 log 2π`` constant. Returns (B,) for ``reduction="none"``, else the mean or sum.
    """
    check_labels(target, mean.shape[0], name="target")
    if scale_tril.shape != (*mean.shape, mean.shape[-1]):
        raise ValueError(f"scale_tril must have shape {(*mean.shape, mean.shape[-1])}, got {tuple(scale_tril.shape)}")
    diff = (target - mean).unsqueeze(-1)  # (B, D, 1)
    z = torch.linalg.solve_triangular(scale_tril, diff, upper=False).squeeze(-1)  # (B, D)
    half_log_det = torch.log(torch.diagonal(scale_tril, dim1=-2, dim2=-1)).sum(dim=-1)
    nll = 0.5 * mean.shape[-1] * LOG_2PI + half_log_det + 0.5 * z.square().sum(dim=-1)
    return _reduce(nll, reduction)


def gaussian_nll(output: GaussianOutput, target: Tensor, *, reduction: str = "mean") -> Tensor:
    """NLL of scaled labels target (B, 4) under a model's :class:`GaussianOutput`.

    Computed in float32 even under autocast. Diagonal factors go through the same triangular
    solve as full ones (it is exact for them and costs nothing next to the network).
    """
    mean = output.mean.float()
    return full_gaussian_nll(mean, output.scale_tril.float(), target.to(mean.dtype), reduction=reduction)


def reconstruction_loss(denoised: Tensor, clean: Tensor, *, reduction: str = "mean") -> Tensor:
    """DAE loss, paper Eq. 4 ``‖x − g(f(x'))‖²`` divided by the number of pixels (8 × 4096).

    denoised, clean: (B, 8, 4096) flux. Returns the per-sample mean squared error (B,) for
    ``reduction="none"``, else its batch mean or sum. Dividing by the pixel count only rescales
    the gradient (Adam/AdamW are nearly invariant to that) and keeps the number readable:
    for unit continuum and SNR 20 the noisy input itself scores (1/20)² = 2.5e-3.
    """
    if denoised.shape != clean.shape:
        raise ValueError(f"denoised {tuple(denoised.shape)} and clean {tuple(clean.shape)} spectra differ in shape")
    mse = (denoised.float() - clean.float()).square().flatten(1).mean(dim=1)
    return _reduce(mse, reduction)


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


# output layer


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

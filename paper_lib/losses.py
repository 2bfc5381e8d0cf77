"""Gaussian likelihoods for the 4 stellar labels, the DAE reconstruction loss (paper Eq. 2 and 4).

The regressors predict a Gaussian :math:`\\mathcal N(\\mu, \\Sigma)` over the 4 labels
(T_eff, log g, [M/H], v sin i), each scaled to [0, 1]. The covariance is always carried as its
lower-triangular Cholesky factor ``L`` (``Σ = L Lᵀ``) with a positive diagonal:

* ``covariance="diagonal"``: ``L`` is diagonal, ``L_ii = σ_i``;
* ``covariance="full"``: ``L`` is lower-triangular with free off-diagonal entries.

The negative log-likelihood then needs no matrix inverse and no determinant:
``log|Σ| = 2 Σ_i log L_ii`` and ``(y-μ)ᵀ Σ⁻¹ (y-μ) = ‖L⁻¹(y-μ)‖²`` with one triangular solve.

The output type :class:`~paper_lib.models.gaussian.GaussianOutput` and the layer that produces
it live with the networks (:mod:`paper_lib.models.gaussian`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .labels import N_LABELS
from .models.gaussian import GaussianOutput

LOG_2PI = math.log(2.0 * math.pi)


# validation


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

"""Which pixels move a network's answer: integrated gradients between two images.

For a regressor f (its Gaussian mean, scaled labels) and two images x₀ and x₁ — in notebook 06
our noise-free synthetic Sun and the real Sun — integrated gradients (Sundararajan, Taly & Yan
2017, *Axiomatic attribution for deep networks*, ICML) give every pixel i the share

    A_i = (x₁ᵢ − x₀ᵢ) · ∫₀¹ ∂f/∂xᵢ (x₀ + α (x₁ − x₀)) dα,

and the shares add up to the change of the answer, Σᵢ A_i = f(x₁) − f(x₀) ("completeness"), up
to the error of the midpoint rule in α (:attr:`Attribution.completeness_error` reports it). The
labels are scaled linearly (:func:`paper_lib.labels.scale_labels`), so multiplying by the label
span gives shares in K, dex, dex and km/s. Summed over wavelength bins
(:func:`binned_by_wavelength`), the shares say which lines carry the synthetic gap into the
network's answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..labels import N_LABELS, label_span, unscale_labels

STEPS = 48  # midpoint-rule points along the straight path from x₀ to x₁
BATCH_SIZE = 16  # path points per forward/backward pass
BIN_WIDTH_A = 2.0  # Å: width of the wavelength bins of binned_by_wavelength


@dataclass
class Attribution:
    """Integrated gradients of one regressor between two images (physical units)."""

    per_pixel: np.ndarray  # (4, n_orders, n_pixels): each pixel's share of the change [K, dex, dex, km/s]
    start_mean: np.ndarray  # (4,) the answer at x₀
    end_mean: np.ndarray  # (4,) the answer at x₁

    @property
    def shift(self) -> np.ndarray:
        """f(x₁) − f(x₀) (4,) in physical units."""
        return self.end_mean - self.start_mean

    @property
    def completeness_error(self) -> np.ndarray:
        """Σ shares − shift (4,): the quadrature error; small against ``shift`` when enough steps."""
        return self.per_pixel.sum(axis=(1, 2)) - self.shift


def _as_image(image, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(image, dtype=np.float32))
    if tensor.ndim != 2:
        raise ValueError(f"{name} must be one image (n_orders, n_pixels), got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{name} holds NaN/inf: fill pixels without data first (e.g. with 1.0)")
    return tensor


def integrated_gradients(model, start, end, *, steps: int = STEPS,
                         batch_size: int = BATCH_SIZE) -> Attribution:
    """Integrated gradients of ``model`` (a trained regressor returning a ``GaussianOutput``)
    from image ``start`` to image ``end`` (both (n_orders, n_pixels), continuum-normalised).

    The model runs in eval mode (its mode is restored afterwards), on the device of its
    parameters; the shares come back as numpy arrays.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be ≥ 1, got {steps}, {batch_size}")
    x0, x1 = _as_image(start, "start"), _as_image(end, "end")
    if x0.shape != x1.shape:
        raise ValueError(f"start {tuple(x0.shape)} and end {tuple(x1.shape)} differ in shape")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps
        total = torch.zeros((N_LABELS,) + tuple(x0.shape))
        for chunk in torch.split(alphas, batch_size):
            path = (x0 + chunk.view(-1, 1, 1) * (x1 - x0)).to(device).requires_grad_(True)
            mean = model(path).mean
            for k in range(N_LABELS):
                (grad,) = torch.autograd.grad(mean[:, k].sum(), path, retain_graph=k < N_LABELS - 1)
                total[k] += grad.sum(dim=0).cpu()
        with torch.no_grad():
            ends = model(torch.stack([x0, x1]).to(device)).mean.double().cpu().numpy()
    finally:
        model.train(was_training)
    span = label_span()
    per_pixel = (total / steps * (x1 - x0)).double().numpy() * span[:, None, None]
    return Attribution(per_pixel=per_pixel, start_mean=unscale_labels(ends[0]),
                       end_mean=unscale_labels(ends[1]))


def binned_by_wavelength(per_pixel: np.ndarray, order_wave: np.ndarray,
                         width: float = BIN_WIDTH_A) -> tuple[np.ndarray, np.ndarray]:
    """Sum pixel shares (4, n_orders, n_pixels) in wavelength bins of ``width`` Å (pixels of
    overlapping orders add up in the same bin). Returns ``(bin centres (m,) Å, sums (4, m))``."""
    if width <= 0:
        raise ValueError(f"bin width must be > 0 Å, got {width}")
    wave = np.asarray(order_wave, dtype=np.float64)
    if per_pixel.shape[1:] != wave.shape:
        raise ValueError(f"shares {per_pixel.shape[1:]} and wavelengths {wave.shape} differ")
    lo = np.floor(wave.min() / width) * width
    index = ((wave - lo) // width).astype(int).ravel()
    n_bins = int(index.max()) + 1
    sums = np.stack([np.bincount(index, weights=share.ravel(), minlength=n_bins)
                     for share in per_pixel])
    return lo + width * (np.arange(n_bins) + 0.5), sums


def top_bins(centres: np.ndarray, sums: np.ndarray, n: int = 5) -> list[list[tuple[float, float]]]:
    """Per label, the ``n`` bins with the largest |share|: [(centre Å, share), ...]."""
    return [[(float(centres[i]), float(row[i])) for i in np.argsort(-np.abs(row))[:n]]
            for row in sums]

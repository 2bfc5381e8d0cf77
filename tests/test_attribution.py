"""Integrated gradients (paper_lib.evaluation.attribution): exact for a linear network, complete
for a non-linear one, shares in physical units, wavelength bins that conserve the total."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from paper_lib.evaluation import attribution as attr
from paper_lib.labels import label_span, unscale_labels
from paper_lib.models.gaussian import GaussianOutput

SHAPE = (8, 32)


class Toy(nn.Module):
    """mean = activation(W · x): linear with ``activation=None``."""

    def __init__(self, activation=None, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(4, SHAPE[0] * SHAPE[1], generator=generator) / 16)
        self.activation = activation

    def forward(self, x):
        mean = x.flatten(1) @ self.weight.T
        if self.activation is not None:
            mean = self.activation(mean)
        return GaussianOutput(mean, torch.eye(4).expand(len(x), 4, 4))


def _images(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    start = 1.0 - 0.3 * rng.random(SHAPE)
    return start.astype(np.float32), (start + 0.05 * rng.standard_normal(SHAPE)).astype(np.float32)


def test_linear_network_gets_weight_times_difference():
    model = Toy()
    start, end = _images()
    result = attr.integrated_gradients(model, start, end, steps=3)
    weight = model.weight.detach().numpy().reshape(4, *SHAPE)
    expected = weight * (end - start)[None] * label_span()[:, None, None]
    np.testing.assert_allclose(result.per_pixel, expected, rtol=1e-4, atol=1e-9)
    with torch.no_grad():
        means = model(torch.tensor(np.stack([start, end]))).mean.double().numpy()
    np.testing.assert_allclose(result.start_mean, unscale_labels(means[0]), rtol=1e-6)
    np.testing.assert_allclose(result.shift, unscale_labels(means[1]) - unscale_labels(means[0]),
                               rtol=1e-5)
    assert np.all(np.abs(result.completeness_error) <= 1e-4 * np.abs(result.shift) + 1e-6)


def test_nonlinear_network_shares_add_up_to_the_change():
    model = Toy(activation=torch.tanh).train()
    start, end = _images()
    end = end + 0.3  # a large step: the gradient changes along the path
    result = attr.integrated_gradients(model, start, end)
    assert model.training  # the caller's mode is restored
    assert np.all(np.abs(result.completeness_error) <= 0.01 * np.abs(result.shift))
    coarse = attr.integrated_gradients(model, start, end, steps=1)  # the gradient at the midpoint
    assert np.abs(coarse.completeness_error).max() > np.abs(result.completeness_error).max()


def test_bad_images_are_refused():
    model = Toy()
    start, end = _images()
    with pytest.raises(ValueError, match="differ in shape"):
        attr.integrated_gradients(model, start, end[:, :-1])
    with pytest.raises(ValueError, match="one image"):
        attr.integrated_gradients(model, start[None], end[None])
    bad = end.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        attr.integrated_gradients(model, start, bad)
    with pytest.raises(ValueError, match="steps"):
        attr.integrated_gradients(model, start, end, steps=0)


def test_wavelength_bins_conserve_the_shares_and_join_overlapping_orders():
    wave = np.array([[5000.2, 5000.8, 5001.5, 5002.1], [5001.9, 5002.6, 5003.3, 5003.9]])
    shares = np.arange(4 * 8, dtype=float).reshape(4, 2, 4)
    centres, sums = attr.binned_by_wavelength(shares, wave, width=2.0)
    np.testing.assert_allclose(centres, [5001.0, 5003.0])
    np.testing.assert_allclose(sums.sum(axis=1), shares.sum(axis=(1, 2)))
    # 5000.2, 5000.8, 5001.5 and order 1's 5001.9 fall in the first bin
    np.testing.assert_allclose(sums[0], [0 + 1 + 2 + 4, 3 + 5 + 6 + 7])
    top = attr.top_bins(centres, sums, n=1)
    assert top[0] == [(5003.0, 21.0)]
    with pytest.raises(ValueError, match="differ"):
        attr.binned_by_wavelength(shares[:, :1], wave)
    with pytest.raises(ValueError, match="> 0"):
        attr.binned_by_wavelength(shares, wave, width=0.0)

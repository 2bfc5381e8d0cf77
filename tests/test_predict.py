"""predict(): a regressor's Gaussian in physical units (the user-facing prediction)."""

import numpy as np
import pytest
import torch

from paper_lib.labels import to_physical
from paper_lib.models import build_model
from paper_lib.models.gaussian import GaussianOutput
from paper_lib.predict import predict

from .conftest import TINY


# Scaled-label Cholesky factor used by the toy model, with one off-diagonal term.
L_SCALED = np.diag([0.1, 0.2, 0.05, 0.1])
L_SCALED[1, 0] = 0.02


class ToyRegressor(torch.nn.Module):
    """Returns the first 4 input values as scaled mean and a fixed scale_tril; records the
    mode and grad state seen in forward."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, torch.is_grad_enabled(), x.shape[0]))
        mean = x[:, :4] + 0.0 * self.dummy
        tril = torch.as_tensor(L_SCALED, dtype=x.dtype).expand(x.shape[0], 4, 4)
        return GaussianOutput(mean, tril)


SCALED_X = np.array([[0.5, 0.9, 0.5, 0.1],
                     [0.0, 0.0, 0.0, 0.0],
                     [1.0, 1.0, 1.0, 1.0],
                     [0.2, 0.4, 0.6, 0.8],
                     [0.5, 0.9, 0.5, 0.1]], dtype=np.float32)


def _check_physical(mean, sigma, cov):
    np.testing.assert_allclose(mean[0], [6625.0, 4.5, -1.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(mean[1], [3500.0, 0.0, -2.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(mean[2], [9750.0, 5.0, 0.5, 30.0], rtol=1e-6)
    # σ = span × sqrt(diag(L Lᵀ)): Teff 6250·0.1, logg 5·sqrt(0.02² + 0.2²), [M/H] 3·0.05, v sin i 30·0.1
    expected_sigma = [625.0, 5.0 * np.hypot(0.02, 0.2), 0.15, 3.0]
    np.testing.assert_allclose(sigma, np.tile(expected_sigma, (len(sigma), 1)), rtol=1e-6)
    np.testing.assert_allclose(cov[:, 1, 0], 5.0 * 6250.0 * 0.02 * 0.1, rtol=1e-6)  # 62.5 K·dex
    np.testing.assert_allclose(cov[:, 0, 1], cov[:, 1, 0])
    np.testing.assert_allclose(cov[:, 2, 0], 0.0)


def test_predict_array_input_gives_physical_units_and_restores_mode():
    model = ToyRegressor()
    model.train()
    mean, sigma, cov = predict(model, SCALED_X, batch_size=2, device="cpu")
    assert mean.shape == (5, 4) and sigma.shape == (5, 4) and cov.shape == (5, 4, 4)
    _check_physical(mean, sigma, cov)
    assert [batch for _, _, batch in model.seen] == [2, 2, 1]
    assert all(not training and not grad for training, grad, _ in model.seen)
    assert model.training  # previous mode restored


def test_predict_refuses_no_spectra_and_a_dae():
    with pytest.raises(ValueError, match="no spectra"):
        predict(ToyRegressor(), np.zeros((0, 4), dtype=np.float32))
    dae = build_model("dae", **TINY["dae"])
    with pytest.raises(TypeError, match="needs a regressor"):
        predict(dae, torch.ones(1, 8, 4096))


def test_to_physical_rejects_bad_shapes():
    with pytest.raises(ValueError):
        to_physical(np.zeros((2, 4)), np.zeros((2, 4)))

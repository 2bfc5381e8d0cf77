"""Gaussian NLLs against torch.distributions, the output type and head, the DAE loss."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from paper_lib.instrument import check_spectra
from paper_lib.models.gaussian import GaussianHead, GaussianOutput
from paper_lib.losses import (
    diagonal_gaussian_nll,
    full_gaussian_nll,
    gaussian_nll,
    reconstruction_loss,
)

torch.set_num_threads(1)


def random_factor(batch: int, dim: int = 4, *, generator: torch.Generator, full: bool = True) -> torch.Tensor:
    """Random lower-triangular factors with positive diagonal (float64)."""
    diag = torch.rand(batch, dim, generator=generator, dtype=torch.float64) * 0.5 + 0.01
    tril = torch.diag_embed(diag)
    if full:
        tril = tril + torch.tril(torch.randn(batch, dim, dim, generator=generator, dtype=torch.float64) * 0.3, diagonal=-1)
    return tril


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def test_full_nll_matches_multivariate_normal(gen):
    mean = torch.randn(64, 4, generator=gen, dtype=torch.float64)
    tril = random_factor(64, generator=gen)
    target = mean + torch.randn(64, 4, generator=gen, dtype=torch.float64)
    expected = -MultivariateNormal(mean, scale_tril=tril).log_prob(target)
    got = full_gaussian_nll(mean, tril, target, reduction="none")
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(full_gaussian_nll(mean, tril, target), expected.mean())
    torch.testing.assert_close(full_gaussian_nll(mean, tril, target, reduction="sum"), expected.sum())


def test_full_nll_gradients_match_multivariate_normal(gen):
    mean = torch.randn(16, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    tril = random_factor(16, generator=gen).requires_grad_()
    target = torch.randn(16, 4, generator=gen, dtype=torch.float64)
    grads = torch.autograd.grad(full_gaussian_nll(mean, tril, target), (mean, tril))
    reference = torch.autograd.grad(-MultivariateNormal(mean, scale_tril=tril).log_prob(target).mean(), (mean, tril))
    for got, expected in zip(grads, reference):
        torch.testing.assert_close(torch.tril(got), torch.tril(expected), rtol=1e-8, atol=1e-10)


def test_diagonal_nll_matches_normal_from_log_var_and_scale(gen):
    mean = torch.randn(32, 4, generator=gen, dtype=torch.float64)
    scale = torch.rand(32, 4, generator=gen, dtype=torch.float64) + 0.05
    target = torch.randn(32, 4, generator=gen, dtype=torch.float64)
    expected = -Normal(mean, scale).log_prob(target).sum(dim=1)
    from_scale = diagonal_gaussian_nll(mean, target, scale=scale, reduction="none")
    from_log_var = diagonal_gaussian_nll(mean, target, log_var=2 * scale.log(), reduction="none")
    torch.testing.assert_close(from_scale, expected)
    torch.testing.assert_close(from_log_var, expected)
    with pytest.raises(ValueError, match="exactly one"):
        diagonal_gaussian_nll(mean, target)


def test_full_reduces_to_diagonal_when_off_diagonals_are_zero(gen):
    mean = torch.randn(32, 4, generator=gen, dtype=torch.float64)
    tril = random_factor(32, generator=gen, full=False)
    target = torch.randn(32, 4, generator=gen, dtype=torch.float64)
    scale = torch.diagonal(tril, dim1=-2, dim2=-1)
    torch.testing.assert_close(
        full_gaussian_nll(mean, tril, target, reduction="none"),
        diagonal_gaussian_nll(mean, target, scale=scale, reduction="none"),
    )
    # and a non-zero off-diagonal changes the value
    shifted = tril.clone()
    shifted[:, 3, 0] = 0.4
    assert not torch.allclose(full_gaussian_nll(mean, shifted, target), full_gaussian_nll(mean, tril, target))


def test_upper_triangle_is_ignored(gen):
    mean, target = torch.zeros(8, 4, dtype=torch.float64), torch.randn(8, 4, generator=gen, dtype=torch.float64)
    tril = random_factor(8, generator=gen)
    garbage = tril + torch.triu(torch.randn(8, 4, 4, generator=gen, dtype=torch.float64), diagonal=1)
    torch.testing.assert_close(full_gaussian_nll(mean, garbage, target), full_gaussian_nll(mean, tril, target))


def test_nll_is_finite_and_stable_at_tiny_scales():
    mean = torch.zeros(4, 4, requires_grad=True)
    tril = torch.diag_embed(torch.full((4, 4), 1e-3)).requires_grad_()
    target = torch.full((4, 4), 0.9)  # 900 σ away
    loss = full_gaussian_nll(mean, tril, target)
    loss.backward()
    expected = 0.5 * 4 * math.log(2 * math.pi) + 4 * math.log(1e-3) + 0.5 * 4 * 900.0**2
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)
    assert torch.isfinite(mean.grad).all() and torch.isfinite(tril.grad).all()


def test_gaussian_nll_of_output_and_properties(gen):
    tril = random_factor(8, generator=gen).float()
    out = GaussianOutput(torch.rand(8, 4), tril)
    target = torch.rand(8, 4)
    expected = -MultivariateNormal(out.mean.double(), scale_tril=tril.double()).log_prob(target.double()).mean()
    torch.testing.assert_close(gaussian_nll(out, target).double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.covariance, tril @ tril.transpose(1, 2))
    torch.testing.assert_close(out.sigma, torch.diagonal(out.covariance, dim1=1, dim2=2).sqrt())


def test_bad_targets_raise():
    out = GaussianOutput(torch.rand(8, 4), torch.diag_embed(torch.ones(8, 4)))
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        gaussian_nll(out, torch.rand(8, 3))
    with pytest.raises(ValueError, match="batch size"):
        gaussian_nll(out, torch.rand(7, 4))
    with pytest.raises(ValueError, match="NaN"):
        gaussian_nll(out, torch.full((8, 4), float("nan")))
    with pytest.raises(ValueError, match="reduction"):
        gaussian_nll(out, torch.rand(8, 4), reduction="median")


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_head_gives_valid_cholesky_factors(covariance):
    torch.manual_seed(0)
    head = GaussianHead(in_features=16, covariance=covariance, min_scale=1e-3)
    features = torch.randn(64, 16) * 100.0  # extreme inputs push the raw diagonal far negative
    out = head(features)
    assert out.mean.shape == (64, 4) and out.scale_tril.shape == (64, 4, 4)
    diag = torch.diagonal(out.scale_tril, dim1=-2, dim2=-1)
    assert (diag >= 1e-3).all()
    assert (torch.triu(out.scale_tril, diagonal=1) == 0).all()
    off = torch.tril(out.scale_tril, diagonal=-1)
    assert (off.abs().sum() > 0) == (covariance == "full")
    # Σ = L Lᵀ is positive definite because det Σ = Π L_ii² > 0 (it may be ill-conditioned here);
    # at ordinary feature scales the float32 covariance itself passes an eigenvalue check
    ordinary = head(torch.randn(64, 16) * 3.0)
    assert (torch.linalg.eigvalsh(ordinary.covariance) > 0).all()
    assert torch.linalg.cholesky_ex(ordinary.covariance).info.eq(0).all()


def test_head_runs_in_float32_under_autocast():
    head = GaussianHead(in_features=8, covariance="full")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(torch.randn(4, 8).bfloat16())
    assert out.mean.dtype == torch.float32 and out.scale_tril.dtype == torch.float32


def test_head_starts_near_the_centre_of_the_label_box():
    head = GaussianHead(in_features=8, init_scale=0.1)
    out = head(torch.zeros(2, 8))
    torch.testing.assert_close(out.mean, torch.full((2, 4), 0.5))
    torch.testing.assert_close(out.sigma, torch.full((2, 4), 0.1))


def test_reconstruction_loss_is_pixel_mse():
    clean = torch.ones(3, 8, 4096)
    noisy = clean + 0.05
    assert math.isclose(reconstruction_loss(noisy, clean).item(), 0.0025, rel_tol=1e-5)
    assert reconstruction_loss(noisy, clean, reduction="none").shape == (3,)
    with pytest.raises(ValueError, match="shape"):
        reconstruction_loss(noisy[:, :4], clean)


def test_check_spectra_messages():
    assert check_spectra(torch.ones(2, 8, 4096, dtype=torch.float64)).dtype == torch.float32
    with pytest.raises(ValueError, match=r"\(batch, 8, 4096\)"):
        check_spectra(torch.ones(2, 4096))
    with pytest.raises(ValueError, match="NaN or infinite"):
        check_spectra(torch.full((1, 8, 4096), float("inf")))
    with pytest.raises(ValueError, match="floating"):
        check_spectra(torch.ones(1, 8, 4096, dtype=torch.int64))

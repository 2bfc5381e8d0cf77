"""The three networks: shapes, valid covariances, attention maps, input checks, architecture
records, the frozen DAE pipeline, and that each network can overfit 16 spectra on a CPU."""

import json

import numpy as np
import pytest
import torch

from paper_lib.losses import gaussian_nll
from paper_lib.models import (
    AttentionNet,
    DenoisedRegressor,
    DenoisingAutoencoder,
    ResNet,
    build_from_arch,
    build_model,
    describe,
)
from paper_lib.models.attention import average_gaussians
from paper_lib.training.config import TrainConfig
from paper_lib.training.loop import fit

from .conftest import TINY, Batch, FixedSource, ToySpectrumSource

torch.set_num_threads(1)

@pytest.fixture(scope="module")
def toy_batch() -> Batch:
    return ToySpectrumSource().sample(16, np.random.default_rng(1))


def spectra(batch: int = 3, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 1.0 - 0.3 * torch.rand(batch, 8, 4096, generator=gen)


# shapes and covariances


@pytest.mark.parametrize("kind", ["resnet", "attention"])
@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_regressor_output_shapes_and_positive_definite_covariance(kind, covariance):
    torch.manual_seed(0)
    model = build_model(kind, covariance=covariance, **TINY[kind]).eval()
    out = model(spectra(5))
    assert out.mean.shape == (5, 4) and out.scale_tril.shape == (5, 4, 4)
    assert out.mean.dtype == torch.float32 and out.scale_tril.dtype == torch.float32
    assert (torch.triu(out.scale_tril, diagonal=1) == 0).all()
    assert (torch.diagonal(out.scale_tril, dim1=1, dim2=2) > 0).all()
    assert (torch.linalg.eigvalsh(out.covariance) > 0).all()
    assert out.sigma.shape == (5, 4) and (out.sigma > 0).all()
    off_diagonal = torch.tril(out.scale_tril, diagonal=-1).abs().sum()
    assert (off_diagonal > 0) == (covariance == "full")


def test_dae_output_shape():
    dae = build_model("dae", **TINY["dae"]).eval()
    assert dae(spectra(2)).shape == (2, 8, 4096)
    assert dae.encode(spectra(2)).shape == (2, 8, 8, 1024)  # 2w channels, 4096 / 2**2 pixels


def test_paper_sized_resnet_keeps_full_resolution():
    model = ResNet(width=8, fc_hidden=(32, 16), stem_stride=1)
    assert model.features(spectra(1)).shape == (1, 32, 8, 4096 // 16)


# attention


def test_attention_maps_are_softmax_distributions():
    torch.manual_seed(0)
    model = AttentionNet(**TINY["attention"]).eval()
    x = spectra(2)
    out, alphas = model(x, return_attention=True)
    pixels = 4096 // TINY["attention"]["stem_stride"]
    torch.testing.assert_close(out.mean, model(x).mean)  # return_attention changes nothing else
    assert [tuple(a.shape) for a in alphas] == [(2, 8, pixels), (2, 4, pixels // 2), (2, 2, pixels // 4)]
    for alpha in alphas:
        assert (alpha >= 0).all()
        torch.testing.assert_close(alpha.sum(dim=(1, 2)), torch.ones(2))
    maps = model.attention_maps(x)
    assert len(maps) == 3
    for m in maps:
        assert m.shape == (2, 8, 4096) and (m >= 0).all()
        torch.testing.assert_close(m.sum(dim=(1, 2)), torch.ones(2))


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_attention_output_is_the_average_of_its_three_heads(covariance):
    torch.manual_seed(0)
    model = AttentionNet(covariance=covariance, **TINY["attention"]).eval()
    x = spectra(4)
    _, heads = model.attend(x)
    out = model(x)
    torch.testing.assert_close(out.mean, sum(h.mean for h in heads) / 3)
    torch.testing.assert_close(out.covariance, sum(h.covariance for h in heads) / 3, rtol=1e-4, atol=1e-7)
    assert not torch.allclose(heads[0].mean, heads[1].mean)  # the heads really differ


def test_average_gaussians_diagonal_and_full_paths_agree_on_diagonal_input():
    gen = torch.Generator().manual_seed(0)
    outs = [build_model("resnet", **TINY["resnet"]).head(torch.randn(6, 16, generator=gen)) for _ in range(3)]
    diag = average_gaussians(outs, diagonal=True)
    full = average_gaussians(outs, diagonal=False)
    torch.testing.assert_close(diag.scale_tril, full.scale_tril)


# bad input


BAD_INPUTS = {
    "no batch axis": torch.ones(8, 4096),
    "channel axis": torch.ones(2, 1, 8, 4096),
    "wrong pixels": torch.ones(2, 8, 2048),
    "wrong orders": torch.ones(2, 7, 4096),
    "empty batch": torch.ones(0, 8, 4096),
}


@pytest.mark.parametrize("kind", ["resnet", "attention", "dae"])
@pytest.mark.parametrize("bad", list(BAD_INPUTS))
def test_wrong_shapes_raise_a_clear_error(kind, bad):
    model = build_model(kind, **TINY[kind])
    with pytest.raises(ValueError, match=r"\(batch, 8, 4096\)"):
        model(BAD_INPUTS[bad])


@pytest.mark.parametrize("kind", ["resnet", "attention", "dae"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_flux_raises(kind, value):
    model = build_model(kind, **TINY[kind])
    x = spectra(2)
    x[1, 3, 100] = value
    with pytest.raises(ValueError, match="NaN or infinite"):
        model(x)


def test_build_model_rejects_unknown_settings():
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("transformer")
    with pytest.raises(ValueError, match="covariance"):
        build_model("resnet", covariance="banded")
    with pytest.raises(ValueError, match="no covariance"):
        build_model("dae", covariance="full")
    with pytest.raises(TypeError):
        build_model("resnet", depth=3)  # a DAE argument
    with pytest.raises(ValueError, match="invalid architecture"):
        build_from_arch({"kind": "resnet"})


# architecture records


@pytest.mark.parametrize("kind", ["resnet", "attention", "dae"])
def test_architecture_record_round_trips(kind):
    model = build_model(kind, covariance="diagonal" if kind == "dae" else "full", **TINY[kind])
    arch = json.loads(json.dumps(describe(model)))  # JSON-compatible
    rebuilt = build_from_arch(arch)
    assert describe(rebuilt) == describe(model)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    rebuilt.load_state_dict(model.state_dict())


def test_denoised_regressor_freezes_the_dae():
    torch.manual_seed(0)
    dae = DenoisingAutoencoder(**TINY["dae"])
    pipeline = DenoisedRegressor(dae, build_model("resnet", **TINY["resnet"]))
    assert describe(build_from_arch(describe(pipeline))) == describe(pipeline)
    pipeline.train()
    assert not pipeline.dae.training and pipeline.regressor.training
    dae_before = {k: v.clone() for k, v in dae.state_dict().items()}
    reg_before = {k: v.clone() for k, v in pipeline.regressor.state_dict().items()}
    optimizer = torch.optim.Adam([p for p in pipeline.parameters() if p.requires_grad], lr=1e-2)
    loss = gaussian_nll(pipeline(spectra(4)), torch.rand(4, 4))
    loss.backward()
    optimizer.step()
    assert all(torch.equal(dae_before[k], v) for k, v in dae.state_dict().items())  # weights and BN stats
    assert any(not torch.equal(reg_before[k], v) for k, v in pipeline.regressor.state_dict().items())
    with torch.no_grad():
        torch.testing.assert_close(pipeline(spectra(2)).mean, pipeline.regressor(dae(spectra(2))).mean)


# overfitting a fixed batch through the training loop


def overfit(model, batch: Batch, task: str, steps: int, lr: float, tmp_path) -> tuple[float, float]:
    """Train on one fixed batch with fit(); return the error before and after, in train mode
    (batch statistics in BatchNorm, no dropout in TINY): mean squared error of the predicted
    means in scaled labels (regression) or of the denoised pixels (denoising)."""

    def error() -> float:
        model.train()
        with torch.no_grad():
            out = model(batch.noisy)
        if task == "regression":
            return (out.mean - batch.labels).square().mean().item()
        return (out - batch.clean).square().mean().item()

    before = error()
    config = TrainConfig(epochs=1, steps_per_epoch=steps, batch_size=16, lr=lr, task=task,
                         optimizer="adam" if task == "regression" else "adamw", lr_decay_fraction=0.25)
    fit(model, FixedSource(batch), batch, config, tmp_path / "overfit.pt", progress=False, num_threads=1)
    return before, error()


@pytest.mark.parametrize("kind, steps, lr", [("resnet", 100, 3e-3), ("attention", 100, 3e-3)])
def test_regressor_overfits_sixteen_spectra(kind, steps, lr, toy_batch, tmp_path):
    torch.manual_seed(0)
    model = build_model(kind, covariance="diagonal", **TINY[kind])
    before, after = overfit(model, toy_batch, "regression", steps, lr, tmp_path)
    assert after < before / 10, (before, after)


def test_dae_overfits_sixteen_spectra(toy_batch, tmp_path):
    torch.manual_seed(0)
    model = build_model("dae", **TINY["dae"])
    before, after = overfit(model, toy_batch, "denoising", 60, 1e-2, tmp_path)
    assert after < before / 10, (before, after)
    noise = (toy_batch.noisy - toy_batch.clean).square().mean().item()
    assert after < 3 * noise  # close to the clean spectra, not just less wrong than at the start


@pytest.mark.parametrize("kind", ["resnet", "attention", "dae"])
def test_bfloat16_autocast_keeps_float32_outputs_and_flux_precision(kind):
    """On GPUs training runs under bfloat16 autocast; flux near 1 would round to steps of 0.008."""
    torch.manual_seed(0)
    model = build_model(kind, **TINY[kind]).eval()
    x = spectra(2)
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    if kind == "dae":
        assert low.dtype == torch.float32
        assert (low - reference).abs().max() < 1e-3
    else:
        assert low.mean.dtype == torch.float32 and low.scale_tril.dtype == torch.float32
        assert (low.mean - reference.mean).abs().max() < 1e-3

"""The realism options of the generator (paper_lib.echelle.realism): per-spectrum SNR, the HARPS
CCD gap, a residual radial velocity and continuum curvature; off, they change nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paper_lib.echelle.generator import SpectrumGenerator
from paper_lib.echelle.realism import Realism, masked_pixels
from paper_lib.instrument import HARPS_CCD_GAP_A

SUN_BOX = {"teff": (5500.0, 6000.0), "logg": (4.0, 4.5), "mh": (-0.5, 0.0)}


def generator(grid, **kwargs):
    return SpectrumGenerator(grid, snr=50.0, seed=3, box=SUN_BOX, pad_with_continuum=True, **kwargs)


def test_realism_off_draws_nothing_and_changes_nothing(reference_grid):
    plain = generator(reference_grid).sample(4, np.random.default_rng(1))
    explicit = generator(reference_grid, realism=Realism()).sample(4, np.random.default_rng(1))
    assert torch.equal(plain.noisy, explicit.noisy) and torch.equal(plain.labels, explicit.labels)
    assert not Realism().active and Realism().settings() is None


def test_realism_rejects_bad_options():
    for bad in ({"snr_range": (0.0, 10.0)}, {"snr_range": (30.0, 20.0)},
                {"gap_probability": 1.5}, {"rv_jitter_kms": -1.0}, {"curvature_max": float("nan")}):
        with pytest.raises(ValueError):
            Realism(**bad)


def test_per_spectrum_snr_follows_the_range(reference_grid):
    gen = generator(reference_grid, realism=Realism(snr_range=(20.0, 300.0)))
    draw = gen.realism.draw(2000, 8, gen.snr, gen.order_wave, np.random.default_rng(0))
    snr = 1.0 / draw.noise_scale.flatten().numpy()
    assert snr.min() >= 20.0 and snr.max() <= 300.0
    assert np.median(np.log(snr)) == pytest.approx(np.log(np.sqrt(20 * 300)), abs=0.1)  # log-uniform
    batch = gen.sample(6, np.random.default_rng(5))
    measured = 1.0 / (batch.noisy - batch.clean).flatten(1).std(dim=1).numpy()
    assert measured.min() > 15.0 and measured.max() < 400.0 and measured.max() / measured.min() > 1.5


def test_ccd_gap_is_masked_and_filled_like_real_spectra(reference_grid):
    gen = generator(reference_grid, realism=Realism(gap_probability=1.0, gap_shift_A=0.0))
    batch = gen.sample(3, np.random.default_rng(2))
    inside = (gen.order_wave >= HARPS_CCD_GAP_A[0]) & (gen.order_wave <= HARPS_CCD_GAP_A[1])
    assert 0.05 < inside.mean() < 0.10  # ≈ 7–8 % of the image, as in real HARPS spectra
    assert torch.all(batch.noisy[:, torch.from_numpy(inside)] == 1.0)
    assert torch.all(batch.clean[:, torch.from_numpy(inside)] == 1.0)
    assert torch.all(batch.noisy[:, torch.from_numpy(~inside)] != 1.0)
    half = generator(reference_grid, realism=Realism(gap_probability=0.5))
    draw = half.realism.draw(400, 8, half.snr, half.order_wave, np.random.default_rng(0))
    assert 0.4 < float((~draw.usable).any(dim=(1, 2)).float().mean()) < 0.6


def test_positive_shift_moves_lines_to_the_red(reference_grid):
    gen = generator(reference_grid)
    labels = np.array([[5777.0, 4.44, 0.0, 2.0]])
    still = gen.render_labels(labels)[0, 3].double().numpy()
    moved = gen.render_labels(labels, shift_kms=np.array([3.0]))[0, 3].double().numpy()
    wave = gen.order_wave[3]
    lags = np.arange(-20, 21)
    corr = [np.sum((1 - still[30:-30]) * (1 - np.roll(moved, -k)[30:-30])) for k in lags]
    pixel_kms = np.median(np.diff(wave) / wave[1:]) * 299792.458
    assert lags[int(np.argmax(corr))] * pixel_kms == pytest.approx(3.0, abs=pixel_kms)


def test_curvature_bends_the_continuum(reference_grid):
    gen = generator(reference_grid, realism=Realism(curvature_max=0.05), slant_max=0.0)
    draw = gen.realism.draw(64, 8, gen.snr, gen.order_wave, np.random.default_rng(0))
    assert float(draw.curvature.abs().max()) <= 0.05 and float(draw.curvature.abs().max()) > 0.03
    batch = gen.sample(8, np.random.default_rng(4))
    ends = batch.clean[..., :200].mean(-1) + batch.clean[..., -200:].mean(-1)
    middle = 2 * batch.clean[..., 1948:2148].mean(-1)
    assert float((ends - middle).abs().max()) > 0.005  # a linear fit leaves the bend


def test_line_strength_errors_scale_each_line_and_leave_the_continuum(reference_grid):
    realism = Realism(line_strength_sigma=0.2, line_strength_scale_px=4.0)
    gen = generator(reference_grid, realism=realism)
    draw = realism.draw(16, 8, gen.snr, gen.order_wave, np.random.default_rng(0))
    field = draw.strength.double().numpy()
    assert field.shape == (16, *gen.order_wave.shape)
    assert field.std() == pytest.approx(0.2, rel=0.05)
    flat = field.reshape(-1, field.shape[-1])
    near = np.corrcoef(flat[:, :-2].ravel(), flat[:, 2:].ravel())[0, 1]
    far = np.corrcoef(flat[:, :-40].ravel(), flat[:, 40:].ravel())[0, 1]
    assert near > 0.8 and abs(far) < 0.05  # a line's pixels move together, distant lines not
    weak = torch.full((16, *gen.order_wave.shape), 0.98)
    perturbed = draw.perturb_lines(weak).double().numpy()
    assert np.allclose(np.log(perturbed) / np.log(0.98), np.exp(field), rtol=1e-4)  # f^(e^ε)
    assert np.allclose((1.0 - perturbed) / 0.02, np.exp(field), rtol=0.03)  # weak depth × e^ε
    assert torch.equal(draw.perturb_lines(torch.ones_like(weak)), torch.ones_like(weak))
    saturated = draw.perturb_lines(torch.full_like(weak, 0.05))
    assert float(saturated.min()) > 0.0 and float(saturated.max()) < 1.0  # never emission
    assert float(saturated.median()) == pytest.approx(0.05, abs=0.005)


def test_line_strength_errors_off_keep_the_old_settings_and_stream(reference_grid):
    off = Realism(snr_range=(20.0, 300.0))
    assert "line_strength_sigma" not in off.settings()  # cache keys of existing runs unchanged
    assert off.draw(2, 8, 50.0, generator(reference_grid).order_wave,
                    np.random.default_rng(0)).strength is None
    assert Realism(line_strength_sigma=0.1).settings()["line_strength_sigma"] == 0.1
    for bad in ({"line_strength_sigma": -0.1}, {"line_strength_scale_px": float("inf")}):
        with pytest.raises(ValueError):
            Realism(**bad)
    quiet = {"slant_max": 0.0}
    perturbed = SpectrumGenerator(reference_grid, snr=1e6, seed=3, box=SUN_BOX, pad_with_continuum=True,
                                  realism=Realism(line_strength_sigma=0.3), **quiet).sample(
        4, np.random.default_rng(1))
    plain = SpectrumGenerator(reference_grid, snr=1e6, seed=3, box=SUN_BOX,
                              pad_with_continuum=True, **quiet).sample(4, np.random.default_rng(1))
    assert torch.equal(perturbed.labels, plain.labels)
    lines = plain.clean < 0.9
    ratio = ((1.0 - perturbed.clean) / (1.0 - plain.clean))[lines].double().numpy()
    assert 0.2 < ratio.std() < 0.4 and abs(np.median(ratio) - 1.0) < 0.05  # each line by its ε


def test_masked_wavelengths_are_never_shown(reference_grid):
    intervals = ((5180.0, 5185.0), (5182.0, 5184.5), (5300.0, 5300.5))  # two overlap
    gen = generator(reference_grid, realism=Realism(masked_wavelengths=intervals))
    batch = gen.sample(3, np.random.default_rng(2))
    wave = gen.order_wave
    inside = ((wave >= 5180.0) & (wave <= 5185.0)) | ((wave >= 5300.0) & (wave <= 5300.5))
    assert inside.any() and not inside.all()
    np.testing.assert_array_equal(masked_pixels(wave, intervals), inside)
    assert torch.all(batch.noisy[:, torch.from_numpy(inside)] == 1.0)
    assert torch.all(batch.clean[:, torch.from_numpy(inside)] == 1.0)
    assert torch.all(batch.noisy[:, torch.from_numpy(~inside)] != 1.0)
    with_gap = Realism(masked_wavelengths=intervals, gap_probability=1.0, gap_shift_A=0.0)
    usable = with_gap.draw(2, 8, 50.0, wave, np.random.default_rng(0)).usable.numpy()
    gap = (wave >= HARPS_CCD_GAP_A[0]) & (wave <= HARPS_CCD_GAP_A[1])
    np.testing.assert_array_equal(usable[0], ~(inside | gap))
    assert "masked_wavelengths" not in Realism(snr_range=(20.0, 300.0)).settings()  # keys kept
    assert Realism(masked_wavelengths=[[5180, 5185]]).settings()["masked_wavelengths"] == (
        (5180.0, 5185.0),)
    with pytest.raises(ValueError, match="lo < hi"):
        Realism(masked_wavelengths=((5185.0, 5180.0),))
    assert not masked_pixels(wave, ()).any()

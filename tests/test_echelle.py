"""Tests of paper_lib.echelle: the HARPS-N layout, resampling, slant and normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch


from .conftest import shared_or_skip
from paper_lib.echelle.continuum import (apply_slant, continuum_change, envelope_continuum,
                                         normalise_orders, slant_ramp)
from paper_lib.echelle.layout import extract_layout_from_fits, image_to_1d, load_blaze, load_layout, order_wavelengths, resample_to_orders
from paper_lib.synthetic.broadening import FWHM_TO_SIGMA, broaden
from paper_lib.synthetic.resample import log_lambda_grid, resample_to_log_lambda


@pytest.fixture(scope="module")
def solar_image():
    """A broadened solar-like reference-grid spectrum on the 8 × 4096 pixels (numpy float64).

    The reference grid covers 5030–5370 Å only; beyond it the spectrum is padded with the
    continuum (flux 1), which only touches the ends of the first and last orders.
    """
    from astropy.io import fits

    path = shared_or_skip("reference_grid/reference_grid.fits")
    with fits.open(path, memmap=True, do_not_scale_image_data=True) as hdul:
        table = hdul["LABELS"].data
        row = np.flatnonzero((table["teff"] == 5750) & (table["logg"] == 4.5) & (table["mh"] == 0))
        header = hdul[0].header
        flux = hdul[0].data[row[0]] * header.get("BSCALE", 1.0) + header.get("BZERO", 0.0)
        wave = np.asarray(hdul["WAVE"].data, dtype=np.float64)
    step = wave[1] - wave[0]
    before = np.arange(5020.0, wave[0] - step / 2, step)
    after = wave[-1] + step * np.arange(1, int(round((5400.0 - wave[-1]) / step)) + 1)
    full_wave = np.concatenate([before, wave, after])
    full_flux = np.concatenate([np.ones(before.size), flux, np.ones(after.size)])
    log_wave = log_lambda_grid(5021.0, 5399.0, 0.5)
    on_log = resample_to_log_lambda(full_wave, torch.tensor(full_flux)[None], log_wave)
    broadened = broaden(on_log, torch.tensor([3.0]), 0.5)
    return resample_to_orders(log_wave, broadened)[0].numpy()


# layout -----------------------------------------------------------------------------------


def test_order_wavelengths_shape_and_monotonicity():
    wave = order_wavelengths()
    assert wave.shape == (8, 4096) and wave.dtype == np.float64
    assert np.all(np.diff(wave, axis=1) > 0)
    assert np.all(np.diff(wave[:, 0]) > 0)
    assert np.all(wave[1:, 0] < wave[:-1, -1])  # neighbouring orders overlap
    assert wave[0, 0] == pytest.approx(5026.19, abs=0.01)
    assert wave[-1, -1] == pytest.approx(5394.68, abs=0.01)
    assert wave[:, 0].min() < 5050 and wave[:, -1].max() > 5350  # covers the paper's range


def test_stored_layout_records_its_source():
    layout = load_layout()
    assert layout["rows"] == list(range(36, 44))
    assert layout["orders"] == list(range(121, 113, -1))
    assert "HARPN_WAVE_MATRIX_A.fits" in layout["source"] and "5baf2e5a" in layout["source"]
    assert np.asarray(layout["coefficients"]).shape == (8, 4)


def test_layout_matches_the_harpsn_wave_matrix():
    from astropy.io import fits

    path = shared_or_skip("harpsn/HARPN_WAVE_MATRIX_A.fits")
    matrix = fits.getdata(path).astype(np.float64)[36:44]
    assert np.abs(order_wavelengths() - matrix).max() <= 1e-3
    extracted = extract_layout_from_fits(path)
    np.testing.assert_array_equal(extracted["coefficients"], load_layout()["coefficients"])


def test_user_layouts_are_accepted_and_sorted():
    coefficients = np.asarray(load_layout()["coefficients"])
    shuffled = coefficients[[3, 0, 7, 1, 2, 6, 5, 4]]
    np.testing.assert_array_equal(order_wavelengths(shuffled), order_wavelengths())
    with pytest.raises(ValueError, match="coefficients"):
        order_wavelengths(np.ones(4))
    with pytest.raises(ValueError, match="increase"):
        order_wavelengths(-coefficients)


def test_load_blaze():
    blaze = load_blaze(shared_or_skip("harpsn/HARPN_BLAZE_A.fits"))
    assert blaze.shape == (8, 4096)
    assert np.all((blaze.max(1) > 1.0) & (blaze.max(1) < 1.1))
    assert np.all(blaze[:, 0] < 0.2) and np.all(blaze[:, -1] < 0.6)  # asymmetric, low at the ends
    assert np.all(np.abs(blaze.argmax(1) - 2350) < 300)


# resampling -------------------------------------------------------------------------------


def test_resampling_a_constant_gives_the_constant():
    wave = np.arange(5020.0, 5400.0, 0.01)
    image = resample_to_orders(wave, np.full(wave.size, 0.87))
    assert image.shape == (8, 4096)
    np.testing.assert_allclose(image, 0.87, atol=1e-12)
    batch = resample_to_orders(wave, torch.full((3, wave.size), 0.5, dtype=torch.float32))
    assert batch.shape == (3, 8, 4096) and batch.dtype == torch.float32
    torch.testing.assert_close(batch, torch.full_like(batch, 0.5))


def test_resampling_preserves_the_depth_of_a_resolved_line():
    wave = np.arange(5020.0, 5400.0, 0.01)
    centre = 5201.2345  # inside order 40 only
    sigma = centre / 115000.0 * FWHM_TO_SIGMA  # an unresolved line seen at R = 115 000
    line = lambda w: 1.0 - 0.8 * np.exp(-0.5 * ((w - centre) / sigma) ** 2)  # noqa: E731
    image = resample_to_orders(wave, line(wave))
    pixels = order_wavelengths()
    np.testing.assert_allclose(image, line(pixels), atol=4e-3)
    assert image.min() == pytest.approx(line(pixels).min(), abs=4e-3)
    assert image.min() < 0.4  # the line is really there


def test_resampling_rejects_bad_input():
    wave = np.arange(5020.0, 5400.0, 0.01)
    with pytest.raises(ValueError, match="covers only"):
        resample_to_orders(wave[wave > 5030], np.ones((wave > 5030).sum()))
    with pytest.raises(ValueError, match="shape"):
        resample_to_orders(wave, np.ones(wave.size - 1))
    with pytest.raises(ValueError, match="shape"):
        resample_to_orders(wave, np.ones((2, 2, wave.size)))
    flux = np.ones(wave.size)
    flux[100] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        resample_to_orders(wave, flux)


# slant and normalisation ------------------------------------------------------------------


def test_apply_slant_is_a_linear_ramp_per_order():
    slopes = np.linspace(-0.05, 0.05, 8)
    image = apply_slant(np.ones((8, 4096)), slopes)
    np.testing.assert_allclose(image[:, 0], 1 - slopes)
    np.testing.assert_allclose(image[:, -1], 1 + slopes)
    np.testing.assert_allclose(image.mean(1), 1.0)
    assert np.allclose(np.diff(image, 2, axis=1), 0.0, atol=1e-12)
    batch = apply_slant(torch.ones(2, 8, 4096), torch.tensor(np.stack([slopes, -slopes])))
    torch.testing.assert_close(batch[1, :, -1], torch.tensor(1 - slopes, dtype=torch.float32))
    with pytest.raises(ValueError, match="slopes must have shape"):
        apply_slant(np.ones((8, 4096)), slopes[:7])


def test_normalise_recovers_a_slanted_line_free_order():
    slopes = np.array([0.05, -0.05, 0.02, 0.0, -0.03, 0.04, 0.01, -0.01])
    image = 1234.5 * apply_slant(np.ones((8, 4096)), slopes)
    normalised, continuum = normalise_orders(image, return_continuum=True)
    np.testing.assert_allclose(normalised, 1.0, atol=1e-3)
    np.testing.assert_allclose(continuum, image, rtol=1e-3)
    as_torch = normalise_orders(torch.tensor(image, dtype=torch.float32)[None])
    assert as_torch.shape == (1, 8, 4096) and as_torch.dtype == torch.float32
    torch.testing.assert_close(as_torch, torch.ones_like(as_torch), atol=1e-3, rtol=0)


def test_normalise_a_slanted_real_spectrum(solar_image):
    slopes = np.array([0.05, -0.04, 0.03, -0.05, 0.0, 0.02, -0.02, 0.045])
    ramp = slant_ramp(slopes)
    normalised, continuum = normalise_orders(850.0 * solar_image * ramp, return_continuum=True)
    unslanted = normalise_orders(solar_image)
    assert np.abs(normalised - unslanted).max() < 3e-3  # the ±5 % slant is removed
    relative = continuum / (850.0 * ramp)  # the true continuum of this spectrum is 850 · ramp
    assert np.all(np.abs(np.median(relative, axis=1) - 1) < 0.02)
    assert np.abs(relative - 1).max() < 0.03
    assert np.percentile(normalised, 99) == pytest.approx(1.0, abs=0.01)


def test_normalise_noisy_spectrum_is_close_and_batches_agree(solar_image):
    rng = np.random.default_rng(5)
    ramp = slant_ramp(rng.uniform(-0.05, 0.05, (2, 8)))
    noisy = solar_image * ramp + rng.standard_normal((2, 8, 4096)) * ramp / 100.0
    _, continuum = normalise_orders(noisy, return_continuum=True)
    assert np.all(np.abs(np.median(continuum / ramp, axis=-1) - 1) < 0.04)
    one = normalise_orders(noisy[1])
    batch = normalise_orders(torch.tensor(noisy))
    np.testing.assert_allclose(batch[1].numpy(), one, atol=1e-9)


def test_thinned_iterations_give_the_full_resolution_continuum(solar_image):
    """The default (every 16th pixel until the last clip) against every pixel throughout."""
    rng = np.random.default_rng(8)
    ramp = slant_ramp(rng.uniform(-0.05, 0.05, (4, 8)))
    for snr in (20.0, 200.0):
        noisy = solar_image * ramp + rng.standard_normal((4, 8, 4096)) * ramp / snr
        _, thinned = normalise_orders(noisy, return_continuum=True)
        _, full = normalise_orders(noisy, return_continuum=True, thin=1)
        # both sit above the true continuum (the ramp) by the envelope bias of a line-rich
        # spectrum (~2 % at SNR 20, ~1 % at 200); thinning must not add to it
        error_thinned = np.abs(thinned / ramp - 1).mean()
        error_full = np.abs(full / ramp - 1).mean()
        assert error_thinned <= 1.05 * error_full
        relative = np.abs(thinned / full - 1)
        assert np.median(relative) < 0.1 * error_full and relative.max() < 0.03
    short = normalise_orders(solar_image[:, :512])  # < 256·thin pixels: no thinning
    np.testing.assert_allclose(short, normalise_orders(solar_image[:, :512], thin=1))


def test_envelope_continuum_and_its_change_with_the_pixels_held(solar_image):
    """envelope_continuum is normalise_orders' continuum; continuum_change fits a change of the
    images on the pixels it rests on (what the emulator's Jacobian uses)."""
    ramp = torch.tensor(slant_ramp(np.array([0.03, -0.02, 0.0, 0.01, -0.04, 0.02, 0.0, 0.05])))
    image = (torch.tensor(solar_image) * ramp)[None]
    continuum, selection = envelope_continuum(image)
    torch.testing.assert_close(image / continuum, normalise_orders(image), atol=1e-12, rtol=0)
    assert selection.shape == (1, 8, 4096) and 0.05 < float(selection.double().mean()) < 0.99
    assert bool((selection.sum(-1) >= 204).all())  # every order rests on ≥ 5 % of its pixels
    tilt = 1e-4 * (1.0 + torch.linspace(-1.0, 1.0, 4096, dtype=torch.float64)).expand(8, -1)  # a line
    torch.testing.assert_close(continuum_change(tilt[None], selection), tilt[None].expand(1, 8, -1),
                               atol=1e-12, rtol=0)
    line = torch.zeros_like(image)
    line[..., 2000:2010] = -1e-3  # a line deepens: the envelope hardly moves
    assert float(continuum_change(line, selection).abs().max()) < 1e-5
    with pytest.raises(ValueError, match="not positive"):
        envelope_continuum(-image)


def test_normalise_ignores_masked_pixels_and_rejects_bad_input():
    image = apply_slant(np.full((8, 4096), 2.0), np.full(8, 0.03))
    gapped = image.copy()
    mask = np.zeros_like(image, dtype=bool)
    mask[5, 1000:1800] = True
    gapped[5, 1000:1800] = np.nan  # like the zero-flux CCD gap of a HARPS spectrum
    gapped[5, 1800:1810] = 0.0
    mask[5, 1800:1810] = True
    normalised = normalise_orders(gapped, mask=mask)
    np.testing.assert_allclose(normalised[~mask], 1.0, atol=1e-6)
    # a mask that masks nothing gives exactly the unmasked result (real spectra always
    # come with a mask)
    noisy = image + np.random.default_rng(2).normal(0.0, 0.02, image.shape)
    nothing = np.zeros_like(image, dtype=bool)
    np.testing.assert_array_equal(normalise_orders(noisy, mask=nothing),
                                  normalise_orders(noisy))
    with pytest.raises(ValueError, match="NaN"):
        normalise_orders(gapped)
    with pytest.raises(ValueError, match="shape"):
        normalise_orders(np.ones(4096))
    with pytest.raises(ValueError, match="broadcast"):
        normalise_orders(image, mask=np.zeros((3, 4096), dtype=bool))
    with pytest.raises(ValueError, match="unmasked pixels"):
        normalise_orders(image, mask=np.ones_like(image, dtype=bool))


# back to 1D -------------------------------------------------------------------------------


def test_image_to_1d_merges_overlapping_orders():
    pixels = order_wavelengths()
    smooth = lambda w: 1.0 + 1e-4 * (w - 5200.0)  # noqa: E731
    wave, flux = image_to_1d(smooth(pixels))
    assert np.all(np.diff(wave) > 0)
    assert wave[0] == pixels[0, 0] and wave[-1] == pixels[-1, -1]
    np.testing.assert_allclose(flux, smooth(wave), atol=1e-9)
    assert wave.size < pixels.size  # overlaps were merged, not duplicated
    wave_b, flux_b = image_to_1d(torch.tensor(np.stack([smooth(pixels), 2 * smooth(pixels)])))
    np.testing.assert_array_equal(wave_b, wave)
    np.testing.assert_allclose(flux_b[1], 2 * flux, atol=1e-9)
    with pytest.raises(ValueError, match="do not match"):
        image_to_1d(np.ones((7, 4096)))

"""Tests of paper_lib.synthetic.broadening and .resample: kernels, transforms, log-λ resampling and batched broadening."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from paper_lib import paths
from paper_lib.instrument import C_KMS, R
from paper_lib.synthetic.broadening import DEFAULT_EPSILON, FWHM_TO_SIGMA, INSTRUMENT_N_SIGMA, _rotation_transfer_tabulated, broaden, broadening_transfer, fft_layout, instrument_kernel, instrument_sigma_kms, instrument_transfer, rotation_kernel, rotation_transfer
from paper_lib.synthetic.resample import Resampler, log_lambda_grid, log_lambda_step_kms, resample_from_log_lambda, resample_to_log_lambda



STEP = 0.5  # km/s per log-λ pixel, as used by the generator


def reference_spectrum(teff=5750.0, logg=4.5, mh=0.0, window=(5160.0, 5180.0)):
    """One node of the shared reference grid (wavelength Å, normalised flux) in ``window``."""
    try:
        path = paths.shared_file("reference_grid/reference_grid.fits")
    except FileNotFoundError as error:
        pytest.skip(f"reference grid not available: {error}")
    from astropy.io import fits

    with fits.open(path, memmap=True, do_not_scale_image_data=True) as hdul:
        table = hdul["LABELS"].data
        row = np.flatnonzero((table["teff"] == teff) & (table["logg"] == logg) & (table["mh"] == mh))
        assert row.size == 1, "node missing from the reference grid"
        header = hdul[0].header
        flux = hdul[0].data[row[0]] * header.get("BSCALE", 1.0) + header.get("BZERO", 0.0)
        wave = np.asarray(hdul["WAVE"].data, dtype=np.float64)
    select = (wave >= window[0]) & (wave <= window[1])
    return wave[select], np.asarray(flux[select], dtype=np.float64)


def broaden_linear(wave, flux, vsini, *, R=R, step=STEP, out_wave=None):
    """Broaden a linear-λ spectrum through the log-λ grid and back (float64)."""
    log_wave = log_lambda_grid(wave[0], wave[-1], step)
    log_wave = log_wave[log_wave <= wave[-1]]
    on_log = resample_to_log_lambda(wave, torch.tensor(flux)[None], log_wave)
    broadened = broaden(on_log, torch.tensor([float(vsini)]), step, R=R)
    if out_wave is None:
        out_wave = wave[(wave >= log_wave[0]) & (wave <= log_wave[-1])]
    return out_wave, resample_from_log_lambda(log_wave, broadened, out_wave)[0].numpy()


# grids ------------------------------------------------------------------------------------


def test_log_lambda_grid_has_constant_velocity_step():
    wave = log_lambda_grid(5020.0, 5400.0, STEP)
    velocity = np.diff(np.log(wave)) * C_KMS
    assert wave[0] == 5020.0 and wave[-1] >= 5400.0 and wave[-2] < 5400.0
    np.testing.assert_allclose(velocity, STEP, rtol=1e-9)
    assert log_lambda_step_kms(wave) == pytest.approx(STEP, rel=1e-9)


def test_log_lambda_grid_rejects_bad_arguments():
    with pytest.raises(ValueError, match="must exceed"):
        log_lambda_grid(5400.0, 5020.0, STEP)
    with pytest.raises(ValueError, match="positive"):
        log_lambda_grid(5020.0, 5400.0, 0.0)


def test_cubic_resampling_is_exact_for_cubics_and_round_trips():
    wave = np.arange(5100.0, 5110.0, 0.01)
    log_wave = log_lambda_grid(5100.5, 5109.0, STEP)
    poly = lambda w: 1.0 + 0.01 * (w - 5105) - 0.002 * (w - 5105) ** 2  # noqa: E731
    np.testing.assert_allclose(resample_to_log_lambda(wave, poly(wave), log_wave),
                               poly(log_wave), atol=1e-10)
    line = 1.0 - 0.6 * np.exp(-0.5 * ((wave - 5105.0) / 0.03) ** 2)  # a resolved line
    there = resample_to_log_lambda(wave, line, log_wave)
    inner = wave[(wave > 5101) & (wave < 5108)]
    back = resample_from_log_lambda(log_wave, there, inner)
    np.testing.assert_allclose(back, 1.0 - 0.6 * np.exp(-0.5 * ((inner - 5105.0) / 0.03) ** 2),
                               atol=2e-3)


def test_torch_and_numpy_resampling_agree():
    wave = np.arange(5100.0, 5110.0, 0.01)
    flux = 1.0 - 0.5 * np.exp(-0.5 * ((wave[None, :] - [[5103.0], [5106.0]]) / 0.05) ** 2)
    out_wave = np.linspace(5101.0, 5109.0, 12 * 40).reshape(12, 40)  # any output shape
    for kind in ("cubic", "linear"):
        resampler = Resampler(wave, out_wave, kind=kind)
        as_numpy = resampler(flux)
        as_torch = resampler(torch.tensor(flux))
        assert as_numpy.shape == tuple(as_torch.shape) == (2, 12, 40)
        np.testing.assert_allclose(as_torch.numpy(), as_numpy, atol=1e-12)


def test_resampling_outside_the_input_raises():
    wave = np.arange(5100.0, 5110.0, 0.01)
    with pytest.raises(ValueError, match="outside the input range"):
        resample_to_log_lambda(wave, np.ones_like(wave), log_lambda_grid(5099.0, 5105.0, STEP))


# kernels and transfer functions ------------------------------------------------------------


@pytest.mark.parametrize("vsini", [0.0, 1e-4, 0.2, 0.5, 1.3, 7.0, 30.0])
def test_rotation_kernel_is_normalised_and_symmetric(vsini):
    kernel = rotation_kernel(vsini, STEP)
    assert kernel.ndim == 1 and kernel.size % 2 == 1
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(kernel >= 0)
    np.testing.assert_allclose(kernel, kernel[::-1], atol=1e-15)


def test_rotation_kernel_goes_smoothly_to_a_delta():
    delta = rotation_kernel(0.0, STEP, half_width=3)
    np.testing.assert_array_equal(delta, [0, 0, 0, 1, 0, 0, 0])
    tiny = rotation_kernel(1e-6, STEP, half_width=3)
    np.testing.assert_allclose(tiny, delta, atol=1e-12)
    sub_pixel = rotation_kernel(0.4, STEP, half_width=3)  # reaches into the next bins
    assert 0.05 < sub_pixel[2] < 0.2 and sub_pixel[3] > 0.6 and sub_pixel[1] == 0.0


def test_rotation_kernel_variance_matches_grays_profile():
    vsini, epsilon = 20.0, 0.6
    norm = math.pi * vsini * (1 - epsilon / 3)

    def profile(v):
        x2 = (v / vsini) ** 2
        return (2 * (1 - epsilon) * math.sqrt(1 - x2) + 0.5 * math.pi * epsilon * (1 - x2)) / norm

    assert integrate.quad(profile, -vsini, vsini)[0] == pytest.approx(1.0, abs=1e-9)
    variance = integrate.quad(lambda v: v * v * profile(v), -vsini, vsini)[0]
    kernel = rotation_kernel(vsini, STEP, epsilon)
    velocity = (np.arange(kernel.size) - kernel.size // 2) * STEP
    # integrating over each bin adds the variance of a one-pixel box, STEP²/12
    assert (kernel * velocity**2).sum() == pytest.approx(variance + STEP**2 / 12, rel=1e-3)


def test_rotation_transfer_is_the_fourier_transform_of_the_kernel():
    vsini = np.array([4.0, 10.0, 25.0])  # ≥ 8 pixels wide, so aliasing is small
    kernels = rotation_kernel(vsini, STEP, 0.6, half_width=200)
    n = kernels.shape[1]
    dft = np.fft.rfft(np.fft.ifftshift(kernels, axes=1), axis=1).real
    frequency = np.fft.rfftfreq(n, d=STEP)
    expected = rotation_transfer(frequency, vsini, 0.6).numpy() * np.sinc(frequency * STEP)
    keep = frequency < 0.25  # below half the Nyquist frequency aliasing is negligible
    np.testing.assert_allclose(dft[:, keep], expected[:, keep], atol=2e-3)
    assert rotation_transfer(np.array([0.0]), 12.0).item() == pytest.approx(1.0)
    torch.testing.assert_close(rotation_transfer(frequency, 0.0),
                               torch.ones(frequency.size, dtype=torch.float64))


def test_tabulated_transfer_used_by_broaden_matches_the_exact_one():
    frequency = torch.fft.rfftfreq(20000, d=STEP, dtype=torch.float64)
    vsini = torch.tensor([0.0, 0.01, 0.3, 2.0, 17.3, 30.0], dtype=torch.float64)
    exact = rotation_transfer(frequency, vsini)
    for dtype in (torch.float64, torch.float32):
        fast = _rotation_transfer_tabulated(frequency, vsini, DEFAULT_EPSILON, dtype)
        assert (fast.double() - exact).abs().max() < 2e-6


def test_fft_layout_and_transfer_shared_with_the_generator():
    pad, n_fft = fft_layout(1000, 30.0, STEP)
    reach = 30.0 + INSTRUMENT_N_SIGMA * instrument_sigma_kms(R)
    assert pad * STEP >= reach and n_fft >= 1000 + 2 * pad
    assert fft_layout(1000, 0.0, STEP, None)[0] == 2  # no reach: only the safety samples
    with pytest.raises(ValueError, match="undersamples"):
        fft_layout(1000, 30.0, 2.0)
    frequency = torch.fft.rfftfreq(n_fft, d=STEP, dtype=torch.float64)
    vsini = torch.tensor([0.0, 4.2, 30.0], dtype=torch.float64)
    transfer = broadening_transfer(frequency, vsini, R, DEFAULT_EPSILON,
                                      torch.float64)
    expected = rotation_transfer(frequency, vsini) * instrument_transfer(frequency,
                                                                               R)
    assert (transfer - expected).abs().max() < 2e-6
    rotation_only = broadening_transfer(frequency, vsini, None, DEFAULT_EPSILON)
    assert rotation_only.dtype == torch.float32
    assert (rotation_only.double() - rotation_transfer(frequency, vsini)).abs().max() < 2e-6


def test_instrument_kernel_is_normalised_with_the_right_width():
    kernel = instrument_kernel(115000.0, STEP)
    velocity = (np.arange(kernel.size) - kernel.size // 2) * STEP
    sigma = C_KMS / 115000.0 / (2 * math.sqrt(2 * math.log(2)))
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    assert math.sqrt((kernel * velocity**2).sum()) == pytest.approx(sigma, rel=1e-4)
    with pytest.raises(ValueError, match="undersamples"):
        instrument_kernel(115000.0, 2.0)


# broadening -------------------------------------------------------------------------------


@pytest.mark.parametrize("vsini", [5.0, 12.0, 30.0])
def test_rotation_matches_pyastronomy_rotbroad(vsini):
    pyasl = pytest.importorskip("PyAstronomy.pyasl")
    wave, flux = reference_spectrum(window=(5165.0, 5180.0))
    inner = wave[(wave > 5167.0) & (wave < 5178.0)]  # away from the edges
    _, ours = broaden_linear(wave, flux, vsini, R=None, out_wave=inner)
    theirs = pyasl.rotBroad(wave, flux, 0.6, vsini)[np.isin(wave, inner)]
    assert flux.min() < 0.2  # the window holds deep lines (Mg b), so the test can fail
    assert np.abs(ours - theirs).max() <= 2e-3


def test_vsini_zero_leaves_only_the_instrument_profile():
    wave, flux = reference_spectrum(window=(5165.0, 5180.0))
    inner = wave[(wave > 5167.0) & (wave < 5178.0)]
    _, ours = broaden_linear(wave, flux, 0.0, out_wave=inner)
    # direct Gaussian convolution in wavelength, σ_λ = λ / (2.3548 R) at each output point
    sigma = inner / R * FWHM_TO_SIGMA
    weights = np.exp(-0.5 * ((wave[None, :] - inner[:, None]) / sigma[:, None]) ** 2)
    direct = (weights * flux).sum(1) / weights.sum(1)
    assert np.abs(ours - np.interp(inner, wave, flux)).max() > 0.02  # it did broaden
    assert np.abs(ours - direct).max() <= 1e-3


def test_batch_is_broadened_like_single_spectra():
    wave, flux = reference_spectrum(window=(5165.0, 5180.0))
    log_wave = log_lambda_grid(wave[0], wave[-1] - 0.1, STEP)
    one = resample_to_log_lambda(wave, torch.tensor(flux, dtype=torch.float32), log_wave)
    vsini = torch.tensor([0.0, 3.0, 29.5])
    batch = broaden(one.expand(3, -1).contiguous(), vsini, STEP)
    for i, v in enumerate(vsini):
        single = broaden(one[None], v.reshape(1), STEP)[0]
        torch.testing.assert_close(batch[i], single, atol=1e-6, rtol=0)
    same = broaden(one.expand(2, -1).contiguous(), 3.0, STEP)  # a scalar v sin i for all
    torch.testing.assert_close(same[1], batch[1], atol=1e-6, rtol=0)
    assert batch.dtype == torch.float32 and batch.shape == (3, log_wave.size)


def test_broadening_conserves_equivalent_width_and_pads_with_the_continuum():
    log_wave = log_lambda_grid(5100.0, 5110.0, STEP)
    velocity = (np.log(log_wave / 5105.0)) * C_KMS
    line = 1.0 - 0.7 * np.exp(-0.5 * (velocity / 2.0) ** 2)
    line[:150] = 0.98  # a continuum level that differs from 1 near the blue edge
    flux = torch.tensor(np.stack([line, line]))
    out = broaden(flux, torch.tensor([0.0, 30.0]), STEP).numpy()
    middle = slice(300, -300)
    np.testing.assert_allclose((1 - out[:, middle]).sum(1), (1 - line[middle]).sum(), rtol=1e-6)
    assert out[1].min() > line.min() + 0.3  # the rotating star's line is shallower
    np.testing.assert_allclose(out[:, :5], 0.98, atol=1e-9)  # edge value, not zero padding
    np.testing.assert_allclose(out[:, -5:], 1.0, atol=1e-9)


def test_broaden_rejects_bad_input():
    good = torch.ones(2, 100)
    with pytest.raises(ValueError, match=r"shape \(B, n\)"):
        broaden(torch.ones(100), torch.tensor([1.0]), STEP)
    with pytest.raises(ValueError, match="torch tensor"):
        broaden(np.ones((2, 100)), [1.0, 2.0], STEP)
    bad = good.clone()
    bad[1, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        broaden(bad, torch.tensor([1.0, 2.0]), STEP)
    with pytest.raises(ValueError, match="batch of 2"):
        broaden(good, torch.tensor([1.0, 2.0, 3.0]), STEP)
    with pytest.raises(ValueError, match="non-negative"):
        broaden(good, torch.tensor([1.0, -2.0]), STEP)
    with pytest.raises(ValueError, match="NaN"):
        broaden(good, torch.tensor([1.0, float("nan")]), STEP)


# macroturbulence ----------------------------------------------------------------------------

def gray_radial_tangential(v: float, zeta: float) -> float:
    """Gray's radial–tangential profile by direct quadrature over the disk (independent of the
    closed form): Gaussians of dispersion ζ cos θ and ζ sin θ, weight 2 cos θ sin θ dθ."""
    def integrand(theta):
        c, s = math.cos(theta), math.sin(theta)
        radial = math.exp(-(v / (zeta * c)) ** 2) / (math.sqrt(math.pi) * zeta * c)
        tangential = math.exp(-(v / (zeta * s)) ** 2) / (math.sqrt(math.pi) * zeta * s)
        return 0.5 * (radial + tangential) * 2.0 * c * s
    return integrate.quad(integrand, 1e-9, math.pi / 2 - 1e-9, limit=200)[0]


@pytest.mark.parametrize("zeta", [1.5, 3.2, 6.0])
def test_radial_tangential_profile_matches_quadrature(zeta):
    from paper_lib.synthetic.broadening import radial_tangential_profile

    v = np.linspace(-4 * zeta, 4 * zeta, 81)
    numeric = np.array([gray_radial_tangential(x, zeta) for x in v])
    np.testing.assert_allclose(radial_tangential_profile(v, zeta), numeric, atol=1e-9)
    norm = integrate.quad(lambda x: gray_radial_tangential(x, zeta), -10 * zeta, 10 * zeta,
                          limit=400)[0]
    assert norm == pytest.approx(1.0, abs=1e-6)
    fine = np.linspace(0, 3 * zeta, 30001)
    half = fine[np.argmax(radial_tangential_profile(fine, zeta) < 0.5 * radial_tangential_profile(0.0, zeta))]
    # FWHM of the quadrature profile by bisection, independent of the closed form
    lo, hi = 0.0, 3 * zeta
    peak = gray_radial_tangential(0.0, zeta)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if gray_radial_tangential(mid, zeta) > 0.5 * peak else (lo, mid)
    assert 2 * half == pytest.approx(2 * lo, rel=1e-3)


def test_macroturbulence_transfer_is_the_fourier_transform_of_the_profile():
    from paper_lib.synthetic.broadening import macroturbulence_transfer, radial_tangential_profile

    zeta, step, n = 3.2, 0.02, 1 << 14
    v = (np.arange(n) - n // 2) * step
    sampled = np.fft.rfft(np.fft.ifftshift(radial_tangential_profile(v, zeta) * step)).real
    frequency = torch.from_numpy(np.fft.rfftfreq(n, d=step))
    transfer = macroturbulence_transfer(frequency, torch.tensor([zeta], dtype=torch.float64))[0]
    np.testing.assert_allclose(transfer.numpy(), sampled, atol=2e-4)  # the cusp at v = 0
    assert transfer[0].item() == 1.0
    zero = macroturbulence_transfer(frequency, torch.tensor([0.0], dtype=torch.float64))
    assert torch.all(zero == 1.0)


def test_broaden_with_macroturbulence_equals_direct_convolution():
    """broaden(vmacro=ζ) on a line = the line convolved with the quadrature profile (sampled)."""
    zeta, n = 4.0, 801
    x = (np.arange(n) - n // 2) * STEP
    line = 1.0 - 0.6 * np.exp(-0.5 * (x / 2.0) ** 2)
    ours = broaden(torch.tensor(line[None]), 0.0, STEP, R=None, vmacro=zeta)[0].numpy()
    kv = np.arange(-40, 41) * STEP
    kernel = np.array([gray_radial_tangential(k, zeta) for k in kv]) * STEP
    direct = 1.0 - np.convolve(1.0 - line, kernel / kernel.sum(), mode="same")
    assert np.max(np.abs(ours - direct)[100:-100]) < 2e-3
    assert ours.min() > line.min() + 0.05  # the line really is broadened


def test_broaden_rejects_bad_vmacro():
    flux = torch.ones(2, 64, dtype=torch.float64)
    for bad in (-1.0, float("nan"), [1.0, 2.0, 3.0]):
        with pytest.raises(ValueError, match="vmacro"):
            broaden(flux, 0.0, STEP, vmacro=bad)

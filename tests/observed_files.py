"""What the tests of paper_lib.observed write and compare against: the real HARPS-N
calibration's wavelength polynomial in a header, a synthetic line spectrum, e2ds and s1d files,
the solar node of a grid (shared by test_observed, test_observed_errors, test_observed_pixels)."""

from __future__ import annotations

import numpy as np
import torch
from astropy.io import fits

from paper_lib.echelle.layout import order_wavelengths
from paper_lib.observed.fits import e2ds_wavelengths
from paper_lib.observed.model_input import SOLAR_NODE
from paper_lib.synthetic.broadening import broaden
from paper_lib.synthetic.grid import Grid
from paper_lib.synthetic.resample import log_lambda_grid, resample_to_log_lambda

from .conftest import shared_or_skip

WAVE_MATRIX = "harpsn/HARPN_WAVE_MATRIX_A.fits"
BLAZE = "harpsn/HARPN_BLAZE_A.fits"
SUN_S1D = "sun/Sun_HARPS_Ganymede_s1d.fits"
SUN_UVES = "sun/UVES_Sun-1_cleaned_norm.txt"


def calibration_header(prefix: str = "TNG", row_offset: int = 0) -> fits.Header:
    """The degree-3 wavelength polynomial keys of the real HARPS-N calibration, copied."""
    source = fits.getheader(shared_or_skip(WAVE_MATRIX))
    header = fits.Header()
    header[f"HIERARCH {prefix} DRS CAL TH DEG LL"] = source["HIERARCH TNG DRS CAL TH DEG LL"]
    for index in range(69 * 4):
        value = source[f"HIERARCH TNG DRS CAL TH COEFF LL{index}"]
        header[f"HIERARCH {prefix} DRS CAL TH COEFF LL{index + 4 * row_offset}"] = value
    return header


RNG = np.random.default_rng(2021)
LINE_CENTRES = np.arange(3850.0, 6950.0, 1.5) + RNG.uniform(-0.3, 0.3, 2067)
LINE_DEPTHS = RNG.uniform(0.05, 0.8, LINE_CENTRES.size)
LINE_SIGMAS = RNG.uniform(0.03, 0.06, LINE_CENTRES.size)  # Å


def line_spectrum(wave: np.ndarray) -> np.ndarray:
    """Continuum 1 with Gaussian absorption lines every ~1.5 Å, at any (…, n) wavelengths."""
    wave = np.atleast_2d(wave)
    flux = np.ones_like(wave)
    for row, w in enumerate(wave):
        near = (LINE_CENTRES > w.min() - 1.0) & (LINE_CENTRES < w.max() + 1.0)
        profile = np.exp(-0.5 * ((w[None, :] - LINE_CENTRES[near, None]) / LINE_SIGMAS[near, None]) ** 2)
        flux[row] -= (LINE_DEPTHS[near, None] * profile).sum(axis=0)
    return flux


def write_e2ds(folder, flux, header, name="HARPN.test_e2ds_A.fits", blaze=None, blaze_name=None):
    """Write an e2ds frame (float32) and optionally its blaze file named in the header."""
    header = header.copy()
    if blaze is not None:
        blaze_name = blaze_name or name.replace("e2ds", "blaze")
        fits.PrimaryHDU(np.asarray(blaze, dtype=np.float32)).writeto(folder / blaze_name)
        header["HIERARCH TNG DRS BLAZE FILE"] = blaze_name
    path = folder / name
    fits.PrimaryHDU(np.asarray(flux, dtype=np.float32), header=header).writeto(path)
    return path


def synthetic_e2ds(folder, **changes):
    """A HARPS-N e2ds of line_spectrum × real blaze × a slanted response, with its blaze file.

    Returns (path, original 8 × 4096 image on the training wavelengths).
    """
    header = calibration_header()
    wave = e2ds_wavelengths(header, 69)
    blaze = fits.getdata(shared_or_skip(BLAZE)).astype(np.float64)
    response = 5000.0 * (1.0 + 0.05 * np.linspace(-1, 1, 4096)[None, :] * np.linspace(-1, 1, 69)[:, None])
    flux = line_spectrum(wave) * blaze * response
    for row, value in changes.get("fill_rows", {}).items():
        flux[row] = value
    path = write_e2ds(folder, flux, header, blaze=blaze)
    return path, line_spectrum(order_wavelengths())


def write_s1d(path, start, step, flux, crpix=1.0):
    header = fits.Header()
    header["CRVAL1"], header["CDELT1"], header["CRPIX1"] = start, step, crpix
    fits.PrimaryHDU(np.asarray(flux, dtype=np.float32), header=header).writeto(path)
    return path


def solar_node(grid: Grid):
    return grid.wavelength, grid.node_flux(*SOLAR_NODE).astype(np.float64)


def broadened_sun(grid: Grid, step_kms: float = 0.25):
    """Solar node on a log-λ grid, broadened by v sin i = 2 km/s and R = 115 000."""
    wave, flux = solar_node(grid)
    log_wave = log_lambda_grid(wave[0], wave[-1] - 0.01, step_kms)
    flux = resample_to_log_lambda(wave, flux, log_wave)
    flux = broaden(torch.tensor(flux[None]), 2.0, step_kms).numpy()[0]
    return log_wave, flux

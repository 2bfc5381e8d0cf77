"""The HARPS-N échelle layout: 8 orders × 4096 pixels covering 5026–5395 Å.

The orders are HARPS-N physical orders 121–114 (:mod:`paper_lib.instrument`). Their pixel
wavelengths come from a real HARPS-N wavelength calibration (a degree-3 polynomial per
order, λ(px) = Σ_j c_j px^j, px = 0 … 4095), stored in ``paper_lib/data/harpsn_orders.json``
by :func:`extract_layout_from_fits`. Users can pass the coefficients of their own
observation as a ``layout``.

Functions here work on numpy arrays and on torch batches alike:

* :func:`order_wavelengths` – (8, 4096) air wavelengths [Å];
* :func:`resample_to_orders` – a 1D spectrum (or a batch) → (…, 8, 4096) image;
* :func:`image_to_1d` – back to one 1D spectrum for figures;
* :func:`load_blaze` – the real HARPS-N blaze of the 8 orders (optional).

The slant and the continuum normalisation are in :mod:`paper_lib.echelle.continuum`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .. import paths
from ..instrument import N_PIXELS, PHYSICAL_ORDER_OFFSET, ROWS
from ..synthetic.resample import Resampler

LAYOUT_FILE = paths.package_data / "harpsn_orders.json"
LAYOUT_SOURCE = (
    "HARPS-N wavelength calibration HARPN_WAVE_MATRIX_A.fits, 2016-10-12, DRS HARPN_3.8, "
    "from GitHub pegasilab/yarara Material/ commit 5baf2e5a"
)
COEFF_KEY = "HIERARCH TNG DRS CAL TH COEFF LL{}"
DEGREE_KEY = "HIERARCH TNG DRS CAL TH DEG LL"


# layout -----------------------------------------------------------------------------------


def extract_layout_from_fits(path, *, rows=ROWS, source: str = LAYOUT_SOURCE) -> dict:
    """Read the wavelength polynomials of ``rows`` from a HARPS-N calibration FITS header.

    The header holds, per row r, the coefficients ``COEFF LL{(deg+1)·r + j}`` (j = 0 … deg)
    of λ(px) = Σ_j c_j px^j in air Å. Tested on ``HARPN_WAVE_MATRIX_A.fits``; the HARPS-N
    DRS writes the same keywords into the headers of its extracted (e2ds) frames, so an
    observation's own calibration can be read the same way. Returns a JSON-serialisable
    dict; write it with :func:`write_layout`. Raises ValueError if a keyword is missing.
    """
    from astropy.io import fits

    header = fits.getheader(path)
    try:
        degree = int(header[DEGREE_KEY])
        coefficients = [
            [float(header[COEFF_KEY.format((degree + 1) * row + j)]) for j in range(degree + 1)]
            for row in rows
        ]
    except KeyError as error:
        raise ValueError(
            f"{path}: no HARPS-N wavelength polynomial in the header ({error})"
        ) from None
    n_pixels = int(header.get("NAXIS1", N_PIXELS))
    return {
        "source": source,
        "medium": "air",
        "unit": "Angstrom",
        "formula": "lambda(px) = sum_j coefficients[j] * px**j, px = 0 .. n_pixels-1",
        "degree": degree,
        "n_pixels": n_pixels,
        "rows": [int(row) for row in rows],
        "orders": [PHYSICAL_ORDER_OFFSET - int(row) for row in rows],
        "coefficients": coefficients,
    }


def write_layout(layout: dict, path=LAYOUT_FILE) -> Path:
    """Write a layout dict (see :func:`extract_layout_from_fits`) as indented JSON."""
    path = Path(path)
    path.write_text(json.dumps(layout, indent=2) + "\n")
    return path


def load_layout(path=LAYOUT_FILE) -> dict:
    """The layout stored in ``paper_lib/data/harpsn_orders.json`` (or ``path``)."""
    return json.loads(Path(path).read_text())


def _layout_coefficients(layout) -> tuple[np.ndarray, int]:
    """(n_orders, deg+1) coefficients and the number of pixels of any accepted layout."""
    if layout is None:
        layout = load_layout()
    elif isinstance(layout, (str, Path)):
        layout = load_layout(layout)
    if isinstance(layout, dict):
        coefficients = np.asarray(layout["coefficients"], dtype=np.float64)
        n_pixels = int(layout.get("n_pixels", N_PIXELS))
    else:
        coefficients = np.asarray(layout, dtype=np.float64)
        n_pixels = N_PIXELS
    if coefficients.ndim != 2 or coefficients.shape[1] < 2:
        raise ValueError(
            f"layout coefficients must have shape (n_orders, degree+1), got {coefficients.shape}"
        )
    if not np.all(np.isfinite(coefficients)):
        raise ValueError("layout coefficients contain NaN or infinite values")
    return coefficients, n_pixels


_WAVE_CACHE: dict = {}


def order_wavelengths(layout=None) -> np.ndarray:
    """Air wavelengths [Å] of every pixel, shape (n_orders, n_pixels) = (8, 4096) by default.

    ``layout`` is ``None`` (the stored HARPS-N calibration), a path to a layout JSON, a layout
    dict, or an array of polynomial coefficients (n_orders, degree+1) for px = 0 … 4095.
    Orders are returned sorted by increasing wavelength; each must increase along its pixels.
    """
    if layout is None:
        if "default" not in _WAVE_CACHE:
            _WAVE_CACHE["default"] = order_wavelengths(load_layout())
        return _WAVE_CACHE["default"].copy()
    coefficients, n_pixels = _layout_coefficients(layout)
    pixels = np.arange(n_pixels, dtype=np.float64)
    wave = np.stack([np.polynomial.polynomial.polyval(pixels, c) for c in coefficients])
    if np.any(np.diff(wave, axis=1) <= 0):
        raise ValueError("order wavelengths must increase along the pixels")
    return wave[np.argsort(wave[:, 0])]


def _order_wave(order_wave) -> np.ndarray:
    wave = order_wavelengths() if order_wave is None else np.asarray(order_wave, dtype=np.float64)
    if wave.ndim != 2:
        raise ValueError(f"order_wave must have shape (n_orders, n_pixels), got {wave.shape}")
    if not np.all(np.isfinite(wave)):
        raise ValueError("order_wave contains NaN or infinite values")
    return wave


def load_blaze(path=None, *, rows=ROWS) -> np.ndarray:
    """The HARPS-N blaze function of the 8 orders, (8, 4096), from ``HARPN_BLAZE_A.fits``.

    ``path`` defaults to the shared data file (see :func:`paper_lib.paths.shared_file`, which
    says where to obtain it). Rows 36–43 are already in increasing wavelength. The blaze
    peaks at ≈1.03–1.05 near px 2330–2390 and drops to ≈0.1 at the order edges.
    """
    from astropy.io import fits

    if path is None:
        path = paths.shared_file("harpsn/HARPN_BLAZE_A.fits")
    with fits.open(path) as hdul:
        data = np.asarray(hdul[0].data, dtype=np.float64)
    if data.ndim != 2 or max(rows) >= data.shape[0]:
        raise ValueError(f"{path}: expected a (69, 4096) blaze frame, got {data.shape}")
    return data[list(rows)]


# validation helpers -----------------------------------------------------------------------


def is_torch(array) -> bool:
    return isinstance(array, torch.Tensor)


def check_finite(array, name: str) -> None:
    finite = torch.isfinite(array).all() if is_torch(array) else np.isfinite(array).all()
    if not bool(finite):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_image(image, name: str = "image"):
    if not is_torch(image):
        image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(
            f"{name} must have shape (n_orders, n_pixels) or (B, n_orders, n_pixels), "
            f"got {tuple(image.shape)}"
        )
    if image.shape[-1] < 8:
        raise ValueError(f"{name} has only {image.shape[-1]} pixels per order")
    return image


# resampling -------------------------------------------------------------------------------

_RESAMPLER_CACHE: dict = {}


def _resampler(wave: np.ndarray, order_wave: np.ndarray, kind: str) -> Resampler:
    """A cached :class:`Resampler` (the generator calls this with the same grids every batch)."""
    key = (wave.size, wave[0], wave[-1], float(wave.sum()), order_wave.shape,
           float(order_wave.sum()), kind)
    if key not in _RESAMPLER_CACHE:
        if len(_RESAMPLER_CACHE) > 16:
            _RESAMPLER_CACHE.clear()
        _RESAMPLER_CACHE[key] = Resampler(wave, order_wave, kind=kind)
    return _RESAMPLER_CACHE[key]


def resample_to_orders(wave, flux, order_wave=None, *, kind: str = "cubic"):
    """Interpolate a 1D spectrum (or a batch) onto the échelle pixels.

    Parameters
    ----------
    wave : (n,) array
        Wavelengths [Å] of ``flux``, strictly increasing and uniform in λ or in ln λ, sampled
        finely compared with the pixels (0.01 Å or a ~0.5 km/s log-λ grid against ~0.014 Å
        pixels), so that cubic (Keys) interpolation keeps line depths at R = 115 000.
    flux : numpy (n,) or (B, n), or torch (B, n)
    order_wave : (n_orders, n_pixels) array, default :func:`order_wavelengths`
    kind : "cubic" or "linear"

    Returns the image (n_orders, n_pixels) or (B, n_orders, n_pixels), same type as ``flux``.
    Raises ValueError if the pixels reach beyond ``wave`` or if ``flux`` has a wrong shape or
    NaNs.
    """
    order_wave = _order_wave(order_wave)
    wave = np.asarray(wave, dtype=np.float64)
    if wave.ndim != 1:
        raise ValueError(f"wave must be one-dimensional, got shape {wave.shape}")
    if not is_torch(flux):
        flux = np.asarray(flux)
    if flux.ndim not in (1, 2) or flux.shape[-1] != wave.size:
        raise ValueError(
            f"flux must have shape (n,) or (B, n) with n = len(wave) = {wave.size}, "
            f"got {tuple(flux.shape)}"
        )
    check_finite(flux, "flux")
    if order_wave.min() < wave[0] or order_wave.max() > wave[-1]:
        raise ValueError(
            f"the orders span {order_wave.min():.2f}–{order_wave.max():.2f} Å but the spectrum "
            f"covers only {wave[0]:.2f}–{wave[-1]:.2f} Å"
        )
    return _resampler(wave, order_wave, kind)(flux)


# back to 1D -------------------------------------------------------------------------------


def image_to_1d(image, order_wave=None):
    """Merge an échelle image into one 1D spectrum (for figures).

    Orders are sorted by wavelength. Where two neighbouring orders overlap, the red order is
    interpolated (linearly) onto the blue order's pixels in the overlap and the two are
    averaged; the red order's own pixels in the overlap are dropped.

    Parameters
    ----------
    image : numpy or torch, (n_orders, n_pixels) or (B, n_orders, n_pixels)
    order_wave : (n_orders, n_pixels), default :func:`order_wavelengths`

    Returns
    -------
    wave : (m,) numpy [Å], strictly increasing;  flux : numpy (m,) or (B, m)
    """
    image = check_image(image)
    if is_torch(image):
        image = image.detach().cpu().numpy()
    image = np.asarray(image, dtype=np.float64)
    order_wave = _order_wave(order_wave)
    if image.shape[-2:] != order_wave.shape:
        raise ValueError(
            f"image orders {image.shape[-2:]} do not match order_wave {order_wave.shape}"
        )
    order = np.argsort(order_wave[:, 0])
    order_wave, image = order_wave[order], image[..., order, :]
    waves, fluxes = [], []
    start = 0  # first pixel of the current order not yet covered by the previous one
    for k in range(order_wave.shape[0]):
        wave_k = order_wave[k, start:]
        flux_k = image[..., k, start:].copy()
        start = 0
        if k + 1 < order_wave.shape[0]:
            next_wave = order_wave[k + 1]
            overlap = wave_k >= next_wave[0]
            if overlap.any():
                interp = np.apply_along_axis(
                    lambda f: np.interp(wave_k[overlap], next_wave, f), -1, image[..., k + 1, :]
                )
                flux_k[..., overlap] = 0.5 * (flux_k[..., overlap] + interp)
                start = int(np.searchsorted(next_wave, wave_k[-1], side="right"))
        waves.append(wave_k)
        fluxes.append(flux_k)
    return np.concatenate(waves), np.concatenate(fluxes, axis=-1)


if __name__ == "__main__":  # regenerate the stored layout from the calibration file
    import sys

    fits_path = sys.argv[1] if len(sys.argv) > 1 else paths.shared_file(
        "harpsn/HARPN_WAVE_MATRIX_A.fits")
    print("wrote", write_layout(extract_layout_from_fits(fits_path)))

"""Échelle orders of any instrument: a flux image (n_orders × n_pixels) and a wavelength image
of the same shape, in another HDU of the same file or in another file (``wave_path``); a blaze
image of the same shape optional (an HDU named ``BLAZE…`` or ``blaze_path``).

HDUs are recognised by name: wavelengths ``WAVE…``, ``LAMBDA``, ``WL…``; blaze ``…BLAZE…``; the
flux is the first 2D image named otherwise (errors, variance, quality, mask and S/N images are
passed over). An unnamed image whose rows all rise or all fall through values of an optical
wavelength range is taken as the wavelengths. The wavelengths' unit comes from the image's
``BUNIT`` (or ``CUNIT1``, ``UNIT``) where given, else from the values, with a note
(:mod:`~paper_lib.observed.units`); air unless the HDU's name says ``VAC`` or its header says
vacuum. Orders whose wavelengths decrease along the row are reversed, and the order of the rows
does not matter (each training order takes the rows that cover it).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .checks import check_echelle
from .fits import header_meta, header_says_vacuum, read_fits
from .spectrum import Spectrum, add_note, file_error
from .tables import FRAMES
from .units import scale_from_values, unit_scale, wave_scale

WAVE_HDU = re.compile(r"^(WAVE|LAMBDA|WL)", re.IGNORECASE)
BLAZE_HDU = re.compile(r"BLAZE", re.IGNORECASE)
NOT_FLUX = re.compile(r"WAVE|LAMBDA|^WL|BLAZE|ERR|SIG|VAR|NOISE|QUAL|MASK|SNR|WEIGHT|^DQ",
                      re.IGNORECASE)
UNIT_KEYS = ("BUNIT", "CUNIT1", "UNIT", "WAVEUNIT", "WUNIT")  # where a wave image states its unit
NO_BLAZE_NOTE = ("no blaze image in the file and none given: the flux is taken as "
                 "blaze-corrected; if it is raw extracted flux, give the blaze (blaze_path=<file>), "
                 "as each order's linear continuum fit cannot remove a blaze's curvature")


def images_2d(hdus: list) -> list[tuple[int, str, object, np.ndarray]]:
    """(index, name, header, data) of the HDUs holding a 2D image of at least 2 rows."""
    return [(i, name, header, data) for i, (name, header, data) in enumerate(hdus)
            if isinstance(data, np.ndarray) and data.dtype.names is None and data.ndim == 2
            and min(data.shape) >= 2]


def looks_like_wavelengths(data: np.ndarray) -> bool:
    """True if every row of ``data`` is finite and rises or falls strictly through values of
    an optical wavelength range (in Å, nm or µm)."""
    data = np.asarray(data, dtype=np.float64)
    if not np.all(np.isfinite(data)):
        return False
    steps = np.diff(data, axis=1)
    monotonic = np.all((steps > 0).all(axis=1) | (steps < 0).all(axis=1))
    return bool(monotonic) and scale_from_values(data) is not None


def find_orders(hdus: list) -> tuple[int | None, int | None, int | None]:
    """(flux, wavelength, blaze) HDU indices of an échelle file (None where absent)."""
    images = images_2d(hdus)
    flux = next((img for img in images if not NOT_FLUX.search(img[1])
                 and not looks_like_wavelengths(img[3])), None)
    if flux is None:
        return None, None, None
    same = [img for img in images if img[0] != flux[0] and img[3].shape == flux[3].shape]
    wave = next((img[0] for img in same if WAVE_HDU.search(img[1])), None)
    if wave is None:
        wave = next((img[0] for img in same if not NOT_FLUX.search(img[1])
                     and looks_like_wavelengths(img[3])), None)
    blaze = next((img[0] for img in same if BLAZE_HDU.search(img[1])), None)
    return flux[0], wave, blaze


def _image_in(path: Path, shape: tuple, what: str, pattern) -> tuple[str, object, np.ndarray]:
    """(HDU name, header, data) of the 2D image of ``shape`` in another file (``what``:
    "wavelength" or "blaze"), preferring an HDU whose name matches ``pattern``."""
    found = [img for img in images_2d(read_fits(path)) if img[3].shape == shape]
    if not found:
        shapes = ", ".join(str(img[3].shape) for img in images_2d(read_fits(path))) or "none"
        raise file_error(path, f"no {what} image of the flux's shape {shape} (2D images: {shapes})")
    _, name, header, data = next((img for img in found if pattern.search(img[1])), found[0])
    return name, header, np.asarray(data, dtype=np.float64)


def _wave_unit(header, data: np.ndarray, meta: dict, path, where: str) -> np.ndarray:
    """``data`` in Å, its unit from the header's UNIT_KEYS, else from the values."""
    key = next((k for k in UNIT_KEYS if unit_scale(header.get(k)) is not None), None)
    if key is not None:
        scale = wave_scale(data, meta, path, stated=unit_scale(header[key]),
                           where=f"{key} = {str(header[key]).strip()!r} of {where}")
    else:
        scale = wave_scale(data, meta, path, where=where)
    return data * scale


def _vacuum(name: str, headers) -> bool | None:
    """True/False where the wavelength HDU's name (``…VAC…``/``…AIR…``) or a header says."""
    if "VAC" in name.upper():
        return True
    if "AIR" in name.upper():
        return False
    return next((says for says in map(header_says_vacuum, headers) if says is not None), None)


def _frame(name: str, headers) -> str:
    """"barycentric"/"observatory" from a header's SPECSYS or the HDU's name (``…BARY…``),
    else "unknown" (then no instrument gap is masked by wavelength)."""
    for header in headers:
        if "SPECSYS" in header:
            return FRAMES.get(str(header["SPECSYS"]).strip().upper(), "unknown")
    return "barycentric" if "BARY" in name.upper() else "unknown"


def _blaze(path: Path, hdus: list, index, blaze_path, shape, meta: dict) -> np.ndarray | None:
    """The blaze image (``blaze_path``, else the file's blaze HDU), or None with a note."""
    if blaze_path is not None:
        meta["blaze_path"] = str(blaze_path)
        return _image_in(Path(blaze_path), shape, "blaze", BLAZE_HDU)[2]
    if index is not None:
        meta["blaze_path"] = f"HDU {index} ({hdus[index][0]})"
        return np.asarray(hdus[index][2], dtype=np.float64)
    add_note(meta, path, NO_BLAZE_NOTE)
    return None


def _wavelengths(path: Path, hdus: list, index, wave_path, shape, meta: dict) -> np.ndarray:
    """Air wavelengths [Å] of the orders (``wave_path``, else the file's wavelength HDU);
    ``meta["wave_source"]`` and ``meta["header_vacuum"]`` say where from and what they are."""
    if wave_path is not None:
        name, header, data = _image_in(Path(wave_path), shape, "wavelength", WAVE_HDU)
        where, meta["wave_source"] = f"{Path(wave_path).name} HDU {name}", str(wave_path)
    elif index is not None:
        name, header, data = hdus[index][0], hdus[index][1], np.asarray(hdus[index][2], float)
        where = meta["wave_source"] = f"HDU {index} ({name})"
    else:
        multispec = " (IRAF multispec WAT2 wavelength solutions are not read)" if any(
            key.startswith("WAT2") for key in hdus[0][1]) else ""
        raise file_error(path, f"échelle orders {shape} without wavelengths{multispec}: give them "
                         "as an image of the same shape in another HDU of the file (named WAVE…) "
                         "or in another file", "wave")
    wave = _wave_unit(header, data, meta, path, where)
    meta["header_vacuum"] = _vacuum(name, (header, hdus[0][1]))
    meta["frame"] = _frame(name, (header, hdus[0][1]))
    return wave


def read_orders(path: Path, hdus: list, wave_path=None, blaze_path=None) -> Spectrum:
    """Spectrum (kind "orders") of a file of échelle orders of any instrument (see the module
    docstring): wavelengths in Å, each order increasing along its row; flux divided by the
    blaze where there is one."""
    flux_index, wave_index, blaze_index = find_orders(hdus)
    if flux_index is None:
        raise file_error(path, "no flux image of échelle orders found")
    name, header, data = hdus[flux_index]
    flux = np.asarray(data, dtype=np.float64)
    meta = {**header_meta(hdus[0][1]), **header_meta(header), "flux_hdu": f"{flux_index} ({name})"}
    wave = _wavelengths(path, hdus, wave_index, wave_path, flux.shape, meta)
    blaze = _blaze(path, hdus, blaze_index, blaze_path, flux.shape, meta)
    valid = np.isfinite(flux) & (flux != 0)
    if blaze is not None:
        good = np.isfinite(blaze) & (blaze > 0)
        flux, valid = np.where(good, flux / np.where(good, blaze, 1.0), np.nan), valid & good
    falling = wave[:, -1] < wave[:, 0]
    if falling.any():
        wave, flux, valid, data = (np.where(falling[:, None], a[:, ::-1], a)
                                   for a in (wave, flux, valid, np.asarray(data, dtype=np.float64)))
        meta["wave_order"] = f"{int(falling.sum())} of {len(falling)} orders decreasing: reversed"
    meta["blaze_corrected"] = True  # divided by the blaze, or taken as corrected (a note says so)
    spectrum = Spectrum(wave=wave, flux=flux, mask=valid, kind="orders", path=path, meta=meta)
    spectrum.meta["rows"] = check_echelle(spectrum, data)
    return spectrum

"""Real HARPS-N (and HARPS) spectra → the networks' 8 × 4096 input image.

The networks are trained on synthetic spectra laid out as the 8 HARPS-N échelle orders 121–114
(rows 36–43 of the pipeline's 69-row frames, 5026.2–5394.7 Å in air) on exactly the pixel
wavelengths of :func:`paper_lib.echelle.order_wavelengths`, continuum-normalised by
:func:`paper_lib.echelle.normalise_orders`. This module brings a real observation onto that
same footing:

1. **Read** the file into a :class:`Spectrum` (wavelengths in air Å, flux, validity mask):

   * ``e2ds`` – HARPS-N / HARPS DRS 3.x order-by-order frames (69 or 72 × 4096). The
     wavelength of row r, pixel px = 0 … 4095 is λ = Σ_j c_j px^j with
     c_j = ``HIERARCH {TNG|ESO} DRS CAL TH COEFF LL{(deg+1)·r + j}``, deg =
     ``... CAL TH DEG LL``; or it comes from a separate ``_wave_A`` image. The flux is divided
     by the ``_blaze_A`` frame (given, or the file named in ``... DRS BLAZE FILE`` next to it).
     Wavelengths are in the observatory frame.
   * ``s2d`` – the newer (ESPRESSO-type) DRS products that DACE serves: ``SCIDATA`` with
     ``WAVEDATA_AIR_BARY`` and ``QUALDATA`` extensions, already blaze-corrected.
   * ``s1d`` – merged 1D spectra: a 1D image with a linear axis λ_i = CRVAL1 + CDELT1·(i + 1 −
     CRPIX1) (i from 0), or a binary table with ``wavelength_air`` (or vacuum ``wavelength``,
     converted to air) and ``flux`` columns.
   * ``text`` – two columns, air Å and flux.

2. **Measure the radial velocity** by cross-correlation with a synthetic template
   (:func:`rest_frame_velocity`) and move to the rest frame, λ_rest = λ_obs / (1 + v/c).

3. **Resample** onto the training pixels (Keys cubic interpolation in each order's own pixel
   coordinate — the same kernel :mod:`paper_lib.echelle` uses for synthetic spectra), and
   **normalise** every order with :func:`paper_lib.echelle.normalise_orders`, ignoring
   pixels without data.

4. **Fill** the pixels without data with 1.0 (see :func:`to_model_input` for why) and report
   them in :attr:`ModelInput.mask` and :attr:`ModelInput.gap_fraction`.

Masks in this module are True where a pixel holds valid data (the opposite of the ``mask``
argument of :func:`paper_lib.echelle.normalise_orders`, which marks pixels to ignore).

Every problem with a file raises :class:`SpectrumFileError` naming the file and the problem.
:func:`fetch_dace_sun` downloads public HARPS-N solar-telescope spectra from DACE for users
with a network connection and the optional ``dace-query`` package.
"""

from __future__ import annotations

import math
import tarfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import echelle, paths
from .broadening import C_KMS, interpolation_weights

N_PIXELS = 4096
E2DS_ROWS = {69: "HARPS-N", 72: "HARPS"}  # number of orders of each instrument's frames
INSTRUMENT_PREFIXES = ("TNG", "ESO")  # HARPS-N (TNG) and HARPS (ESO) header keyword families
DEGREE_KEY = "HIERARCH {} DRS CAL TH DEG LL"
COEFF_KEY = "HIERARCH {} DRS CAL TH COEFF LL{}"
BLAZE_FILE_KEY = "HIERARCH {} DRS BLAZE FILE"
WAVE_FILE_KEY = "HIERARCH {} DRS CAL TH FILE"
BERV_KEY = "HIERARCH {} DRS BERV"
TEXT_SUFFIXES = (".txt", ".dat", ".asc", ".csv", ".tsv")
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
SOLAR_NODE = (5750.0, 4.5, 0.0)  # grid node closest to the Sun (5772 K, 4.44, 0.0)
FILL_VALUE = 1.0  # continuum level written into pixels without data
COVERAGE_TOLERANCE_A = 1.0  # a spectrum may fall short of the order span by this much [Å]
MIN_ROW_OVERLAP = 0.5  # an e2ds row must cover this fraction of a training order to be used
SAMPLING_JUMP = 3.0  # a wavelength step this many times the median one is a hole in the data
HIGHPASS_WINDOW_A = 5.0  # running-mean window removing the continuum before the CCF [Å]


class SpectrumFileError(ValueError):
    """A spectrum file that cannot be used; the message names the file and the problem."""


def _error(path, problem: str) -> SpectrumFileError:
    return SpectrumFileError(f"{path if path is not None else '<spectrum in memory>'}: {problem}")


# data containers ---------------------------------------------------------------------------


@dataclass
class Spectrum:
    """An observed spectrum as read from a file.

    Attributes
    ----------
    wave : float64 array, (n,) for 1D spectra or (n_orders, 4096) for e2ds/s2d
        Air wavelengths [Å], in the frame of the file (observatory or barycentric).
    flux : float64 array, same shape
        Flux in the file's units; blaze-corrected for e2ds/s2d.
    mask : bool array, same shape
        True where the pixel holds valid data (finite, non-zero, good quality flag).
    kind : "e2ds", "s2d", "s1d" or "text"
    path : Path of the file (None for spectra built in memory)
    meta : dict – header facts (object, date, BERV [km/s]), the rows that match the 8
        training orders (e2ds/s2d), where the wavelengths and blaze came from.
    """

    wave: np.ndarray
    flux: np.ndarray
    mask: np.ndarray
    kind: str
    path: Path | None = None
    meta: dict = field(default_factory=dict)

    @property
    def is_echelle(self) -> bool:
        """True for order-by-order (2D) spectra."""
        return self.wave.ndim == 2


@dataclass
class ModelInput:
    """A spectrum on the networks' input grid.

    Attributes
    ----------
    image : float32 (8, 4096) – continuum-normalised flux on the training wavelengths,
        FILL_VALUE (1.0) where ``mask`` is False.
    mask : bool (8, 4096) – True where the pixel holds real data, False where it was filled.
    rv_kms : float – radial velocity removed [km/s] (λ_rest = λ_obs / (1 + v/c)).
    gap_fraction : float – fraction of the 32 768 pixels that were filled.
    order_wave : float64 (8, 4096) – rest-frame air wavelengths of the pixels [Å].
    kind, path : of the source spectrum.
    meta : dict – rows used, template description, source meta.
    """

    image: np.ndarray
    mask: np.ndarray
    rv_kms: float
    gap_fraction: float
    order_wave: np.ndarray
    kind: str
    path: Path | None = None
    meta: dict = field(default_factory=dict)


# FITS helpers ------------------------------------------------------------------------------


def _read_fits(path: Path) -> list:
    """All HDUs of ``path`` as (name, header, data) in memory; SpectrumFileError if unreadable."""
    from astropy.io import fits

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False) as hdul:
                hdus = [(hdu.name, hdu.header.copy(), hdu.data) for hdu in hdul]
    except FileNotFoundError:
        raise
    except (OSError, TypeError, ValueError, IndexError, KeyError) as error:
        raise _error(path, f"not a readable FITS file (truncated or corrupt?): {error}") from None
    for warning in caught:
        if "truncat" in str(warning.message).lower():
            raise _error(path, f"the FITS file is truncated ({warning.message})")
        warnings.warn(warning.message, warning.category, stacklevel=3)
    return hdus


def _hdu(hdus: list, name: str):
    """(header, data) of the HDU called ``name`` (case-insensitive), or None."""
    for hdu_name, header, data in hdus:
        if hdu_name.upper() == name.upper():
            return header, data
    return None


def _instrument_prefix(header) -> str | None:
    """'TNG' (HARPS-N) or 'ESO' (HARPS): whichever wavelength-degree keyword is present."""
    for prefix in INSTRUMENT_PREFIXES:
        if DEGREE_KEY.format(prefix) in header:
            return prefix
    return None


def _header_value(header, template: str):
    """Value of ``template.format(prefix)`` for the first prefix present, else None."""
    for prefix in INSTRUMENT_PREFIXES:
        key = template.format(prefix)
        if key in header:
            return header[key]
    return None


def _header_meta(header) -> dict:
    meta = {key.lower(): header[key] for key in ("OBJECT", "DATE-OBS", "INSTRUME") if key in header}
    berv = _header_value(header, BERV_KEY)
    if berv is not None:
        meta["berv_kms"] = float(berv)
    return meta


def _image_from_file(path: Path, shape: tuple, what: str) -> np.ndarray:
    """The primary (or first 2D) image of a companion file (_wave_A, _blaze_A), checked."""
    hdus = _read_fits(path)
    images = [data for _, _, data in hdus if data is not None and np.ndim(data) == 2]
    if not images:
        raise _error(path, f"no 2D image found (expected a {what} frame of shape {shape})")
    data = np.asarray(images[0], dtype=np.float64)
    if data.shape != shape:
        raise _error(path, f"wrong shape for a {what} frame: {data.shape}, expected {shape}")
    return data


# wavelengths --------------------------------------------------------------------------------


def e2ds_wavelengths(header, n_orders: int, n_pixels: int = N_PIXELS, *, path=None) -> np.ndarray:
    """Air wavelengths [Å], (n_orders, n_pixels), from the DRS header polynomial.

    λ(row r, px) = Σ_j c_j px^j, px = 0 … n_pixels − 1, with
    c_j = ``HIERARCH {TNG|ESO} DRS CAL TH COEFF LL{(deg+1)·r + j}`` and
    deg = ``HIERARCH {TNG|ESO} DRS CAL TH DEG LL`` (TNG for HARPS-N, ESO for HARPS).
    Raises SpectrumFileError naming ``path`` if a keyword is missing.
    """
    prefix = _instrument_prefix(header)
    if prefix is None:
        raise _error(path, "missing wavelength keys: the header has neither "
                     f"{DEGREE_KEY.format('TNG')!r} nor {DEGREE_KEY.format('ESO')!r}; pass the "
                     "wavelength frame as wave_path=... (the _wave_A file)")
    degree = int(header[DEGREE_KEY.format(prefix)])
    keys = [[COEFF_KEY.format(prefix, (degree + 1) * row + j) for j in range(degree + 1)]
            for row in range(n_orders)]
    missing = [key for row in keys for key in row if key not in header]
    if missing:
        raise _error(path, f"missing wavelength keys: {len(missing)} of {n_orders * (degree + 1)} "
                     f"polynomial coefficients are absent, e.g. {missing[0]!r}")
    coefficients = np.array([[float(header[key]) for key in row] for row in keys])
    pixels = np.arange(n_pixels, dtype=np.float64)
    return np.polynomial.polynomial.polyval(pixels, coefficients.T)


def vacuum_to_air(wave_vacuum) -> np.ndarray:
    """Vacuum → air wavelengths [Å] (IAU standard, Morton 2000, eq. 8; valid above 2000 Å)."""
    wave_vacuum = np.asarray(wave_vacuum, dtype=np.float64)
    s2 = (1e4 / wave_vacuum) ** 2
    n = 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)
    return wave_vacuum / n


# readers -----------------------------------------------------------------------------------


def _companion(path: Path, header, key_template: str, given, what: str) -> Path | None:
    """A companion file (blaze, wave): ``given``, else the file the header names next to ``path``."""
    if given is not None:
        return Path(given)
    name = _header_value(header, key_template)
    if name is None:
        return None
    candidate = path.parent / str(name).strip()
    if not candidate.exists():
        raise _error(path, f"the header names the {what} file {candidate.name!r} "
                     f"({key_template.format('TNG/ESO')}) but it is not in {path.parent}; pass "
                     f"{what}_path=...")
    return candidate


def _e2ds_from_hdus(path: Path, hdus: list, wave_path=None, blaze_path=None) -> Spectrum:
    """Spectrum of an e2ds (primary image) or s2d (SCIDATA extension) file."""
    header = hdus[0][1]
    scidata = _hdu(hdus, "SCIDATA")
    kind = "s2d" if scidata is not None else "e2ds"
    data = scidata[1] if scidata is not None else hdus[0][2]
    if data is None:
        raise _error(path, "wrong shape: the file holds no image data")
    flux = np.asarray(data, dtype=np.float64)
    if flux.ndim != 2 or flux.shape[0] not in E2DS_ROWS or flux.shape[1] != N_PIXELS:
        expected = " or ".join(f"({rows}, {N_PIXELS}) ({name})" for rows, name in E2DS_ROWS.items())
        raise _error(path, f"wrong shape for an e2ds frame: {flux.shape}, expected {expected}")
    meta = _header_meta(header)
    valid = np.isfinite(flux) & (flux != 0)

    air = _hdu(hdus, "WAVEDATA_AIR_BARY")
    if wave_path is not None:
        wave = _image_from_file(Path(wave_path), flux.shape, "wavelength")
        meta["wave_source"] = str(wave_path)
    elif air is not None:
        wave = np.asarray(air[1], dtype=np.float64)
        meta["wave_source"] = "WAVEDATA_AIR_BARY extension"
    elif _instrument_prefix(header) is not None:
        wave = e2ds_wavelengths(header, flux.shape[0], path=path)
        meta["wave_source"] = f"header polynomial ({_instrument_prefix(header)} DRS CAL TH)"
    else:
        named = _companion(path, header, WAVE_FILE_KEY, None, "wave")
        if named is None:
            e2ds_wavelengths(header, flux.shape[0], path=path)  # raises: names the missing keys
        wave = _image_from_file(named, flux.shape, "wavelength")
        meta["wave_source"] = str(named)
    if wave.shape != flux.shape:
        raise _error(path, f"wrong shape: wavelengths {wave.shape} do not match the flux {flux.shape}")

    quality = _hdu(hdus, "QUALDATA")
    if quality is not None:
        valid &= np.asarray(quality[1]) == 0
    needs_blaze = kind == "e2ds" or "BLAZE" in path.name.upper()
    blaze_file = _companion(path, header, BLAZE_FILE_KEY, blaze_path, "blaze")
    if needs_blaze and blaze_file is None:
        raise _error(path, f"no blaze: the {kind} flux must be divided by the blaze function; pass "
                     "blaze_path=... (the _blaze_A file of the same night; for HARPS-N the "
                     "reference blaze paths.shared_file('harpsn/HARPN_BLAZE_A.fits') can stand "
                     "in, with a less exact continuum)")
    if blaze_file is not None:
        blaze = _image_from_file(blaze_file, flux.shape, "blaze")
        good = np.isfinite(blaze) & (blaze > 0)
        valid &= good
        flux = np.where(good, flux / np.where(good, blaze, 1.0), np.nan)
        meta["blaze_path"] = str(blaze_file)
    meta["blaze_corrected"] = True
    spectrum = Spectrum(wave=wave, flux=flux, mask=valid, kind=kind, path=path, meta=meta)
    spectrum.meta["rows"] = _check_echelle(spectrum, np.asarray(data, dtype=np.float64))
    return spectrum


def _s1d_table(hdus: list):
    """(wave_air, flux, valid) from a binary-table s1d (newer DRS), or None if there is none."""
    for _, _, data in hdus:
        names = getattr(getattr(data, "columns", None), "names", None)
        if not names:
            continue
        lower = {name.lower(): name for name in names}
        if "flux" not in lower or not ({"wavelength_air", "wavelength"} & set(lower)):
            continue
        flux = np.asarray(data[lower["flux"]], dtype=np.float64).ravel()
        if "wavelength_air" in lower:
            wave = np.asarray(data[lower["wavelength_air"]], dtype=np.float64).ravel()
        else:  # the ESPRESSO-type DRS 'wavelength' column is in vacuum
            wave = vacuum_to_air(np.asarray(data[lower["wavelength"]], dtype=np.float64).ravel())
        valid = np.isfinite(flux) & (flux != 0)
        if "quality" in lower:
            valid &= np.asarray(data[lower["quality"]]).ravel() == 0
        return wave, flux, valid
    return None


def _s1d_from_hdus(path: Path, hdus: list) -> Spectrum:
    """Spectrum of an s1d file: 1D image with a linear axis, or a binary table."""
    header, data = hdus[0][1], hdus[0][2]
    table = _s1d_table(hdus)
    if table is not None:
        wave, flux, valid = table
    else:
        flux = np.asarray(data, dtype=np.float64).ravel()
        step = header.get("CDELT1", header.get("CD1_1"))
        if "CRVAL1" not in header or step is None:
            raise _error(path, "missing wavelength keys: a 1D spectrum needs CRVAL1 and CDELT1")
        if not float(step) > 0:
            raise _error(path, f"the wavelength step CDELT1 = {step} is not positive")
        if "LOG" in str(header.get("CTYPE1", "")).upper():
            raise _error(path, f"unsupported wavelength axis CTYPE1 = {header['CTYPE1']!r} "
                         "(only linear λ axes are read)")
        pixel = np.arange(flux.size, dtype=np.float64) + 1.0  # FITS pixels count from 1
        wave = float(header["CRVAL1"]) + float(step) * (pixel - float(header.get("CRPIX1", 1.0)))
        if str(header.get("CUNIT1", "")).strip().lower() == "nm":
            wave = wave * 10.0
        valid = np.isfinite(flux) & (flux != 0)
    spectrum = Spectrum(wave=wave, flux=flux, mask=valid, kind="s1d", path=path,
                        meta=_header_meta(header))
    _check_1d(spectrum)
    return spectrum


def read_e2ds(path, *, wave_path=None, blaze_path=None) -> Spectrum:
    """Read a HARPS-N/HARPS e2ds (or newer-DRS s2d) file; see the module docstring.

    ``wave_path``: a ``_wave_A`` frame (same shape) used instead of the header polynomial.
    ``blaze_path``: the ``_blaze_A`` frame; default: the file named in ``DRS BLAZE FILE``
    in the same folder. The returned flux is divided by the blaze.
    """
    path = Path(path)
    return _e2ds_from_hdus(path, _read_fits(path), wave_path, blaze_path)


def read_s1d(path) -> Spectrum:
    """Read an s1d FITS file (1D image with CRVAL1/CDELT1/CRPIX1, or a binary table)."""
    path = Path(path)
    return _s1d_from_hdus(path, _read_fits(path))


def read_text_spectrum(path) -> Spectrum:
    """Read a text spectrum: two columns, air wavelength [Å] and flux.

    Lines starting with '#' or '%' are comments; one header line is tolerated; commas work
    as separators in ``.csv`` files. Rows are sorted by wavelength; rows repeating a wavelength
    (as at the seams of spliced spectra) are averaged.
    """
    path = Path(path)
    delimiter = "," if path.suffix.lower() == ".csv" else None
    columns = None
    for skip in (0, 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                columns = np.loadtxt(path, usecols=(0, 1), comments=("#", "%"),
                                     delimiter=delimiter, skiprows=skip, ndmin=2)
            break
        except (ValueError, IndexError) as error:
            problem = error
    if columns is None:
        raise _error(path, f"not a two-column text spectrum (wavelength, flux): {problem}")
    if len(columns) < 2:
        raise _error(path, "the text spectrum has fewer than two rows")
    if not np.all(np.isfinite(columns[:, 0])):
        raise _error(path, "the wavelength column contains NaN or inf")
    wave, first, counts = np.unique(columns[:, 0], return_inverse=True, return_counts=True)
    flux = np.bincount(first, weights=columns[:, 1]) / counts  # repeated λ: mean flux
    spectrum = Spectrum(wave=wave, flux=flux, mask=np.isfinite(flux) & (flux != 0), kind="text",
                        path=path)
    _check_1d(spectrum)
    return spectrum


def _is_fits(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(9) == b"SIMPLE  ="


def _classify(path: Path, hdus: list) -> str:
    """'e2ds' or 's1d' from the data layout and header keys."""
    header, data = hdus[0][1], hdus[0][2]
    if _hdu(hdus, "SCIDATA") is not None:
        return "e2ds"
    if _s1d_table(hdus) is not None:
        return "s1d"
    ndim = np.ndim(data) if data is not None else 0
    if ndim == 1 or (ndim == 2 and np.shape(data)[0] == 1 and "CRVAL1" in header):
        return "s1d"
    if ndim >= 2 or _instrument_prefix(header) is not None:
        return "e2ds"
    raise _error(path, "unrecognised layout: neither an e2ds frame (69 × 4096), nor an s1d "
                 "(1D data with CRVAL1/CDELT1, or a table with wavelength and flux columns)")


def read_spectrum(path, *, wave_path=None, blaze_path=None) -> Spectrum:
    """Read any supported spectrum file, detecting its format.

    Text by extension (.txt, .dat, .asc, .csv, .tsv) or when the file neither has a FITS
    extension nor starts like one. Among FITS files: e2ds by 2D data (69 × 4096 HARPS-N,
    72 × 4096 HARPS), an ``SCIDATA`` extension (s2d) or the DRS wavelength keys; s1d by 1D
    data with CRVAL1/CDELT1 or by a wavelength/flux table.
    ``wave_path``/``blaze_path`` are passed to :func:`read_e2ds`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffixes = "".join(path.suffixes[-2:]).lower()
    is_fits = suffixes.endswith(FITS_SUFFIXES) or _is_fits(path)
    if path.suffix.lower() in TEXT_SUFFIXES or not is_fits:
        return read_text_spectrum(path)
    hdus = _read_fits(path)
    if _classify(path, hdus) == "e2ds":
        return _e2ds_from_hdus(path, hdus, wave_path, blaze_path)
    return _s1d_from_hdus(path, hdus)


# checks ------------------------------------------------------------------------------------


def _order_ranges(order_wave=None) -> np.ndarray:
    """(8, 2) first and last wavelength [Å] of each training order."""
    order_wave = echelle.order_wavelengths() if order_wave is None else np.asarray(order_wave)
    return np.stack([order_wave.min(axis=1), order_wave.max(axis=1)], axis=1)


def _describe_empty(values: np.ndarray) -> str | None:
    """'all NaN', 'all zero', 'no valid pixels' or None if some pixel holds data."""
    if values.size == 0:
        return "has no pixels"
    if np.all(np.isnan(values)):
        return "is all NaN"
    if np.all(values == 0):
        return "is all zero"
    if not np.any(np.isfinite(values) & (values != 0)):
        return "holds no valid pixels (only NaN, inf or zero)"
    return None


def _coverage_error(path, covered: tuple, needed: tuple) -> SpectrumFileError:
    hint = " (are the wavelengths in nm? Å are expected)" if covered[1] < 1000 else ""
    return _error(path, f"insufficient wavelength coverage: the spectrum covers "
                  f"{covered[0]:.2f}–{covered[1]:.2f} Å{hint}, but the 8 HARPS-N orders need "
                  f"{needed[0]:.2f}–{needed[1]:.2f} Å")


def _check_1d(spectrum: Spectrum, order_wave=None) -> None:
    """Coverage of the 8 orders and no empty order; SpectrumFileError otherwise."""
    ranges = _order_ranges(order_wave)
    needed = (ranges[:, 0].min(), ranges[:, 1].max())
    wave = spectrum.wave
    covered = (float(np.nanmin(wave)), float(np.nanmax(wave)))
    if (covered[0] > needed[0] + COVERAGE_TOLERANCE_A
            or covered[1] < needed[1] - COVERAGE_TOLERANCE_A):
        raise _coverage_error(spectrum.path, covered, needed)
    for k, (lo, hi) in enumerate(ranges):
        problem = _describe_empty(spectrum.flux[(wave >= lo) & (wave <= hi)])
        if problem:
            order = echelle.PHYSICAL_ORDER_OFFSET - echelle.ROWS[k]
            raise _error(spectrum.path, f"the part of the spectrum under HARPS-N order {order} "
                         f"({lo:.2f}–{hi:.2f} Å) {problem}")


def _matching_rows(wave: np.ndarray, order_wave=None, *, path=None) -> list[int]:
    """For each training order, the row of ``wave`` (n_rows, n_px) that overlaps it most."""
    ranges = _order_ranges(order_wave)
    row_lo, row_hi = np.nanmin(wave, axis=1), np.nanmax(wave, axis=1)
    rows = []
    for lo, hi in ranges:
        overlap = (np.minimum(row_hi, hi) - np.maximum(row_lo, lo)) / (hi - lo)
        best = int(np.argmax(overlap))
        if not overlap[best] >= MIN_ROW_OVERLAP:
            raise _coverage_error(path, (float(np.nanmin(wave)), float(np.nanmax(wave))),
                                  (ranges[:, 0].min(), ranges[:, 1].max()))
        rows.append(best)
    return rows


def _check_echelle(spectrum: Spectrum, raw: np.ndarray) -> list[int]:
    """Rows matching the 8 training orders, checked for monotonic λ and for data."""
    if not np.all(np.isfinite(spectrum.wave)):
        raise _error(spectrum.path, "the wavelength solution contains NaN or inf")
    rows = _matching_rows(spectrum.wave, path=spectrum.path)
    for row in rows:
        wave = spectrum.wave[row]
        where = f"row {row} ({wave.min():.2f}–{wave.max():.2f} Å)"
        if np.any(np.diff(wave) <= 0):
            raise _error(spectrum.path, f"the wavelengths of {where} do not increase")
        problem = _describe_empty(raw[row])
        if problem is None and not spectrum.mask[row].any():
            problem = "holds no valid pixels after blaze correction"
        if problem:
            raise _error(spectrum.path, f"{where}, one of the 8 orders used, {problem}")
    return rows


# radial velocity ----------------------------------------------------------------------------


def _highpass(wave: np.ndarray, flux: np.ndarray, valid: np.ndarray, window_a: float) -> np.ndarray:
    """flux / (running mean over ``window_a`` Å) − 1, using valid pixels only; 0 elsewhere."""
    from scipy.ndimage import uniform_filter1d

    step = float(np.median(np.diff(wave)))
    size = max(3, int(round(window_a / step)) | 1)
    weight = valid.astype(np.float64)
    values = np.where(valid, flux, 0.0)
    mean = uniform_filter1d(values, size, mode="nearest")
    norm = uniform_filter1d(weight, size, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        level = mean / norm
        out = values / level - 1.0
    return np.where(valid & (norm > 0.1) & (level > 0), out, 0.0)


def _segments(wave, flux, mask) -> list:
    """A 1D or (n_orders, n_px) spectrum as a list of (wave, flux, valid) 1D segments."""
    wave = np.asarray(wave, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    if wave.shape != flux.shape or wave.ndim not in (1, 2):
        raise ValueError(f"wave {wave.shape} and flux {flux.shape} must have the same 1D or 2D shape")
    valid = np.isfinite(flux) & np.isfinite(wave)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    if wave.ndim == 1:
        return [(wave, flux, valid)]
    return list(zip(wave, flux, valid))


def _valid_correlation(long: np.ndarray, short: np.ndarray) -> np.ndarray:
    """c[k] = Σ_i long[i + k] · short[i] for k = 0 … len(long) − len(short), by FFT."""
    import scipy.fft

    n = scipy.fft.next_fast_len(long.size + short.size - 1, real=True)
    product = scipy.fft.rfft(long, n) * np.conj(scipy.fft.rfft(short, n))
    return scipy.fft.irfft(product, n)[: long.size - short.size + 1]


def rest_frame_velocity(wave, flux, template_wave, template_flux, v_range=(-200.0, 200.0), *,
                        mask=None, step_kms: float = 0.25) -> float:
    """Radial velocity [km/s] of an observed spectrum relative to a rest-frame template.

    Both spectra are high-pass filtered (divided by a 5 Å running mean, minus one), put on a
    common grid uniform in ln λ with ``step_kms`` per point, and cross-correlated for every
    velocity step in ``v_range`` [km/s]; a parabola through the highest point and its two
    neighbours refines the peak. The result v satisfies λ_obs = λ_rest · (1 + v/c), so
    λ_rest = λ_obs / (1 + v/c).

    Parameters
    ----------
    wave, flux : (n,) or (n_orders, n_px) – observed air wavelengths [Å] and flux (any
        continuum; blaze-corrected for échelle orders).
    template_wave, template_flux : (m,) – rest-frame template, e.g. a normalised synthetic
        spectrum [Å].
    v_range : (v_min, v_max) [km/s] searched.
    mask : bool like ``flux``, True = valid; NaN and inf are ignored in any case.

    Raises ValueError if the spectra do not overlap or the peak lies at the edge of
    ``v_range``.
    """
    segments = _segments(wave, flux, mask)
    template_wave = np.asarray(template_wave, dtype=np.float64)
    template_flux = np.asarray(template_flux, dtype=np.float64)
    if template_wave.ndim != 1 or template_wave.shape != template_flux.shape:
        raise ValueError("template_wave and template_flux must be 1D arrays of equal length")
    if np.any(np.diff(template_wave) <= 0):
        raise ValueError("template_wave must increase strictly")
    v_min, v_max = float(v_range[0]), float(v_range[1])
    if not -C_KMS < v_min < v_max < C_KMS:
        raise ValueError(f"v_range must be (v_min, v_max) with v_min < v_max, got {v_range}")

    observed = [s for s in segments if s[2].sum() > 3]
    if not observed:
        raise ValueError("the observed spectrum has no valid pixels")
    lo = max(min(s[0][s[2]].min() for s in observed), template_wave[0] * (1 + v_min / C_KMS))
    hi = min(max(s[0][s[2]].max() for s in observed), template_wave[-1] * (1 + v_max / C_KMS))
    if hi <= lo:
        raise ValueError("the observed spectrum and the template do not overlap in wavelength")
    dx = step_kms / C_KMS
    x = math.log(lo) + dx * np.arange(int(math.log(hi / lo) / dx) + 1)

    total, weight = np.zeros_like(x), np.zeros_like(x)
    for seg_wave, seg_flux, seg_valid in observed:
        y = _highpass(seg_wave, seg_flux, seg_valid, HIGHPASS_WINDOW_A)
        log_wave = np.log(seg_wave)
        inside = (x >= log_wave[0]) & (x <= log_wave[-1])
        good = np.interp(x[inside], log_wave, seg_valid.astype(np.float64)) > 1 - 1e-9
        total[inside] += np.where(good, np.interp(x[inside], log_wave, y), 0.0)
        weight[inside] += good
    y_obs = np.where(weight > 0, total / np.maximum(weight, 1), 0.0)

    lag_lo = math.floor(C_KMS * math.log1p(v_min / C_KMS) / step_kms)
    lag_hi = math.ceil(C_KMS * math.log1p(v_max / C_KMS) / step_kms)
    y_template = _highpass(template_wave, template_flux, np.isfinite(template_flux),
                           HIGHPASS_WINDOW_A)
    x_template = x[0] + dx * (np.arange(x.size + lag_hi - lag_lo) - lag_hi)
    y_template = np.interp(x_template, np.log(template_wave), y_template, left=0.0, right=0.0)
    # ccf[k] = Σ_i template(x_i + (k − lag_hi)·dx) · observed(x_i): peaks at lag = lag_hi − k
    ccf = _valid_correlation(y_template, y_obs)[::-1]
    lags = np.arange(lag_lo, lag_lo + ccf.size)
    peak = int(np.argmax(ccf))
    if peak == 0 or peak == ccf.size - 1 or not ccf[peak] > 0:
        raise ValueError(f"no cross-correlation peak inside v_range {v_range} km/s")
    left, centre, right = ccf[peak - 1: peak + 2]
    curvature = left - 2.0 * centre + right
    offset = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
    log_velocity = (lags[peak] + offset) * step_kms
    return float(C_KMS * math.expm1(log_velocity / C_KMS))


def to_rest_frame(wave, v_kms: float) -> np.ndarray:
    """λ_rest = λ_obs / (1 + v/c) [Å] for a radial velocity v [km/s]."""
    return np.asarray(wave, dtype=np.float64) / (1.0 + float(v_kms) / C_KMS)


# model input --------------------------------------------------------------------------------


def _template_arrays(template, node) -> tuple[np.ndarray, np.ndarray, str]:
    """(wave, flux, description) from a Grid-like object or a (wave, flux) pair."""
    if template is None:
        raise ValueError("to_model_input needs a template to measure the radial velocity: pass "
                         "template=grid (its solar-like node is used) or template=(wave, flux), "
                         "or give rv_kms= (e.g. 0.0 for a spectrum already in the rest frame)")
    if hasattr(template, "node_flux") and hasattr(template, "wavelength"):
        teff, logg, mh = node
        return (np.asarray(template.wavelength, dtype=np.float64),
                np.asarray(template.node_flux(teff, logg, mh), dtype=np.float64),
                f"grid node Teff={teff:g} K, log g={logg:g}, [M/H]={mh:+g}")
    wave, flux = template
    return np.asarray(wave, dtype=np.float64), np.asarray(flux, dtype=np.float64), "user template"


def _resample_segment(wave, flux, valid, target) -> tuple[np.ndarray, np.ndarray]:
    """Keys-cubic resampling of one segment onto ``target`` [Å] in its own pixel coordinate.

    Returns (values, ok): ok is False where ``target`` lies outside the segment, where a
    pixel carrying interpolation weight is invalid, or where the interpolation would bridge a
    hole in the sampling (a step > SAMPLING_JUMP × the median step); values are NaN there.
    """
    values = np.full(target.shape, np.nan)
    ok = np.zeros(target.shape, dtype=bool)
    inside = (target >= wave[0]) & (target <= wave[-1])
    if inside.sum() == 0 or wave.size < 4:
        return values, ok
    index = np.arange(wave.size, dtype=np.float64)
    position = np.interp(target[inside], wave, index)
    nodes, weights = interpolation_weights(index, position, kind="cubic")
    clean = np.where(valid, flux, 0.0)
    steps = np.diff(wave)
    jump_after = np.append(steps > SAMPLING_JUMP * np.median(steps), False)  # holes in λ
    usable = (np.all(valid[nodes] | (weights == 0), axis=-1)
              & ~np.any(jump_after[nodes[:, :-1]], axis=-1))
    values[inside] = np.where(usable, (clean[nodes] * weights).sum(-1), np.nan)
    ok[inside] = usable
    return values, ok


def _rest_frame_image(spectrum: Spectrum, v_kms: float, order_wave: np.ndarray, rows=None):
    """(image, valid), each (8, 4096): the spectrum in the rest frame on the training pixels.

    ``rows`` (échelle spectra only) gives the observed row resampled onto each training order.
    """
    image = np.full(order_wave.shape, np.nan)
    valid = np.zeros(order_wave.shape, dtype=bool)
    stretch = 1.0 + v_kms / C_KMS
    for k, target in enumerate(order_wave):
        if spectrum.is_echelle:
            part = slice(None)
            wave, flux, good = (spectrum.wave[rows[k]], spectrum.flux[rows[k]],
                                spectrum.mask[rows[k]])
        else:
            first = max(int(np.searchsorted(spectrum.wave, target[0] * stretch)) - 4, 0)
            part = slice(first, int(np.searchsorted(spectrum.wave, target[-1] * stretch)) + 4)
            wave, flux, good = spectrum.wave, spectrum.flux, spectrum.mask
        image[k], valid[k] = _resample_segment(to_rest_frame(wave[part], v_kms), flux[part],
                                               good[part], target)
    return image, valid


def _ccf_input(spectrum: Spectrum, order_wave: np.ndarray, rows=None, margin_a: float = 10.0):
    """(wave, flux, mask) of the part of ``spectrum`` used to measure the velocity."""
    if spectrum.is_echelle:
        return spectrum.wave[rows], spectrum.flux[rows], spectrum.mask[rows]
    keep = ((spectrum.wave > order_wave.min() - margin_a)
            & (spectrum.wave < order_wave.max() + margin_a))
    return spectrum.wave[keep], spectrum.flux[keep], spectrum.mask[keep]


def to_model_input(spectrum: Spectrum, template=None, *, rv_kms: float | None = None,
                   order_wave=None, template_node=SOLAR_NODE,
                   v_range=(-200.0, 200.0)) -> ModelInput:
    """The 8 × 4096 network input of a real spectrum (see the module docstring for the steps).

    Parameters
    ----------
    spectrum : Spectrum from :func:`read_spectrum` (e2ds/s2d blaze-corrected, s1d, text).
    template : a grid (anything with ``.wavelength`` and ``.node_flux(teff, logg, mh)``, e.g.
        :class:`paper_lib.grid.Grid`; its ``template_node`` is used, by default the solar-like
        node 5750 K, 4.5, 0.0) or a rest-frame ``(wave [Å], flux)`` pair. Needed unless
        ``rv_kms`` is given.
    rv_kms : radial velocity [km/s] to remove instead of measuring it (0.0 disables the shift).
    order_wave : (8, 4096) training wavelengths [Å]; default
        :func:`paper_lib.echelle.order_wavelengths`.
    v_range : velocities searched by :func:`rest_frame_velocity` [km/s].

    Pixels without data — the HARPS CCD gap (zero flux), NaNs, zeros, bad quality flags, and
    pixels that the rest-frame shift moves beyond the end of an observed order — are ignored
    by the continuum fit and then **filled with 1.0** (the continuum of a normalised
    spectrum). The networks were trained on complete, gap-free synthetic images and have no
    notion of a missing pixel: a 0 or NaN there would look like a saturated absorption line or
    break the arithmetic, whereas 1.0 says "no absorption here", the least informative value
    a normalised spectrum can hold. The lines that fall in a gap are still lost, so predictions
    can differ from those for a complete spectrum; ``mask`` (True = real data) and
    ``gap_fraction`` say how much was filled (≈ 7–8 % for the HARPS CCD gap).

    Raises SpectrumFileError (naming the file) if the velocity cannot be measured or an order
    cannot be normalised, e.g. because it has almost no valid pixels.
    """
    order_wave = echelle.order_wavelengths() if order_wave is None else np.asarray(order_wave)
    meta = {"source": dict(spectrum.meta)}
    rows = None
    if spectrum.is_echelle:
        if not spectrum.meta.get("blaze_corrected", False):
            raise _error(spectrum.path, "the échelle flux is not blaze-corrected; read it with "
                         "read_e2ds(..., blaze_path=...)")
        rows = meta["rows"] = _matching_rows(spectrum.wave, order_wave, path=spectrum.path)
    if rv_kms is None:
        t_wave, t_flux, meta["template"] = _template_arrays(template, template_node)
        wave, flux, mask = _ccf_input(spectrum, order_wave, rows)
        try:
            rv_kms = rest_frame_velocity(wave, flux, t_wave, t_flux, v_range, mask=mask)
        except ValueError as error:
            raise _error(spectrum.path, f"the radial velocity could not be measured ({error}); "
                         "pass rv_kms=... if it is known") from None
        meta["rv_source"] = "cross-correlation"
    else:
        meta["rv_source"] = "given"
    image, valid = _rest_frame_image(spectrum, float(rv_kms), order_wave, rows)
    try:
        normalised = echelle.normalise_orders(image, mask=~valid)
    except ValueError as error:
        counts = ", ".join(str(int(n)) for n in valid.sum(axis=1))
        raise _error(spectrum.path, f"cannot normalise the orders ({error}); valid pixels per "
                     f"order: {counts}") from None
    normalised = np.where(valid, normalised, FILL_VALUE).astype(np.float32)
    if not np.all(np.isfinite(normalised)):
        raise _error(spectrum.path, "the normalised image contains NaN or inf")
    return ModelInput(image=normalised, mask=valid, rv_kms=float(rv_kms),
                      gap_fraction=float(1.0 - valid.mean()), order_wave=order_wave,
                      kind=spectrum.kind, path=spectrum.path, meta=meta)


# DACE ---------------------------------------------------------------------------------------


def _extract_archives(folder: Path) -> None:
    """Unpack (and delete) the .tar/.tar.gz archives DACE leaves in ``folder``."""
    for archive in list(folder.glob("*.tar*")) + list(folder.glob("*.tgz")):
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(folder, filter="data")
            else:  # Python < 3.12 without the safety filter: refuse unsafe member names
                unsafe = [m.name for m in tar.getmembers()
                          if m.name.startswith("/") or ".." in Path(m.name).parts]
                if unsafe:
                    raise RuntimeError(f"{archive}: refusing unsafe paths {unsafe[:3]}")
                tar.extractall(folder)
        archive.unlink()


def fetch_dace_sun(date_night: str = "2016-01-03", *, file_type: str = "s1d",
                   max_files: int = 1) -> list[Path]:
    """Download HARPS-N solar-telescope spectra of one night from DACE; return their paths.

    Uses the optional ``dace-query`` package (``pip install "paper_lib[dace]"``). Files are
    cached under ``paths.cache_dir()/dace/<date_night>_<file_type>/`` and reused on later
    calls, so only the first call needs the network. ``file_type`` is ``"s1d"`` (merged,
    blaze-corrected, solar rest frame) or ``"s2d"`` (orders, blaze-corrected, barycentric);
    both are read by :func:`read_spectrum`. ``max_files`` limits the download (a night holds
    ~100 five-minute exposures).
    """
    if file_type not in ("s1d", "s2d"):
        raise ValueError(f"file_type must be 's1d' or 's2d', got {file_type!r}")
    folder = paths.cache_dir() / "dace" / f"{date_night}_{file_type}"
    cached = sorted(folder.rglob("*.fits"))
    if len(cached) >= max_files:
        return cached[:max_files]
    try:
        from dace_query.sun import Sun
    except ImportError as error:
        raise ImportError('fetch_dace_sun needs the optional package dace-query: '
                          'pip install "paper_lib[dace]"') from error
    folder.mkdir(parents=True, exist_ok=True)
    try:
        found = Sun.query_database(limit=max_files,
                                   filters={"date_night": {"contains": [date_night]}})
        roots = [str(root) for root in list(found["file_rootpath"])[:max_files]]
        if roots:
            Sun.download(file_type, filters={"file_rootpath": {"contains": roots}},
                         output_directory=str(folder))
    except OSError as error:  # requests' ConnectionError and urllib's URLError are OSErrors
        raise ConnectionError(f"Could not reach the DACE archive (dace.unige.ch) to download "
                              f"HARPS-N solar spectra; check your network connection ({error}).") from None
    if not roots:
        raise FileNotFoundError(f"DACE lists no HARPS-N solar spectra for the night {date_night}")
    _extract_archives(folder)
    files = sorted(folder.rglob("*.fits"))
    if not files:
        raise FileNotFoundError(f"DACE returned no FITS files for the night {date_night} "
                                f"(looked in {folder})")
    return files[:max_files]

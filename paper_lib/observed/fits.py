"""FITS details of the HARPS-N (TNG) and HARPS (ESO) DRS products: HDUs, header keys, the
wavelength polynomial of e2ds frames, and the companion files (wave, blaze) a header names."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..instrument import N_PIXELS
from .spectrum import file_error

INSTRUMENT_PREFIXES = ("TNG", "ESO")  # HARPS-N (TNG) and HARPS (ESO) header keyword families
DEGREE_KEY = "HIERARCH {} DRS CAL TH DEG LL"
COEFF_KEY = "HIERARCH {} DRS CAL TH COEFF LL{}"
BLAZE_FILE_KEY = "HIERARCH {} DRS BLAZE FILE"
WAVE_FILE_KEY = "HIERARCH {} DRS CAL TH FILE"
BERV_KEY = "HIERARCH {} DRS BERV"


class PlainHeader(dict):
    """A FITS header read by :func:`_read_single_image`: card values by keyword (parsed when
    asked for), HIERARCH keywords under both ``"HIERARCH ESO X"`` and ``"ESO X"`` (as astropy
    answers them)."""

    def __getitem__(self, key):
        return _card_value(dict.__getitem__(self, key))

    def get(self, key, default=None):
        return self[key] if key in self else default


FITS_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
FITS_BLOCK = 2880


def _card_value(text: str):
    """The value of a card's value field (after '= '): str, bool, int or float."""
    text = text.strip()
    if text.startswith("'"):
        end, out = 1, []
        while end < len(text):
            quote = text.find("'", end)
            if quote < 0:
                break
            out.append(text[end:quote])
            if text[quote + 1: quote + 2] != "'":
                break
            out.append("'")
            end = quote + 2
        return "".join(out).rstrip()
    value = text.split("/", 1)[0].strip()
    if value in ("T", "F"):
        return value == "T"
    try:
        return int(value)
    except ValueError:
        return float(value.replace("D", "E"))


def _parse_header(raw: bytes) -> tuple[PlainHeader, int] | None:
    """(header, bytes up to the data) of the primary header in ``raw``, or None."""
    header = PlainHeader()
    end = 0
    while True:  # the END card: "END" at a card boundary followed by blanks
        end = raw.find(b"END" + b" " * 77, end)
        if end < 0:
            return None
        if end % 80 == 0:
            break
        end += 1
    text = raw[:end].decode("ascii", "replace")
    for card in [text[start:start + 80] for start in range(0, end, 80)]:
        if card[8:10] == "= ":
            header[card[:8].rstrip()] = card[10:]
        elif card.startswith("HIERARCH"):
            name, equals, value = card.partition("=")
            if equals:
                name = name.rstrip()
                if "  " in name:  # "HIERARCH ESO  DRS X" is "HIERARCH ESO DRS X"
                    name = " ".join(name.split())
                header[name] = header[name[9:]] = value
    return header, (end // FITS_BLOCK + 1) * FITS_BLOCK


def _read_single_image(path: Path) -> list | None:
    """[(\"PRIMARY\", header, data)] of a plain FITS file holding one primary image and nothing
    else, read directly (≈ 10× faster than astropy for DRS headers of ~3000 cards); None for
    anything else (extensions, compression, scaling, truncation), which astropy then reads."""
    if not path.name.lower().endswith((".fits", ".fit", ".fts")):
        return None
    raw = path.read_bytes()
    try:
        parsed = _parse_header(raw)
    except ValueError:
        return None
    if parsed is None:
        return None
    header, offset = parsed
    try:
        naxis = header.get("NAXIS", 0)
        header.get("BSCALE"), header.get("BZERO"), header.get("BITPIX")
    except ValueError:
        return None
    if (header.get("SIMPLE") is not True or header.get("BITPIX") not in FITS_DTYPES or not naxis
            or header.get("BSCALE", 1) != 1 or header.get("BZERO", 0) != 0 or "BLANK" in header):
        return None
    shape = tuple(int(header.get(f"NAXIS{i}", 0)) for i in range(naxis, 0, -1))
    size = int(np.prod(shape)) * abs(header["BITPIX"]) // 8
    if len(raw) != offset + -(-size // FITS_BLOCK) * FITS_BLOCK:  # extensions or truncation
        return None
    data = np.frombuffer(raw, dtype=FITS_DTYPES[header["BITPIX"]], count=int(np.prod(shape)),
                         offset=offset).reshape(shape)
    return [("PRIMARY", header, data.astype(data.dtype.newbyteorder("=")))]


def read_fits(path: Path) -> list:
    """All HDUs of ``path`` as (name, header, data) in memory; SpectrumFileError if unreadable.

    A plain single-image file (the DRS e2ds, s1d, wave and blaze frames) is read directly by
    :func:`_read_single_image`; anything else by astropy."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    simple = _read_single_image(path)
    if simple is not None:
        return simple
    from astropy.io import fits

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False) as hdul:
                hdus = [(hdu.name, hdu.header, hdu.data) for hdu in hdul]
    except FileNotFoundError:
        raise
    except (OSError, TypeError, ValueError, IndexError, KeyError) as error:
        raise file_error(path, f"not a readable FITS file (truncated or corrupt?): {error}") from None
    for warning in caught:
        if "truncat" in str(warning.message).lower():
            raise file_error(path, f"the FITS file is truncated ({warning.message})")
        warnings.warn(warning.message, warning.category, stacklevel=3)
    return hdus


def hdu(hdus: list, name: str):
    """(header, data) of the HDU called ``name`` (case-insensitive), or None."""
    for hdu_name, header, data in hdus:
        if hdu_name.upper() == name.upper():
            return header, data
    return None


def describe_hdus(hdus: list) -> str:
    """What each HDU holds, for error messages: "HDU 0 (PRIMARY): no data; HDU 1 (SCI): image
    (20, 4096); HDU 2 (T): table with columns WAVE, FLUX"."""
    parts = []
    for index, (name, _, data) in enumerate(hdus):
        names = getattr(getattr(data, "columns", None), "names", None)
        if names:
            what = f"table with columns {', '.join(names)}"
        elif data is None or not np.size(data):
            what = "no data"
        else:
            what = f"image {tuple(np.shape(data))}"
        parts.append(f"HDU {index} ({name or 'unnamed'}): {what}")
    return "the file holds " + "; ".join(parts)


def instrument_prefix(header) -> str | None:
    """'TNG' (HARPS-N) or 'ESO' (HARPS): whichever wavelength-degree keyword is present."""
    for prefix in INSTRUMENT_PREFIXES:
        if DEGREE_KEY.format(prefix) in header:
            return prefix
    return None


def header_value(header, template: str):
    """Value of ``template.format(prefix)`` for the first prefix present, else None."""
    for prefix in INSTRUMENT_PREFIXES:
        key = template.format(prefix)
        if key in header:
            return header[key]
    return None


def instrument_name(header) -> str | None:
    """'HARPS', 'HARPS-N' or None: from ``INSTRUME``, else from the DRS keyword family (ESO:
    HARPS, TNG: HARPS-N)."""
    name = str(header.get("INSTRUME", "")).strip().upper().replace("-", "").replace(" ", "")
    if name in ("HARPN", "HARPSN"):
        return "HARPS-N"
    if name == "HARPS":
        return "HARPS"
    return {"ESO": "HARPS", "TNG": "HARPS-N"}.get(instrument_prefix(header)) if not name else None


def header_meta(header) -> dict:
    """Header facts: object, date, ``INSTRUME``, the instrument (:func:`instrument_name`) and
    the barycentric correction ``berv_kms`` [km/s] where the header has them."""
    meta = {key.lower(): header[key] for key in ("OBJECT", "DATE-OBS", "INSTRUME") if key in header}
    instrument = instrument_name(header)
    if instrument is not None:
        meta["instrument"] = instrument
    berv = header_value(header, BERV_KEY)
    if berv is not None:
        meta["berv_kms"] = float(berv)
    return meta


def header_says_vacuum(header) -> bool | None:
    """True/False where the header says vacuum/air wavelengths (CTYPE1 'WAVE' / 'AWAV' of the
    FITS standard, or AIRORVAC / VACUUM keys), None where it says nothing."""
    ctype = str(header.get("CTYPE1", "")).strip().upper()
    if ctype in ("WAVE", "VWAV") or ctype.startswith("WAVE-"):
        return True
    if ctype.startswith("AWAV"):
        return False
    flag = str(header.get("AIRORVAC", header.get("VACUUM", ""))).strip().lower()
    if flag in ("vac", "vacuum", "true", "t", "1"):
        return True
    if flag in ("air", "false", "f", "0"):
        return False
    return None


def image_from_file(path: Path, shape: tuple, what: str) -> np.ndarray:
    """The primary (or first 2D) image of a companion file (_wave_A, _blaze_A), checked."""
    hdus = read_fits(path)
    images = [data for _, _, data in hdus if data is not None and np.ndim(data) == 2]
    if not images:
        raise file_error(path, f"no 2D image found (expected a {what} frame of shape {shape})")
    data = np.asarray(images[0], dtype=np.float64)
    if data.shape != shape:
        raise file_error(path, f"wrong shape for a {what} frame: {data.shape}, expected {shape}")
    return data


def e2ds_wavelengths(header, n_orders: int, n_pixels: int = N_PIXELS, *, path=None) -> np.ndarray:
    """Air wavelengths [Å], (n_orders, n_pixels), from the DRS header polynomial.

    λ(row r, px) = Σ_j c_j px^j, px = 0 … n_pixels − 1, with
    c_j = ``HIERARCH {TNG|ESO} DRS CAL TH COEFF LL{(deg+1)·r + j}`` and
    deg = ``HIERARCH {TNG|ESO} DRS CAL TH DEG LL`` (TNG for HARPS-N, ESO for HARPS).
    Raises SpectrumFileError naming ``path`` if a keyword is missing.
    """
    prefix = instrument_prefix(header)
    if prefix is None:
        raise file_error(path, "missing wavelength keys: the header has neither "
                         f"{DEGREE_KEY.format('TNG')!r} nor {DEGREE_KEY.format('ESO')!r}", "wave")
    degree = int(header[DEGREE_KEY.format(prefix)])
    keys = [[COEFF_KEY.format(prefix, (degree + 1) * row + j) for j in range(degree + 1)]
            for row in range(n_orders)]
    missing = [key for row in keys for key in row if key not in header]
    if missing:
        raise file_error(path, f"missing wavelength keys: {len(missing)} of {n_orders * (degree + 1)} "
                         f"polynomial coefficients are absent, e.g. {missing[0]!r}", "wave")
    coefficients = np.array([[float(header[key]) for key in row] for row in keys])
    pixels = np.arange(n_pixels, dtype=np.float64)
    return np.polynomial.polynomial.polyval(pixels, coefficients.T)


def vacuum_to_air(wave_vacuum) -> np.ndarray:
    """Vacuum → air wavelengths [Å] (IAU standard, Morton 2000, eq. 8; valid above 2000 Å)."""
    wave_vacuum = np.asarray(wave_vacuum, dtype=np.float64)
    s2 = (1e4 / wave_vacuum) ** 2
    n = 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)
    return wave_vacuum / n


def companion(path: Path, header, key_template: str, given, what: str) -> Path | None:
    """A companion file (``what``: "blaze" or "wave"): ``given``, else the file the header
    names next to ``path``."""
    if given is not None:
        return Path(given)
    name = header_value(header, key_template)
    if name is None:
        return None
    candidate = path.parent / str(name).strip()
    if not candidate.exists():
        raise file_error(path, f"the header names the {what} file {candidate.name!r} "
                         f"({key_template.format('TNG/ESO')}) but it is not in {path.parent}", what)
    return candidate

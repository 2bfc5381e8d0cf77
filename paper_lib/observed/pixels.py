"""Pixels of a read spectrum that hold no usable data, found before the networks see them.

* **Instrument gaps** (:data:`paper_lib.instrument.CCD_GAPS_A`) are masked by wavelength,
  whatever the reduction wrote there (zeros, read noise, interpolated values): taken from the
  instrument (``meta["instrument"]``), not from the flux. The gaps are known in the
  observatory frame (e2ds); an s1d is barycentric, so there they move by the barycentric
  correction (``meta["berv_kms"]``; without one, by any BERV up to ± :data:`MAX_BERV_KMS`),
  widened by :data:`GAP_MARGIN_A` on each side.
* **No light**: stretches of :data:`DARK_BLOCK_A` whose mean flux is below
  :data:`DARK_FRACTION` of the spectrum's are masked too, whatever the instrument (a gap of an
  instrument not recognised, e.g. a HARPS spectrum saved as text, holding noise).
* **Negative flux**: an order whose median flux is ≤ 0 is not a spectrum the networks can read
  (inverted, a difference, sky over-subtracted): :class:`SpectrumFileError` says so.
* **Bad pixels**: NaN, inf, zero and negative values, and positive spikes (cosmic rays: more
  than :data:`SPIKE_SIGMA` noise σ and :data:`SPIKE_FRACTION` of the level above both their
  nearest neighbours and every pixel 3 to :data:`SPIKE_REACH` pixels away). A run of such pixels whose good neighbours lie within
  :data:`REPAIR_SPAN_A` (about two resolution elements at R = 115 000) is repaired by linear
  interpolation between them: the spectra are sampled with 3–5 pixels per resolution element,
  so a short run is well predicted by its neighbours, and the networks, which trained on
  complete spectra, see a complete one. Longer runs stay masked (no data), as the gap is, and
  are filled at the continuum later (:func:`paper_lib.observed.model_input.to_model_input`);
  inside a line such a fill looks like a missing line core to the networks
  (``python benchmarks/predict_robustness.py``).

Masks are True where a pixel holds data.
"""

from __future__ import annotations

import numpy as np

from ..instrument import C_KMS, CCD_GAPS_A, physical_order
from .spectrum import Spectrum, file_error

# the zero-flux gaps of the HARPS s1d of the Sun (BERV +24.96 km/s) and of Gl 581 (−23.54 km/s)
# lie 0.13 Å and 0.03 Å from the e2ds gap moved by their BERV: a margin of 0.3 Å covers both
GAP_MARGIN_A = 0.3
MAX_BERV_KMS = 30.0  # Earth's orbital (29.8 km/s) plus rotational (0.5 km/s) speed, rounded up
REPAIR_SPAN_A = 0.1  # a run of bad pixels is repaired if its good neighbours lie this close [Å]
DARK_BLOCK_A = 0.25  # stretches this long [Å] …
DARK_FRACTION = 0.1  # … whose mean flux is below this fraction of the segment's median: no light
SPIKE_REACH = 25  # a spike stands above every pixel from 3 to this many pixels away …
SPIKE_SIGMA = 8.0  # … by this many noise σ …
SPIKE_FRACTION = 0.05  # … and this fraction of their level


def gap_ranges(spectrum: Spectrum) -> list[tuple[float, float]]:
    """The instrument's gaps [Å] in the frame of ``spectrum``'s wavelengths (see the module
    docstring); empty where the instrument is unknown or has none."""
    gaps = CCD_GAPS_A.get(spectrum.meta.get("instrument"), ())
    berv = spectrum.meta.get("berv_kms")
    frame = spectrum.meta.get("frame")
    if frame == "observatory":
        v_lo = v_hi = 0.0
    elif frame == "barycentric" and berv is not None:
        v_lo = v_hi = float(berv)
    else:
        v_lo, v_hi = -MAX_BERV_KMS, MAX_BERV_KMS
    return [(lo * (1 + v_lo / C_KMS) - GAP_MARGIN_A, hi * (1 + v_hi / C_KMS) + GAP_MARGIN_A)
            for lo, hi in gaps]


def _in_ranges(wave: np.ndarray, ranges) -> np.ndarray:
    inside = np.zeros(wave.shape, dtype=bool)
    for lo, hi in ranges:
        inside |= (wave >= lo) & (wave <= hi)
    return inside


def check_positive_flux(spectrum: Spectrum, parts) -> None:
    """SpectrumFileError if the median flux of any part is ≤ 0; ``parts``: (description,
    selection) pairs, the selection indexing ``spectrum.flux``."""
    for where, part in parts:
        flux = spectrum.flux[part][spectrum.mask[part]]
        if flux.size and np.median(flux) <= 0:
            raise file_error(spectrum.path, f"negative flux: the median flux under {where} is "
                                            f"{np.median(flux):.3g}, but a spectrum's flux must "
                                            "be positive (is it inverted or a difference?)")


def _neighbour_median(values: np.ndarray) -> np.ndarray:
    """Median of the finite values among each pixel's four nearest neighbours (NaN if none):
    with c of them finite and sum S, (S − max − min)/2 for c = 4, S − max − min for 3, S/c
    for 2 or 1."""
    padded = np.pad(values, 2, constant_values=np.nan)
    finite = np.isfinite(padded)
    zeroed = np.where(finite, padded, 0.0)
    near = [slice(k, k + values.size) for k in (0, 1, 3, 4)]
    count = sum(finite[k].astype(np.int8) for k in near)
    total = sum(zeroed[k] for k in near)
    high = np.fmax(np.fmax(padded[near[0]], padded[near[1]]), np.fmax(padded[near[2]], padded[near[3]]))
    low = np.fmin(np.fmin(padded[near[0]], padded[near[1]]), np.fmin(padded[near[2]], padded[near[3]]))
    with np.errstate(invalid="ignore", divide="ignore"):
        middle = np.where(count == 4, (total - high - low) / 2.0, total - high - low)
        return np.where(count >= 3, middle, np.where(count > 0, total / count, np.nan))


def _running_max(values: np.ndarray, width: int) -> np.ndarray:
    """max(values[j : j + width]) for every j (the last ones over fewer values), by doubling."""
    out, span = values.copy(), 1
    while 2 * span <= width:
        out[:-span] = np.maximum(out[:-span], out[span:])
        span *= 2
    if span < width:
        shift = width - span
        out[:-shift] = np.maximum(out[:-shift], out[shift:])
    return out


def _spikes(flux: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Cosmic rays: good pixels that stand out both above the median of their four nearest
    neighbours and above every other pixel from 3 to SPIKE_REACH away on either side, by more
    than SPIKE_SIGMA noise σ and SPIKE_FRACTION of the level. Lines never rise above their own
    continuum nearby, so no line pixel is taken for a spike; sharp pixels are left out of the
    comparison, so spikes close together do not hide each other."""
    step = np.diff(flux[good])
    if step.size < 10:
        return np.zeros(flux.shape, dtype=bool)
    sigma = 1.4826 * np.median(np.abs(step - np.median(step))) / np.sqrt(2.0)
    with np.errstate(invalid="ignore"):
        local = _neighbour_median(np.where(good, flux, np.nan))
        sharp = good & (flux - local > np.maximum(SPIKE_SIGMA * sigma, SPIKE_FRACTION * np.abs(local)))
        others = np.pad(np.where(good & ~sharp, flux, -np.inf), SPIKE_REACH, constant_values=-np.inf)
        side = _running_max(others, SPIKE_REACH - 2)  # side[j]: max of others[j : j + REACH − 2]
        left = side[: flux.size]  # flux[i − SPIKE_REACH … i − 3]
        right = side[SPIKE_REACH + 3: SPIKE_REACH + 3 + flux.size]  # flux[i + 3 … i + SPIKE_REACH]
        level = np.maximum(left, right)
        excess = flux - level
        return sharp & np.isfinite(level) & (excess > np.maximum(SPIKE_SIGMA * sigma,
                                                                 SPIKE_FRACTION * np.abs(level)))


def _no_level(wave: np.ndarray, flux: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Pixels in blocks of about DARK_BLOCK_A whose mean flux (clipped to 0 … twice the
    segment's median; NaN and inf count as 0) is below DARK_FRACTION of the segment's median:
    no light there (a gap of an instrument we do not know, filled with noise)."""
    if good.sum() < 10:
        return np.zeros(flux.shape, dtype=bool)
    level = np.median(flux[good])
    size = max(int(round(DARK_BLOCK_A / np.median(np.diff(wave)))), 1)  # pixels per block
    values = np.clip(np.where(np.isfinite(flux), flux, 0.0), 0.0, 2.0 * level)
    blocks = -(-values.size // size)
    padded = np.pad(values, (0, blocks * size - values.size), mode="edge")
    dark = padded.reshape(blocks, size).mean(axis=1) < DARK_FRACTION * level
    return np.repeat(dark, size)[: flux.size]


def repair_segment(wave: np.ndarray, flux: np.ndarray, valid: np.ndarray, gaps
                   ) -> tuple[np.ndarray, np.ndarray, int]:
    """(flux, valid, number of repaired pixels) of one 1D segment: the gaps masked, bad pixels
    found, short runs of them repaired (see the module docstring)."""
    with np.errstate(invalid="ignore"):
        good = valid & np.isfinite(flux) & (flux > 0)
    in_gap = _in_ranges(wave, gaps) | _no_level(wave, flux, good)
    good &= ~in_gap
    good &= ~_spikes(flux, good)
    bad = np.flatnonzero(~good)
    if bad.size == 0:
        return flux, good, 0
    breaks = np.flatnonzero(np.diff(bad) > 1)
    starts, ends = bad[np.r_[0, breaks + 1]], bad[np.r_[breaks, bad.size - 1]]
    gap_count = np.concatenate([[0], np.cumsum(in_gap)])
    inner = (starts > 0) & (ends < flux.size - 1)
    span = wave[np.minimum(ends + 1, flux.size - 1)] - wave[np.maximum(starts - 1, 0)]
    short = inner & (span <= REPAIR_SPAN_A) & (gap_count[ends + 1] == gap_count[starts])
    if not short.any():
        return flux, good, 0
    repaired = np.concatenate([np.arange(s, e + 1) for s, e in zip(starts[short], ends[short])])
    flux = flux.copy()
    flux[repaired] = np.interp(wave[repaired], wave[good], flux[good])
    good[repaired] = True
    return flux, good, int(repaired.size)


def clean_spectrum(spectrum: Spectrum, order_ranges: np.ndarray, rows=None,
                   window: tuple[float, float] | None = None) -> tuple[Spectrum, float]:
    """(the spectrum with gaps masked and bad pixels repaired, fraction of pixels repaired).

    ``order_ranges`` (8, 2): the training orders [Å], for the negative-flux check of a 1D
    spectrum. Échelle spectra: only the ``rows`` used (:func:`~.checks.used_rows`) are cleaned;
    1D spectra are first cut to ``window`` [Å] (the part the velocity search and resampling
    can reach). The input is not modified. Raises SpectrumFileError on negative flux.
    """
    gaps = gap_ranges(spectrum)
    meta = {**spectrum.meta, "gaps_masked_A": [tuple(round(x, 2) for x in g) for g in gaps]}
    if spectrum.is_echelle:
        check_positive_flux(spectrum, [(f"row {r} ({spectrum.wave[r, 0]:.2f}–"
                                        f"{spectrum.wave[r, -1]:.2f} Å)", r) for r in rows])
        flux, mask, repaired = spectrum.flux.copy(), spectrum.mask.copy(), 0
        for r in rows:
            flux[r], mask[r], n = repair_segment(spectrum.wave[r], flux[r], mask[r], gaps)
            repaired += n
        checked = len(rows) * spectrum.wave.shape[1]
        wave = spectrum.wave
    else:
        first, last = np.searchsorted(spectrum.wave, window)
        part = slice(first, last)
        check_positive_flux(spectrum, [(f"HARPS-N order {physical_order(k)} ({lo:.2f}–{hi:.2f} Å)",
                                        slice(*np.searchsorted(spectrum.wave, (lo, hi))))
                                       for k, (lo, hi) in enumerate(order_ranges)])
        wave = spectrum.wave[part]
        flux, mask, repaired = repair_segment(wave, spectrum.flux[part], spectrum.mask[part], gaps)
        checked = wave.size
    cleaned = Spectrum(wave=wave, flux=flux, mask=mask, kind=spectrum.kind, path=spectrum.path,
                       meta=meta)
    return cleaned, repaired / max(checked, 1)

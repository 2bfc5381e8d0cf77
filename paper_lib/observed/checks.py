"""Checks of a read spectrum against the 8 training orders: coverage, rows, empty orders."""

from __future__ import annotations

import numpy as np

from ..echelle.layout import order_wavelengths
from ..instrument import physical_order
from .spectrum import Spectrum, SpectrumFileError, file_error

COVERAGE_TOLERANCE_A = 1.0  # a spectrum may fall short of the order span by this much [Å]
MIN_ROW_OVERLAP = 0.4  # the e2ds rows must together cover this fraction of each training order
PRIMARY_ROW_COVERAGE = 0.999  # a row covering (all of) an order is used alone for it


def order_ranges(order_wave=None) -> np.ndarray:
    """(8, 2) first and last wavelength [Å] of each training order."""
    order_wave = order_wavelengths() if order_wave is None else np.asarray(order_wave)
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


def coverage_error(path, covered: tuple, needed: tuple) -> SpectrumFileError:
    hint = " (are the wavelengths in nm? Å are expected)" if covered[1] < 1000 else ""
    return file_error(path, f"insufficient wavelength coverage: the spectrum covers "
                  f"{covered[0]:.2f}–{covered[1]:.2f} Å{hint}, but the 8 HARPS-N orders need "
                  f"{needed[0]:.2f}–{needed[1]:.2f} Å")


def check_1d(spectrum: Spectrum, order_wave=None) -> None:
    """Coverage of the 8 orders and no empty order; SpectrumFileError otherwise."""
    ranges = order_ranges(order_wave)
    needed = (ranges[:, 0].min(), ranges[:, 1].max())
    wave = spectrum.wave
    increasing = bool(np.all(wave[1:] > wave[:-1]))  # then each order is one slice (fast)
    covered = ((float(wave[0]), float(wave[-1])) if increasing
               else (float(np.nanmin(wave)), float(np.nanmax(wave))))
    if (covered[0] > needed[0] + COVERAGE_TOLERANCE_A
            or covered[1] < needed[1] - COVERAGE_TOLERANCE_A):
        raise coverage_error(spectrum.path, covered, needed)
    for k, (lo, hi) in enumerate(ranges):
        part = (slice(np.searchsorted(wave, lo), np.searchsorted(wave, hi, side="right"))
                if increasing else (wave >= lo) & (wave <= hi))
        problem = _describe_empty(spectrum.flux[part])
        if problem:
            order = physical_order(k)
            raise file_error(spectrum.path, f"the part of the spectrum under HARPS-N order {order} "
                         f"({lo:.2f}–{hi:.2f} Å) {problem}")


def matching_rows(wave: np.ndarray, order_wave=None, *, path=None) -> list[tuple[int, ...]]:
    """For each training order, the rows of ``wave`` (n_rows, n_px) used for it: the one that
    overlaps it most, and only where that one covers less than PRIMARY_ROW_COVERAGE of the
    order, the other rows overlapping it (in decreasing overlap).

    Several rows may cover one training order (échelle orders overlap, and a HARPS row is
    split by the gap between its two CCDs); together they must cover at least
    MIN_ROW_OVERLAP of it, else SpectrumFileError names the order and how much is covered.
    """
    ranges = order_ranges(order_wave)
    row_lo, row_hi = np.nanmin(wave, axis=1), np.nanmax(wave, axis=1)
    rows = []
    for k, (lo, hi) in enumerate(ranges):
        overlapping = np.flatnonzero((row_hi > lo) & (row_lo < hi))
        covered = np.zeros(512, dtype=bool)  # the order in 512 bins
        for row in overlapping:
            first, last = ((np.array([row_lo[row], row_hi[row]]) - lo) / (hi - lo) * 512)
            covered[max(int(np.ceil(first)), 0):max(int(np.floor(last)), 0)] = True
        if not covered.mean() >= MIN_ROW_OVERLAP:
            if not overlapping.size:
                raise coverage_error(path, (float(np.nanmin(wave)), float(np.nanmax(wave))),
                                     (ranges[:, 0].min(), ranges[:, 1].max()))
            raise file_error(path, f"insufficient wavelength coverage: the rows of the frame "
                             f"cover only {100 * covered.mean():.0f} % of HARPS-N order "
                             f"{physical_order(k)} ({lo:.2f}–{hi:.2f} Å); at least "
                             f"{100 * MIN_ROW_OVERLAP:.0f} % is needed")
        overlap = np.minimum(row_hi[overlapping], hi) - np.maximum(row_lo[overlapping], lo)
        ranked = overlapping[np.argsort(-overlap, kind="stable")]
        if overlap.max() >= PRIMARY_ROW_COVERAGE * (hi - lo):
            ranked = ranked[:1]  # one row covers the order: no seams between rows
        rows.append(tuple(int(r) for r in ranked))
    return rows


def used_rows(rows: list[tuple[int, ...]]) -> list[int]:
    """The distinct rows of :func:`matching_rows`' answer, in increasing order."""
    return sorted({row for order_rows in rows for row in order_rows})


def check_echelle(spectrum: Spectrum, raw: np.ndarray) -> list[int]:
    """Rows matching each of the 8 training orders, checked for monotonic λ and for data."""
    if not np.all(np.isfinite(spectrum.wave)):
        raise file_error(spectrum.path, "the wavelength solution contains NaN or inf")
    rows = matching_rows(spectrum.wave, path=spectrum.path)
    for row in used_rows(rows):
        wave = spectrum.wave[row]
        where = f"row {row} ({wave.min():.2f}–{wave.max():.2f} Å)"
        if np.any(np.diff(wave) <= 0):
            raise file_error(spectrum.path, f"the wavelengths of {where} do not increase")
        problem = _describe_empty(raw[row])
        if problem is None and not spectrum.mask[row].any():
            problem = "holds no valid pixels after blaze correction"
        if problem:
            raise file_error(spectrum.path, f"{where}, one of the 8 orders used, {problem}")
    return rows

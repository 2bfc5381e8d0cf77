"""A line mask from the calibrator stars (paper_lib.evaluation.line_mask): which pixels it hides,
that a star is never masked by its own spectra, and that the mask travels as wavelengths."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from paper_lib.echelle.layout import order_wavelengths
from paper_lib.echelle.realism import masked_pixels
from paper_lib.evaluation.line_mask import (apply_mask, calibrator_mask, calibrator_of,
                                            mask_intervals)
from paper_lib.observed.model_input import ModelInput

STARS = ("Sun", "Sun", "Arcturus (HD 124897)", "Procyon (HD 61421)")


def planted_residuals():
    """Residuals (4, 8, 4096) of the four spectra of :data:`STARS`: each misses its model by
    0.1 at its own pixel (the Sun's two at order 0 px 100 and 110, Arcturus at order 1 px 200,
    Procyon at order 2 px 300), 0.01 everywhere else, NaN where one has no data."""
    residuals = np.full((4, 8, 4096), 0.01)
    for k, (order, pixel) in enumerate([(0, 100), (0, 110), (1, 200), (2, 300)]):
        residuals[k, order, pixel] = -0.1
    residuals[0, 5, :50] = np.nan
    return residuals


def test_the_mask_hides_what_the_calibrators_miss_and_never_a_star_by_itself():
    spectra = [SimpleNamespace(star=star) for star in STARS]
    assert [calibrator_of(s) for s in spectra] == ["Sun", "Sun", "Arcturus", None]
    residuals = planted_residuals()
    kept = calibrator_mask(spectra, residuals, 0.05)
    assert kept.shape == (8, 4096)
    hidden = np.argwhere(~kept)
    expected = ([(0, p) for p in range(98, 103)] + [(0, p) for p in range(108, 113)]
                + [(1, p) for p in range(198, 203)])
    assert sorted(map(tuple, hidden)) == expected  # ±2 pixels; Procyon is no calibrator
    without_sun = calibrator_mask(spectra, residuals, 0.05, without="Sun")
    assert sorted(map(tuple, np.argwhere(~without_sun))) == [(1, p) for p in range(198, 203)]
    without_arcturus = calibrator_mask(spectra, residuals, 0.05, without="Arcturus", widen_px=0)
    assert sorted(map(tuple, np.argwhere(~without_arcturus))) == [(0, 100), (0, 110)]
    assert calibrator_mask(spectra, residuals, 0.5).all()  # nothing misses by half the continuum
    with pytest.raises(ValueError, match="no calibrator spectra"):
        calibrator_mask(spectra[3:], residuals[3:], 0.05)


def test_the_mask_travels_as_wavelengths_and_hides_pixels_like_the_gap():
    wave = order_wavelengths()
    kept = np.ones((8, 4096), dtype=bool)
    kept[0, 1998:2013] = kept[1, 2198:2203] = kept[7, 4090:] = False  # where orders do not overlap
    intervals = mask_intervals(kept, wave)
    assert len(intervals) == 3 and all(lo < hi for lo, hi in intervals)
    np.testing.assert_array_equal(masked_pixels(wave, intervals), ~kept)  # the same pixels back
    overlap = np.ones((8, 4096), dtype=bool)
    overlap[0, 4000:4010] = False  # order 0's red end is order 1's blue start (5068–5083 Å)
    hidden = masked_pixels(wave, mask_intervals(overlap, wave))
    assert hidden[0, 4000:4010].all() and hidden[1].sum() >= 8  # a wavelength, in every order
    image = np.full((8, 4096), 0.7, dtype=np.float32)
    data = np.ones((8, 4096), dtype=bool)
    data[3, :10] = False
    source = ModelInput(image=image, mask=data, rv_kms=1.0, gap_fraction=float((~data).mean()),
                        order_wave=wave, kind="text")
    masked = apply_mask(source, intervals)
    assert np.all(masked.image[~kept] == 1.0) and np.all(masked.image[kept] == 0.7)
    np.testing.assert_array_equal(masked.mask, data & kept)
    assert masked.image.dtype == np.float32 and masked.gap_fraction == source.gap_fraction
    assert mask_intervals(np.ones((8, 4096), dtype=bool), wave) == ()

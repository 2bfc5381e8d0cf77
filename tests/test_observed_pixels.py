"""Pixels without usable data (paper_lib.observed.pixels): instrument gaps masked by wavelength,
negative flux refused, bad pixels repaired from their neighbours."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from paper_lib.instrument import C_KMS, CCD_GAPS_A, HARPS_CCD_GAP_A
from paper_lib.observed.fits import header_meta
from paper_lib.observed.model_input import to_model_input
from paper_lib.observed.pixels import (GAP_MARGIN_A, MAX_BERV_KMS, gap_ranges, repair_segment)
from paper_lib.observed.spectrum import Spectrum, SpectrumFileError

from .observed_files import line_spectrum

(OBSERVED_GAP,) = CCD_GAPS_A["HARPS"]
SUN_BERV_KMS = 24.9557  # the HARPS Sun's HIERARCH ESO DRS BERV


def spectrum_with(meta: dict) -> Spectrum:
    wave = np.arange(5000.0, 5420.0, 0.01)
    return Spectrum(wave=wave, flux=np.ones_like(wave), mask=np.ones(wave.shape, bool),
                    kind="s1d", meta=meta)


def test_the_gap_moves_with_the_frame_and_the_berv():
    (lo, hi), = gap_ranges(spectrum_with({"instrument": "HARPS", "frame": "barycentric",
                                          "berv_kms": SUN_BERV_KMS}))
    stretch = 1 + SUN_BERV_KMS / C_KMS
    assert lo == pytest.approx(OBSERVED_GAP[0] * stretch - GAP_MARGIN_A)
    assert hi == pytest.approx(OBSERVED_GAP[1] * stretch + GAP_MARGIN_A)
    assert lo < HARPS_CCD_GAP_A[0] and HARPS_CCD_GAP_A[1] < hi  # the Sun's zero-flux stretch
    (lo, hi), = gap_ranges(spectrum_with({"instrument": "HARPS", "frame": "observatory"}))
    assert (lo, hi) == pytest.approx((OBSERVED_GAP[0] - GAP_MARGIN_A, OBSERVED_GAP[1] + GAP_MARGIN_A))
    (lo, hi), = gap_ranges(spectrum_with({"instrument": "HARPS"}))  # frame and BERV unknown
    assert lo == pytest.approx(OBSERVED_GAP[0] * (1 - MAX_BERV_KMS / C_KMS) - GAP_MARGIN_A)
    assert hi == pytest.approx(OBSERVED_GAP[1] * (1 + MAX_BERV_KMS / C_KMS) + GAP_MARGIN_A)
    assert gap_ranges(spectrum_with({"instrument": "HARPS-N", "frame": "barycentric"})) == []
    assert gap_ranges(spectrum_with({})) == []


@pytest.mark.parametrize("cards, expected", [
    ({"INSTRUME": "HARPS"}, "HARPS"), ({"INSTRUME": "HARPN"}, "HARPS-N"),
    ({"INSTRUME": "HARPS-N"}, "HARPS-N"), ({"INSTRUME": "UVES"}, None),
    ({"HIERARCH ESO DRS CAL TH DEG LL": 3}, "HARPS"), ({"HIERARCH TNG DRS CAL TH DEG LL": 3}, "HARPS-N"),
    ({}, None)])
def test_instrument_from_the_header(cards, expected):
    assert header_meta(fits.Header(cards)).get("instrument") == expected


def test_whatever_the_gap_holds_is_masked():
    spectrum = spectrum_with({"instrument": "HARPS", "frame": "observatory"})
    spectrum.flux = line_spectrum(spectrum.wave)[0]
    inside = (spectrum.wave > OBSERVED_GAP[0]) & (spectrum.wave < OBSERVED_GAP[1])
    spectrum.flux[inside] = np.random.default_rng(0).normal(0.0, 0.02, inside.sum())
    model = to_model_input(spectrum, rv_kms=0.0)
    gap = (model.order_wave > OBSERVED_GAP[0]) & (model.order_wave < OBSERVED_GAP[1])
    assert gap.any() and not model.mask[gap].any() and np.all(model.image[gap] == 1.0)


def test_bad_pixels_are_repaired_from_their_neighbours():
    wave = np.arange(5200.0, 5230.0, 0.01)
    truth = line_spectrum(wave)[0] + np.random.default_rng(1).normal(0.0, 0.002, wave.size)
    flux = truth.copy()
    bad = {500: np.nan, 900: np.inf, 1300: -0.4, 1700: 0.0, 2100: truth[2100] + 3.0}
    for index, value in bad.items():
        flux[index] = value
    flux[2500:2502] = np.nan  # a run of two
    flux[2800:2900] = np.nan  # 1 Å without data: too long to repair
    repaired, valid, count = repair_segment(wave, flux, np.isfinite(flux) & (flux != 0), [])
    fixed = [*bad, 2500, 2501]
    assert count == len(fixed) and valid[fixed].all() and not valid[2800:2900].any()
    np.testing.assert_allclose(repaired[fixed], truth[fixed], atol=0.05)
    untouched = np.ones(wave.size, bool)
    untouched[fixed + list(range(2800, 2900))] = False
    np.testing.assert_array_equal(repaired[untouched], flux[untouched])  # no line taken for a spike


def test_negative_flux_is_named():
    spectrum = spectrum_with({})
    spectrum.flux = -line_spectrum(spectrum.wave)[0]
    with pytest.raises(SpectrumFileError, match="negative flux: the median flux under HARPS-N "
                                                "order 121") as error:
        to_model_input(spectrum)
    assert error.value.fix is None and "radial velocity" not in str(error.value)

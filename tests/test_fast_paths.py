"""The shortcuts that make `predict` fast give the same numbers as the general code they replace
(benchmarks/bench_predict.py measures the speed; these tests pin the results)."""

from __future__ import annotations

import numpy as np
import pytest

from paper_lib.echelle.layout import order_wavelengths
from paper_lib.observed.checks import check_1d
from paper_lib.observed.fits import FITS_BLOCK, _parse_header
from paper_lib.observed.quality import _nanmedian_rows
from paper_lib.observed.spectrum import Spectrum, SpectrumFileError
from paper_lib.observed.template import load_template, load_template_highpass
from paper_lib.observed.velocity import _valid_correlation, measure_velocity
from paper_lib.synthetic.resample import interpolation_weights, uniform_cubic_weights


def test_uniform_cubic_weights_equal_the_general_ones():
    rng = np.random.default_rng(3)
    n = 4100
    position = np.concatenate([[0.0, n - 1.0, 1.0, n - 2.0], rng.uniform(0, n - 1, 5000)])
    index, weight = uniform_cubic_weights(position, n)
    expected_index, expected_weight = interpolation_weights(np.arange(n, dtype=np.float64),
                                                            position, kind="cubic")
    assert np.array_equal(index, expected_index)
    assert np.array_equal(weight, expected_weight)


def test_nanmedian_rows_equals_numpy():
    rng = np.random.default_rng(4)
    values = rng.normal(size=(6, 8, 4093))
    values[rng.random(values.shape) < 0.1] = np.nan
    values[0, 0] = np.nan  # a row without values
    values[1, 1, :-1] = np.nan  # one value
    values[2, 2, :-2] = np.nan  # two values (an even count)
    values[3, 3, 7] = np.inf
    with pytest.warns(RuntimeWarning):  # numpy warns about the all-NaN row
        expected = np.nanmedian(values, axis=-1)
    assert np.array_equal(_nanmedian_rows(values), expected, equal_nan=True)


def test_valid_correlation_equals_direct_sum():
    rng = np.random.default_rng(5)
    long, short = rng.normal(size=1000), rng.normal(size=700)
    direct = np.correlate(long, short, mode="valid")
    assert np.allclose(_valid_correlation(long, short), direct, rtol=0, atol=1e-10)


def test_velocity_with_precomputed_template_highpass_is_the_same():
    wave, flux = load_template()
    v_true = 12.3
    observed = wave * (1 + v_true / 299792.458)
    plain = measure_velocity(observed, flux, wave, flux)
    fast = measure_velocity(observed, flux, wave, flux, template_highpass=load_template_highpass())
    assert fast == plain
    assert abs(plain.v_kms - v_true) < 0.05


def _header_bytes(cards: list[str]) -> bytes:
    text = "".join(card.ljust(80) for card in cards + ["END"])
    return text.ljust(-(-len(text) // FITS_BLOCK) * FITS_BLOCK).encode("ascii")


def test_header_parser_normalises_hierarch_names():
    header, offset = _parse_header(_header_bytes([
        "SIMPLE  =                    T",
        "HIERARCH ESO DRS BERV = 1.5 / km/s",
        "HIERARCH ESO  DRS  BJD =  2450000.5",  # irregular spacing, as astropy reads it
        "HIERARCH ESO DRS BERV = 2.5",  # a later card wins
        "HIERARCH WITHOUT EQUALS SIGN",
        "COMMENT = not a value card",
    ]))
    assert offset == FITS_BLOCK
    assert header["ESO DRS BERV"] == 2.5 and header["HIERARCH ESO DRS BERV"] == 2.5
    assert header["ESO DRS BJD"] == 2450000.5
    assert not any("WITHOUT" in key for key in header)
    assert header["SIMPLE"] is True


def test_empty_order_found_in_increasing_and_descending_spectra():
    ranges = order_wavelengths()
    wave = np.arange(ranges.min() - 5.0, ranges.max() + 5.0, 0.01)
    flux = np.ones_like(wave)
    flux[(wave > ranges[3, 0] - 1) & (wave < ranges[3, -1] + 1)] = np.nan
    for order in (slice(None), slice(None, None, -1)):
        spectrum = Spectrum(wave=wave[order], flux=flux[order], mask=np.isfinite(flux[order]),
                            kind="s1d")
        with pytest.raises(SpectrumFileError, match="is all NaN"):
            check_1d(spectrum)
    check_1d(Spectrum(wave=wave, flux=np.ones_like(wave), mask=np.ones(wave.shape, bool),
                      kind="s1d"))

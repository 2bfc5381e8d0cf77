"""The synthetic-gap measurement (paper_lib.evaluation.gap): metrics on constructed images, the
[M/H] scan recovering a known answer on synthetic stars, and the real Sun on the smoke grid."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from paper_lib import experiments
from paper_lib.evaluation import gap

from .test_experiments import toy_grid  # noqa: F401 - the module-scoped toy grid fixture


def test_metrics_of_constructed_images():
    synthetic = np.ones((2, 100))
    synthetic[:, 10:20] = 0.5  # one line per order, 0.5 deep
    real = synthetic.copy()
    real[:, 10:20] = 0.6  # the real line is shallower: depth ratio 0.4 / 0.5
    real[:, 50:55] = 0.9  # and a line the synthetic spectrum lacks
    mask = np.ones_like(real, dtype=bool)
    mask[1, 90:] = False
    real[1, 90:] = np.nan  # masked pixels may hold anything
    result = gap.gap_metrics(real, synthetic, mask)
    diff = (real - synthetic)[mask]
    assert result.rms == pytest.approx(np.sqrt(np.mean(diff ** 2)))
    assert result.bias == pytest.approx(np.mean(diff))
    assert result.depth_ratio == pytest.approx((2 * 10 * 0.4 + 2 * 5 * 0.1) / (2 * 10 * 0.5))
    assert result.missing_line_fraction == pytest.approx(10 / mask.sum())
    assert result.n_pixels == 190 and len(result.rms_per_order) == 2


def test_metrics_reject_bad_input():
    image = np.ones((2, 10))
    with pytest.raises(ValueError, match="same"):
        gap.gap_metrics(image, np.ones((2, 11)), np.ones((2, 10), bool))
    with pytest.raises(ValueError, match="no pixel"):
        gap.gap_metrics(image, image, np.zeros((2, 10), bool))
    bad = image.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gap.gap_metrics(bad, image, np.ones((2, 10), bool))
    with pytest.raises(ValueError, match="lo < hi"):
        gap.mh_values(0.0, -0.5)


def test_scan_recovers_the_metallicity_of_a_synthetic_star(toy_grid):  # noqa: F811
    truth = np.array([5800.0, 4.3, -0.24, 3.0])
    star = SimpleNamespace(image=experiments.synthetic_images(toy_grid, truth)[0],
                           mask=np.ones((8, 4096), bool))
    reference = truth.copy()
    reference[2] = 0.0  # measured at the wrong [M/H]: the gap is not zero ...

    def render(labels):
        return experiments.synthetic_images(toy_grid, labels)

    result = gap.measure_gap(star, render, reference, gap.mh_values(-0.5, 0.0))
    assert result["rms"] > 1e-3
    assert result["best_mh"] == pytest.approx(-0.24, abs=0.021)  # ... and the scan finds it
    assert min(result["mh_scan"]["rms"]) < 1e-4


# label_scan: the classical least-squares fit over all four labels ------------------------------

def _coded_render(labels):
    """Images that spell out their labels, one label per order: no two label sets look alike."""
    labels = np.atleast_2d(labels)
    scale = np.array([6000.0, 5.0, 1.0, 10.0])
    return np.repeat((labels / scale)[:, :, None], 16, axis=2)


def test_label_scan_finds_the_labels_and_the_valley():
    axes = {"teff": [5600.0, 5700.0, 5800.0], "logg": [4.0, 4.2, 4.4], "mh": [-0.2, -0.1, 0.0],
            "vsini": [1.0, 2.0, 3.0]}  # 81 combinations: more than one render chunk
    truth = np.array([5700.0, 4.4, -0.1, 2.0])
    real = _coded_render(truth)[0]
    calls = []

    def render(labels):
        calls.append(len(labels))
        return _coded_render(labels)

    fit = gap.label_scan(real, np.ones_like(real, bool), render, axes)
    assert fit["best"] == pytest.approx(truth.tolist()) and fit["best_rms"] < 1e-12
    assert max(calls) <= gap.RENDER_CHUNK and sum(calls) == 81
    assert [row["teff"] for row in fit["valley"]] == axes["teff"]
    at_truth = fit["valley"][1]
    assert (at_truth["logg"], at_truth["mh"], at_truth["vsini"]) == (4.4, -0.1, 2.0)
    # at the wrong Teff the best of the other labels is still the truth (coded images are
    # independent per label), but the RMS is the Teff order's mismatch alone
    off = fit["valley"][0]
    assert off["rms"] == pytest.approx(np.sqrt((100.0 / 6000.0) ** 2 / 4), rel=1e-6)


def test_label_scan_needs_every_label():
    real = _coded_render(np.array([5700.0, 4.4, -0.1, 2.0]))[0]
    with pytest.raises(ValueError, match="vsini"):
        gap.label_scan(real, np.ones_like(real, bool), _coded_render,
                       {"teff": [5700.0], "logg": [4.4], "mh": [-0.1]})
    with pytest.raises(ValueError, match="mh"):
        gap.label_scan(real, np.ones_like(real, bool), _coded_render,
                       {"teff": [5700.0], "logg": [4.4], "mh": [], "vsini": [2.0]})


def test_solar_scan_axes_stay_inside_the_grid():
    axes = gap.solar_scan_axes([(5500.0, 6000.0), (4.0, 4.5), (-0.5, 0.0)])  # the smoke box
    assert axes["teff"][0] == 5500.0 and axes["teff"][-1] == 6000.0 and len(axes["teff"]) == 11
    assert axes["mh"][0] == -0.4 and axes["mh"][-1] == 0.0  # +0.05, +0.1 lie outside the grid
    assert list(axes["vsini"]) == [1.5, 2.5]
    narrow = gap.solar_scan_axes([(5600.0, 5800.0), (4.2, 4.4), (-0.1, 0.1)])
    assert list(narrow["teff"]) == [5600.0, 5650.0, 5700.0, 5750.0, 5800.0]
    assert list(narrow["logg"]) == [4.2, 4.3, 4.4] and narrow["mh"][-1] == 0.1


def test_compare_with_real_measures_rms_depth_and_the_weak_line_excess():
    """Gaussian lines of 15 mÅ; the 'real' Sun's are 0.8 times as deep: log EW ratio −0.097."""
    wave = np.stack([np.linspace(5100.0, 5110.0, 2001), np.linspace(5110.0, 5120.0, 2001)])
    lines = [((26, 1), 5103.0), ((26, 1), 5106.0), ((22, 1), 5113.0), ((26, 2), 5116.0)]
    depth = np.zeros_like(wave)
    for _, centre in lines:
        depth += 0.2 * np.exp(-0.5 * ((wave - centre) / 0.03) ** 2)
    synthetic = 1.0 - depth
    real = SimpleNamespace(order_wave=wave, image=1.0 - 0.8 * depth,
                           mask=np.ones_like(wave, dtype=bool))
    result = gap.compare_with_real(real, {"same": real.image, "deeper": synthetic}, lines)
    assert result["same"]["rms"] == pytest.approx(0.0, abs=1e-7)
    assert result["same"]["depth_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert set(result["same"]["excess"].values()) == {0.0}
    deeper = result["deeper"]
    assert deeper["n_lines"] == 4 and deeper["depth_ratio"] == pytest.approx(0.8, abs=1e-3)
    assert deeper["excess"]["EW 5-20 mÅ"] == pytest.approx(np.log10(0.8), abs=2e-3)
    assert {"Fe I", "other neutral atoms", "ions"} <= set(deeper["excess"])
    real.mask[0, :1000] = False  # the line at 5103 Å is lost with these pixels
    assert gap.compare_with_real(real, {"deeper": synthetic}, lines)["deeper"]["n_lines"] == 3

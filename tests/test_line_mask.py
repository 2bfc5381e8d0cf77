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


# the mask the default network never sees ----------------------------------------------------

def test_a_resnet_never_sees_its_hidden_pixels_and_keeps_them_in_its_record():
    import torch

    from paper_lib.models import build_from_arch, describe
    from paper_lib.models.resnet import ResNet

    torch.manual_seed(0)
    model = ResNet(width=4, fc_hidden=(8, 8), hidden_runs=[[0, 10, 20], [7, 4000, 4096]]).eval()
    spectra = 0.5 + 0.5 * torch.rand(2, 8, 4096)
    changed = spectra.clone()
    changed[:, 0, 10:20], changed[:, 7, 4000:] = 0.2, 0.3
    with torch.no_grad():
        torch.testing.assert_close(model(spectra).mean, model(changed).mean)
        changed[:, 0, 20] = 0.2  # the first pixel after a run is seen
        assert not torch.allclose(model(spectra).mean, model(changed).mean)
    rebuilt = build_from_arch(describe(model))
    assert rebuilt.arch["kwargs"]["hidden_runs"] == [[0, 10, 20], [7, 4000, 4096]]
    assert torch.equal(rebuilt.hidden, model.hidden)
    assert "hidden_runs" not in ResNet(width=4, fc_hidden=(8, 8)).arch["kwargs"]  # old records
    assert "hidden" not in model.state_dict()  # weights move between masked and unmasked nets
    with pytest.raises(ValueError, match="outside"):
        ResNet(width=4, fc_hidden=(8, 8), hidden_runs=[[8, 0, 10]])


def test_pixel_runs_are_the_pixels_of_the_intervals():
    from paper_lib.echelle.line_mask import pixel_runs

    wave = order_wavelengths()
    kept = np.ones((8, 4096), dtype=bool)
    kept[0, 1998:2013] = kept[3, :5] = kept[7, 4090:] = False
    runs = pixel_runs(mask_intervals(kept, wave), wave)
    assert [0, 1998, 2013] in runs and [3, 0, 5] in runs and [7, 4090, 4096] in runs
    hidden = np.zeros_like(kept)
    for order, first, stop in runs:
        hidden[order, first:stop] = True
    np.testing.assert_array_equal(hidden, masked_pixels(wave, mask_intervals(kept, wave)))
    assert pixel_runs(()) == []


def test_a_profile_names_its_line_mask_and_a_missing_one_says_how_to_make_it(monkeypatch, tmp_path):
    import dataclasses

    from paper_lib import paths
    from paper_lib.echelle.line_mask import line_mask_intervals, pixel_runs, read_line_mask
    from paper_lib.experiments import data_settings
    from paper_lib.profiles import get_profile
    from paper_lib.training.variants import network_settings, parse_variant

    smoke = get_profile("smoke")
    real = parse_variant("resnet_diagonal_real")
    assert smoke.line_mask == get_profile("cpu").line_mask == "cpu"
    intervals = line_mask_intervals(smoke)
    assert data_settings(smoke, real=True)["realism"].masked_wavelengths == intervals
    assert network_settings(real, smoke)["hidden_runs"] == pixel_runs(intervals)
    assert "hidden_runs" not in network_settings(parse_variant("resnet_diagonal"), smoke)
    plain = dataclasses.replace(smoke, line_mask=None)
    assert line_mask_intervals(plain) == () and read_line_mask(plain) is None
    assert "hidden_runs" not in network_settings(real, plain)
    with pytest.raises(ValueError, match="no fold"):
        line_mask_intervals(smoke, "without_vega")
    monkeypatch.setattr(paths, "models", tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m paper_lib line-mask --profile cpu"):
        line_mask_intervals(smoke)
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "line_mask.json").write_text('{"folds": {}}')
    with pytest.raises(ValueError, match="not a line-mask record"):
        read_line_mask(smoke)


def test_the_shipped_mask_is_what_the_command_makes_and_what_the_networks_hide():
    """models/cpu/line_mask.json remade from the shipped emulator and the real calibrator
    spectra; the default network and its leave-one-out networks hide exactly its folds."""
    import json

    from paper_lib import paths
    from paper_lib.evaluation.benchmark_stars import benchmark_set, star_readers
    from paper_lib.echelle.line_mask import fold_names, pixel_runs
    from paper_lib.evaluation.line_mask import make_line_mask
    from paper_lib.models import describe

    from .conftest import shared_or_skip

    shared_or_skip("benchmarks/references.csv")
    shipped = json.loads((paths.models / "cpu" / "line_mask.json").read_text())
    remade = make_line_mask("cpu", benchmark_set())
    assert set(remade["folds"]) == set(fold_names()) == set(shipped["folds"])
    assert remade["emulator_network_sha256"] == shipped["emulator_network_sha256"]
    for fold, mask in shipped["folds"].items():
        np.testing.assert_allclose(remade["folds"][fold]["intervals"], mask["intervals"], atol=1e-6)
    assert shipped["folds"]["all"]["masked_fraction"] > max(
        m["masked_fraction"] for f, m in shipped["folds"].items() if f != "all")
    predictor, readers = star_readers(None, "cpu")
    assert describe(predictor.model)["kwargs"]["hidden_runs"] == pixel_runs(
        shipped["folds"]["all"]["intervals"])
    assert set(readers) == {"Sun", "Arcturus"}
    for fold, star in fold_names().items():
        if star is not None:
            assert describe(readers[star].model)["kwargs"]["hidden_runs"] == pixel_runs(
                shipped["folds"][fold]["intervals"])
            assert readers[star].sigma_calibration is predictor.sigma_calibration

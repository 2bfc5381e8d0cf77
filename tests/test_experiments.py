"""The notebooks' glue, paper_lib.experiments: which data each variant sees, the one training
entry point (train_variants) end to end, evaluation and the real-spectrum helpers.

Runs on a toy grid (12 nodes of the smoke profile's label box over the full 5020–5400 Å, a
few synthetic lines) and a profile shrunk to one step per epoch, so it needs no grid build.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from paper_lib import experiments
from paper_lib.labels import LABEL_NAMES, VSINI_RANGE
from paper_lib.observed.model_input import ModelInput
from paper_lib.profiles import get_profile
from paper_lib.synthetic.grid import Grid
from paper_lib.synthetic.turbospectrum import grid_wavelengths

LINES_A = (5167.3, 5172.7, 5183.6, 5227.2, 5269.5, 5328.0)  # Mg b and a few Fe I lines


@pytest.fixture(scope="module")
def toy_grid() -> Grid:
    """Normalised 'spectra' whose line depths follow Teff, log g and [M/H]."""
    wave = grid_wavelengths()
    nodes = [(t, g, m) for t in (5500.0, 5750.0, 6000.0) for g in (4.0, 4.5) for m in (-0.5, 0.0)]
    flux = []
    for teff, logg, mh in nodes:
        depth = (0.2 + 0.3 * (6000.0 - teff) / 500.0) * (0.7 + 0.2 * logg / 4.5) * 10 ** (0.3 * mh)
        profile = sum(np.exp(-0.5 * ((wave - line) / 0.08) ** 2) for line in LINES_A)
        flux.append(1.0 - depth * profile)
    return Grid(wave, nodes, np.array(flux, dtype=np.float32), source="toy")


@pytest.fixture
def tiny():
    """The smoke profile, one step per epoch, a few spectra per set, three variants."""
    return dataclasses.replace(
        get_profile("smoke"), n_test=4, n_val=4, batch_size=2, steps_per_epoch=1, epochs=1,
        dae_epochs=1, finetune_epochs=1, snr_curve=(10.0,),
        variants=("resnet_diagonal", "resnet_diagonal_dae", "resnet_diagonal_limited"))


def test_sets_follow_the_profile(toy_grid, tiny, private_cache):
    main = experiments.test_batch(toy_grid, tiny)
    limited = experiments.test_batch(toy_grid, tiny, limited=True)
    val = experiments.validation_batch(toy_grid, tiny)
    assert len(main) == len(val) == tiny.n_test == 4
    assert len(experiments.test_batch(toy_grid, tiny, n=3)) == 3
    assert not np.array_equal(main.labels_physical.numpy(), val.labels_physical.numpy())  # own seeds
    lo, hi = tiny.limited_teff
    teff = limited.labels_physical[:, 0].numpy()
    assert np.all((teff >= lo) & (teff <= hi))
    assert experiments.data_settings(tiny, limited=True)["snr"] == tiny.snr_limited
    assert experiments.measured_snr(main) == pytest.approx(tiny.snr_train, rel=0.05)
    assert experiments.measured_snr(limited) == pytest.approx(tiny.snr_limited, rel=0.05)
    again = experiments.test_batch(toy_grid, tiny)  # cached: the same spectra
    assert np.array_equal(again.noisy.numpy(), main.noisy.numpy())


def test_variants_for_orders_each_variant_after_its_base():
    smoke = get_profile("smoke")
    assert experiments.variants_for(smoke, "resnet") == [
        "resnet_diagonal", "resnet_full", "resnet_diagonal_dae", "resnet_full_dae",
        "resnet_diagonal_limited", "resnet_diagonal_real"]
    assert experiments.variants_for(smoke, "dae") == ["dae"]


def test_a_dae_variant_needs_the_trained_dae(toy_grid, tiny, private_cache, tmp_path):
    with pytest.raises(FileNotFoundError, match="run notebook 02 first"):
        experiments.train_variants(["resnet_diagonal_dae"], tiny, toy_grid, tmp_path, progress=False)
    with pytest.raises(FileNotFoundError, match="notebooks 02–04"):
        experiments.load_variant(tiny, "resnet_diagonal", tmp_path)


@pytest.mark.slow
def test_train_evaluate_and_resume(toy_grid, tiny, private_cache, tmp_path):
    order = ["dae", "resnet_diagonal", "resnet_diagonal_dae", "resnet_diagonal_limited"]
    results = experiments.train_variants(order, tiny, toy_grid, tmp_path, progress=False)
    assert list(results) == order
    for variant, result in results.items():
        assert result.checkpoint == tmp_path / f"{variant}.pt" and result.checkpoint.exists()
        assert len(result.history) == 1
    summary = experiments.summarise(results)
    assert summary["resnet_diagonal"]["epochs"] == 1
    assert summary["resnet_diagonal"]["checkpoint"] == str(tmp_path / "resnet_diagonal.pt")

    stamps = {v: r.checkpoint.stat().st_mtime_ns for v, r in results.items()}
    again = experiments.train_variants(order, tiny, toy_grid, tmp_path, progress=False)
    assert {v: r.history for v, r in again.items()} == {v: r.history for v, r in results.items()}
    assert {v: r.checkpoint.stat().st_mtime_ns for v, r in again.items()} == stamps  # loaded only

    evaluated = experiments.evaluate_variants(tiny, toy_grid, tmp_path)
    assert list(evaluated) == list(tiny.variants)
    assert evaluated["resnet_diagonal_limited"]["snr"] == tiny.snr_limited
    for entry in evaluated.values():
        assert set(entry["mae"]) == set(LABEL_NAMES)
        assert entry["test"]["mean"].shape == (tiny.n_test, 4)
        assert all(np.isfinite(v) for v in entry["mae"].values())
    assert experiments.showcase_variant(evaluated) == "resnet_diagonal"
    rows = experiments.mae_vs_snr(tiny, toy_grid, tmp_path, n=2)
    assert {(r["variant"], r["snr"]) for r in rows} == {
        ("resnet_diagonal", 10.0), ("resnet_diagonal_dae", 10.0)}
    assert len(rows) == 2 * len(LABEL_NAMES)


def test_real_spectrum_helpers(toy_grid, tiny):
    labels = experiments.clamp_to_grid(toy_grid, [9000.0, 1.0, -2.0, 45.0], box=tiny.label_box)
    assert labels.tolist() == [6000.0, 4.0, -0.5, VSINI_RANGE[1]]
    image = experiments.synthetic_like(toy_grid, [5772.0, 4.44, 0.0, 2.0], box=tiny.label_box)
    assert image.shape == (8, 4096) and abs(float(np.median(image)) - 1.0) < 0.01
    gap = np.zeros((8, 4096), dtype=bool)
    gap[5, 100:200] = True
    source = ModelInput(image=np.full((8, 4096), 0.5, np.float32), mask=~gap, rv_kms=0.0,
                        gap_fraction=float(gap.mean()), order_wave=np.zeros((8, 4096)), kind="text")
    filled = experiments.impose_gap(source, gap)
    assert filled.dtype == np.float32 and np.all(filled[gap] == 1.0) and np.all(filled[~gap] == 0.5)


def test_real_variant_trains_with_realism(toy_grid, tiny, private_cache):  # noqa: F811
    plain = experiments.training_source(toy_grid, tiny)
    real = experiments.training_source(toy_grid, tiny, real=True)
    assert not plain.realism.active and real.realism.active
    assert real.realism.snr_range == tuple(tiny.real["snr_range"])
    val = experiments.validation_batch(toy_grid, tiny, real=True)
    assert val.noisy.shape[0] == tiny.n_val
    assert not np.array_equal(val.noisy.numpy(),
                              experiments.validation_batch(toy_grid, tiny).noisy.numpy())


def test_profile_interpolation_reaches_the_generators(toy_grid, tiny, private_cache):  # noqa: F811
    assert "interpolation" not in experiments.data_settings(tiny)  # linear: keys unchanged
    cubic = dataclasses.replace(tiny, interpolation="cubic")
    for limited in (False, True):
        assert experiments.data_settings(cubic, limited=limited)["interpolation"] == "cubic"
    source = experiments.training_source(toy_grid, cubic, real=True)
    assert source.interpolation == "cubic" and source.settings()["interpolation"] == "cubic"
    # the toy grid's 12 nodes leave no full cubic stencil, so its spectra equal the trilinear
    # ones; the settings above (the sets' cache key) tell them apart; the labels are the same
    linear_set = experiments.validation_batch(toy_grid, tiny)
    cubic_set = experiments.validation_batch(toy_grid, cubic)
    np.testing.assert_array_equal(cubic_set.labels_physical.numpy(),
                                  linear_set.labels_physical.numpy())


def test_learning_curve_reads_the_history(toy_grid, tiny, tmp_path, private_cache):  # noqa: F811
    experiments.train_variants(["resnet_diagonal"], tiny, toy_grid, tmp_path, progress=False)
    curve = experiments.learning_curve(tiny, "resnet_diagonal", tmp_path)
    assert curve["spectra"] == [tiny.steps_per_epoch * tiny.batch_size]
    assert np.asarray(curve["val_mae"]).shape == (1, 4) and curve["minutes"][0] >= 0
    with pytest.raises(FileNotFoundError, match="attention_diagonal"):
        experiments.learning_curve(tiny, "attention_diagonal", tmp_path)

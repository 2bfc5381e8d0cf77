"""The spectrum emulator and the least-squares fit against it (predict --refine without --grid).

A tiny emulator is trained here, in seconds, on a 4 × 3 × 3 block of the reference grid around
the Sun (5030–5370 Å, padded with continuum to the orders' range)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paper_lib.labels import LABEL_NAMES
from paper_lib.predict.known import KnownLabel

TINY = {"n_components": 24, "hidden": (64, 64), "steps": 1500, "held_fraction": 0.03}


@pytest.fixture(scope="module")
def block(reference_grid):
    """The reference grid's nodes at 5500–6250 K, log g 4.0–5.0, [M/H] −0.5–+0.5."""
    from paper_lib.synthetic.grid import Grid

    keep = ((reference_grid.labels[:, 0] >= 5500) & (reference_grid.labels[:, 0] <= 6250)
            & (reference_grid.labels[:, 1] >= 4.0) & (reference_grid.labels[:, 2] >= -0.5))
    return Grid(reference_grid.wavelength, reference_grid.labels[keep], reference_grid.flux[keep])


@pytest.fixture(scope="module")
def trained(block):
    from paper_lib.training.emulator import train_emulator

    torch.set_num_threads(1)
    emulator, held = train_emulator(block, log=lambda line: None, **TINY)
    return emulator, held


@pytest.fixture(scope="module")
def render(trained):
    from paper_lib.predict.forward import EmulatorRenderer

    return EmulatorRenderer(trained[0], pad_with_continuum=True)


def test_the_emulator_reproduces_held_out_nodes_far_below_the_synthetic_gap(block, trained):
    from paper_lib.training.emulator import emulator_errors

    emulator, held = trained
    assert len(held) == 1 and block.labels[held[0]].tolist() in ([5750.0, 4.5, 0.0], [6000.0, 4.5, 0.0])
    errors = emulator_errors(emulator, block, held, n_cells=4, pad_with_continuum=True)
    # measured 2.1e-3 (held) and 3.6e-3 (cells) for this tiny one; the Sun's synthetic gap: 0.035
    assert errors["held_rms"] < 5e-3 and errors["cells_rms"] < 5e-3


def test_a_stored_emulator_reads_back_the_same(trained, tmp_path):
    from paper_lib.models.emulator import load_emulator, save_emulator

    emulator = trained[0]
    save_emulator(tmp_path / "emulator.pt", emulator, {"note": "test"})
    again, record = load_emulator(tmp_path / "emulator.pt")
    labels = torch.tensor([[5800.0, 4.3, -0.1]])
    with torch.no_grad():
        assert float((again(labels) - emulator(labels)).abs().max()) < 2e-3  # float16 basis
    assert record == {"note": "test"}
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a spectrum emulator file"):
        load_emulator(tmp_path / "bad.pt")


def test_with_its_node_table_the_emulator_is_the_grid_fits_spline(block, trained):
    """Where the grid's spline stencil lies in the block (5750–6000 K, 4.5–5.0, 0.0–+0.5) the
    emulator is that spline projected on its basis, to float32 rounding; its MLP alone misses
    the spline by far more."""
    emulator = trained[0]
    rng = np.random.default_rng(2)
    points = np.column_stack([rng.uniform(5750, 6000, 20), rng.uniform(4.5, 5.0, 20),
                              rng.uniform(0.0, 0.5, 20)])
    spline = torch.as_tensor(block.interpolate(points, "cubic"))
    projected = emulator.mean + ((spline - emulator.mean) @ emulator.basis.T) @ emulator.basis
    with torch.no_grad():
        labels = torch.as_tensor(points, dtype=torch.float32)
        table = float((emulator(labels) - projected).pow(2).mean().sqrt())
        network = emulator.mean + emulator.network_coefficients(labels) @ emulator.basis
        alone = float((network - projected).pow(2).mean().sqrt())
    assert table < 1e-6 and alone > 1e-3  # measured 2.8e-8 and 3.1e-3


def test_the_shipped_emulator_reproduces_real_nodes_of_its_physics(smoke_grid):
    """The smoke grid's 14 nodes are the cpu grid's (the same physics, the same synthesis):
    the shipped cpu emulator reproduces them to its basis's floor with the node table, about
    twice as far with its MLP alone."""
    from paper_lib import paths
    from paper_lib.models.emulator import load_emulator
    from paper_lib.training.emulator import grid_physics

    emulator, record = load_emulator(paths.models / "cpu" / "emulator.pt")
    assert record["grid_physics"] == grid_physics(smoke_grid.source)
    labels = torch.as_tensor(smoke_grid.labels, dtype=torch.float32)
    truth = torch.as_tensor(smoke_grid.flux)
    with torch.no_grad():
        table = (emulator(labels) - truth).pow(2).mean(1).sqrt()
        network = emulator.network_only()(labels) - truth
    assert float(table.max()) < 1e-3  # measured 8.0e-4 (median 6.0e-4)
    assert float(network.pow(2).mean().sqrt()) > 1.2 * float(table.pow(2).mean().sqrt())


def test_an_emulator_file_without_a_node_table_reads_as_its_network(trained, tmp_path):
    from paper_lib.models.emulator import load_emulator, save_emulator

    save_emulator(tmp_path / "emulator.pt", trained[0].network_only(), {})
    again, _ = load_emulator(tmp_path / "emulator.pt")
    assert "n_nodes" not in again.arch["kwargs"] and len(again.node_labels) == 0
    labels = torch.tensor([[5870.0, 4.38, -0.07]])
    with torch.no_grad():
        torch.testing.assert_close(again.coefficients(labels),
                                   trained[0].network_coefficients(labels), atol=1e-4, rtol=0)
    assert again.network_sha256() == trained[0].network_sha256()


def test_a_node_table_is_added_to_an_emulator_trained_without_one(block, trained, tmp_path):
    from paper_lib.models.emulator import load_emulator, save_emulator
    from paper_lib.profiles import get_profile
    from paper_lib.training.emulator import add_node_table, table1_nodes

    save_emulator(tmp_path / "emulator.pt", trained[0].network_only(),
                  {"pad_with_continuum": True, "note": "kept"})
    add_node_table(get_profile("smoke"), models_dir=tmp_path, grid=block,
                   held_fraction=TINY["held_fraction"], log=lambda line: None)
    again, record = load_emulator(tmp_path / "emulator.pt")
    assert again.arch["kwargs"]["n_nodes"] == len(table1_nodes()) == 26 * 11 * 7
    assert record["note"] == "kept" and {"commit", "dirty"} <= set(record["node_table"])
    node = torch.tensor([[5750.0, 4.5, 0.0]])
    with torch.no_grad():
        exact = float((again(node)[0] - torch.as_tensor(block.node_flux(5750.0, 4.5, 0.0))).abs().max())
    assert exact < 5e-3  # measured 1.5e-3: the 24-component basis in float16
    assert record["errors"]["held_rms"] < 5e-3 and record["errors"]["n_held"] == 1


def test_the_jacobian_matches_central_differences(render):
    """The fit's forward differences against central ones of the same step: within the
    forward differences' truncation error (measured ≤ 6 % on this emulator)."""
    from paper_lib.predict.forward import DERIVATIVE_STEPS

    x = np.array([[5830.0, 4.35, -0.12, 4.0]])
    _, jacobian = render.linearise(x, range(4))
    for i, step in enumerate(DERIVATIVE_STEPS):
        shifted = [x.copy(), x.copy()]
        shifted[0][0, i] -= step
        shifted[1][0, i] += step
        difference = (render(shifted[1]) - render(shifted[0])) / (2 * step)
        scale = np.sqrt(np.mean(difference ** 2))
        assert np.sqrt(np.mean((jacobian[..., i] - difference) ** 2)) < 0.1 * scale


def test_the_normal_equations_are_those_of_the_jacobian(render):
    """The fit keeps JᵀWJ and JᵀWr, not J: the same numbers as the explicit products over the
    pixels with data (float32 sums: to 1e-4 of the largest entry)."""
    from paper_lib.predict.fit import _normal_equations

    x = np.array([[5830.0, 4.35, -0.12, 4.0], [6050.0, 4.55, 0.05, 6.0]])
    image, continuum = render(x, with_continuum=True)
    rng = np.random.default_rng(0)
    data = image.reshape(2, -1) + rng.normal(0.0, 0.01, (2, image[0].size))
    weight = np.ones_like(data)
    weight[:, 5000:9000] = 0.0
    residual = data - image.reshape(2, -1)
    normal, gradient = _normal_equations(render, x, continuum, residual, weight)
    _, jacobian = render.linearise(x, range(4))
    jacobian = jacobian.reshape(2, -1, 4)
    explicit = np.einsum("npi,np,npj->nij", jacobian, weight, jacobian)
    explicit_gradient = np.einsum("npi,np,np->ni", jacobian, weight, residual)
    assert np.abs(normal - explicit).max() < 1e-4 * np.abs(explicit).max()
    assert np.abs(gradient - explicit_gradient).max() < 1e-3 * np.abs(explicit_gradient).max()


def test_the_fit_recovers_the_labels_of_a_noisy_emulated_spectrum(render):
    from paper_lib.predict.fit import fit_batch

    truth = np.array([[5820.0, 4.32, -0.18, 3.0], [6010.0, 4.61, 0.12, 7.0]])
    rng = np.random.default_rng(3)
    images = render(truth) + rng.normal(0.0, 0.01, (2, 8, 4096))
    masks = np.ones(images.shape, dtype=bool)
    masks[:, 5, 1000:1400] = False  # a gap: these pixels must not count
    images[:, 5, 1000:1400] = 1.0
    start = truth - np.array([150.0, 0.27, 0.15, -1.0])  # like a network biased along the valley
    fits = fit_batch(images, masks, start, render)
    for fitted, true in zip(fits, truth):
        assert fitted.converged and fitted.at_bound == ()
        sigma = np.sqrt(np.diag(fitted.cov))
        assert np.all(np.abs(fitted.labels - true) < np.maximum(4 * sigma, [5.0, 0.01, 0.005, 0.1]))
        assert np.all(sigma < [15.0, 0.03, 0.01, 0.3])
        assert fitted.rms == pytest.approx(0.01, rel=0.1)  # the noise put in


def test_a_held_label_stays_at_its_value_and_its_sigma(render):
    from paper_lib.predict.fit import fit_batch

    truth = np.array([[5820.0, 4.32, -0.18, 3.0]])
    image = render(truth) + np.random.default_rng(4).normal(0.0, 0.01, (1, 8, 4096))
    fitted = fit_batch(image, np.ones(image.shape, bool), truth + [100.0, 0.0, 0.1, 0.0], render,
                       [KnownLabel("logg", 4.32, 0.05)])[0]
    assert fitted.labels[1] == 4.32 and np.sqrt(fitted.cov[1, 1]) == pytest.approx(0.05)
    assert abs(fitted.labels[0] - 5820.0) < 20 and abs(fitted.labels[2] + 0.18) < 0.02


def test_a_fit_pushed_past_the_label_box_ends_flagged_at_the_bound(render):
    from paper_lib.predict.fit import fit_batch

    edge = np.array([[5900.0, 4.4, 0.5, 3.0]])  # [M/H] at the box's top
    image = 1.0 - 1.6 * (1.0 - render(edge))  # lines deeper than any [M/H] in the box gives
    fitted = fit_batch(image, np.ones(image.shape, bool), edge - [0, 0, 0.3, 0], render)[0]
    assert "mh" in fitted.at_bound and fitted.labels[2] == 0.5


def test_a_held_label_outside_the_box_is_a_clear_error(render):
    from paper_lib.predict.fit import fit_batch
    from paper_lib.synthetic.grid import OutsideGridError

    with pytest.raises(OutsideGridError, match="outside the emulator's label box"):
        fit_batch(np.ones((1, 8, 4096)), np.ones((1, 8, 4096), bool), [[5800, 4.4, 0, 2]], render,
                  [KnownLabel("mh", 1.5, 0.1)])


# ------------------------------------------------------------------ through predict

@pytest.fixture(scope="module")
def models_with_emulator(tmp_path_factory, trained):
    """The committed cpu default network beside the tiny emulator (padded with continuum)."""
    import shutil

    from paper_lib import paths
    from paper_lib.models.emulator import save_emulator
    from paper_lib.predict import DEFAULT_MODEL

    folder = tmp_path_factory.mktemp("models")
    for name in (f"{DEFAULT_MODEL}.pt", "dae.pt", "ood_calibration.json"):
        shutil.copy(paths.models / "cpu" / name, folder / name)
    save_emulator(folder / "emulator.pt", trained[0], {"pad_with_continuum": True})
    return folder


def test_refine_without_a_grid_fits_the_emulator_and_keeps_both_answers(models_with_emulator):
    from paper_lib.predict import FIT_BY_DEFAULT, predict_rows

    from .conftest import shared_or_skip

    sun = shared_or_skip("sun/Sun_HARPS_Ganymede_s1d.fits")
    fitted, plain, default = (predict_rows([sun], profile="cpu", models_dir=models_with_emulator,
                                           refine=refine)[0] for refine in (True, False, None))
    assert fitted["method"] == "fit" and "refine_failed" not in fitted["flags"]
    assert plain["method"] == "network" and default["method"] == ("fit" if FIT_BY_DEFAULT else "network")
    for name in LABEL_NAMES:
        assert fitted[name] == fitted[f"{name}_fit"]
        assert fitted[f"{name}_network"] == pytest.approx(plain[name])
        assert plain[name] == plain[f"{name}_network"] and np.isnan(plain[f"{name}_fit"])
    assert fitted["teff"] != plain["teff"] and 0 < fitted["fit_rms"] < 0.2
    assert set(plain) == set(fitted)  # every row has every column
    from paper_lib.predict.formatting import render

    header, line = render([fitted], "csv").splitlines()
    assert "teff_network" in header and "fit_rms" in header and ",fit," in line
    assert "fitted on the emulator" in render([fitted], "table")
    assert '"network"' in render([fitted], "json") and '"fit_rms"' in render([plain], "json")


def test_the_command_line_switches_the_fit_on_and_off():
    from paper_lib.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["predict", "x.fits"]).refine is None  # FIT_BY_DEFAULT decides
    assert parse(["predict", "x.fits", "--refine"]).refine is True
    assert parse(["predict", "x.fits", "--no-refine"]).refine is False
    assert parse(["emulator", "--profile", "cpu"]).func.__name__ == "_emulator"


@pytest.mark.parametrize("truth, within", [  # measured 5.3 K, 0.010, 0.013, 0.10 and
    ([5870.0, 4.38, -0.07, 4.0], [15.0, 0.03, 0.02, 0.3]),  # 0.08 K, 1.3e-4, 8e-5, 2e-4
    ([5890.0, 4.71, 0.21, 4.0], [1.0, 2e-3, 1e-3, 0.01])])
def test_the_emulator_fit_agrees_with_the_grid_fit_on_an_interpolated_star(block, trained, truth,
                                                                           within):
    """The same noisy star, made by the grid's own interpolation, fitted on the grid and on the
    tiny emulator of that grid: one fit (Levenberg–Marquardt) on two models. The second star's
    spline stencil lies in the block, where the emulator is the grid's spline; around the first
    the block's missing nodes make the grid trilinear and the emulator's table holds its MLP."""
    from paper_lib.predict.fit import EmulatorFitter
    from paper_lib.predict.refine import GridRefiner

    grid_fit = GridRefiner(block, pad_with_continuum=True)
    truth = np.array([truth])
    image = grid_fit.render(truth) + np.random.default_rng(5).normal(0.0, 0.005, (1, 8, 4096))
    masks, start = np.ones(image.shape, bool), truth + [-120.0, -0.2, -0.1, 1.0]
    (on_grid, _), = grid_fit.fit(image, masks, start)
    fitter = EmulatorFitter(trained[0], pad_with_continuum=True)
    (on_emulator, problem), = fitter.fit(image, masks, start)
    assert problem is None and on_emulator.converged and on_grid.converged
    assert np.all(np.abs(on_emulator.labels - on_grid.labels) < within)


def test_the_training_entry_point_writes_the_emulator_and_its_record(block, private_cache, tmp_path):
    import json

    from paper_lib.models.emulator import load_emulator
    from paper_lib.profiles import get_profile
    from paper_lib.training.emulator import train_profile_emulator

    settings = {k: v for k, v in TINY.items() if k != "steps"}
    path = train_profile_emulator(get_profile("smoke"), steps=200, models_dir=tmp_path, grid=block,
                                  log=lambda line: None, **settings)
    record = json.loads((tmp_path / "emulator.history.json").read_text())
    assert path == tmp_path / "emulator.pt" and load_emulator(path)[1] == record
    assert record["pad_with_continuum"] and record["errors"]["n_held"] == 1
    assert {"commit", "dirty", "grid_physics", "arch"} <= set(record)
    assert not (private_cache / "emulator_smoke.ckpt").exists()  # removed once finished


def test_the_command_line_fits_the_emulator_beside_the_weights(models_with_emulator):
    import json
    import subprocess
    import sys

    from paper_lib import paths

    from .conftest import shared_or_skip

    sun = shared_or_skip("sun/Sun_HARPS_Ganymede_s1d.fits")
    done = subprocess.run([sys.executable, "-m", "paper_lib", "predict", str(sun), "--refine",
                           "--models-dir", str(models_with_emulator), "--format", "json"],
                          capture_output=True, text=True, cwd=paths.root, timeout=600)
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["method"] == "fit" and row["teff"]["value"] == row["teff"]["fit"]


def test_residuals_at_the_reference_show_what_the_model_misses(render):
    from types import SimpleNamespace

    from paper_lib.evaluation.line_mask import calibrator_mask, residuals_at_reference

    truth = np.array([[5820.0, 4.32, -0.18, 4.0]])
    image = render(truth)
    image[0, 3, 2000:2004] -= 0.2  # a line the model lacks
    masks = np.ones(image.shape, dtype=bool)
    masks[0, 6, :100] = False
    star = SimpleNamespace(star="Sun", reference={"teff": 5820.0, "logg": 4.32, "mh": -0.18})
    residuals = residuals_at_reference([star], image, masks, [2.5], render)  # v sin i refitted
    assert np.isnan(residuals[0, 6, :100]).all()
    np.testing.assert_allclose(residuals[0, 3, 2000:2004], -0.2, atol=0.01)
    elsewhere = np.delete(residuals[0].reshape(-1), np.flatnonzero(~masks[0].reshape(-1)))
    assert np.nanmax(np.abs(np.sort(np.abs(elsewhere))[:-4])) < 0.01
    kept = calibrator_mask([star], residuals, 0.05, widen_px=1)
    assert sorted(map(tuple, np.argwhere(~kept))) == [(3, p) for p in range(1999, 2005)]

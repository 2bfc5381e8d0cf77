"""README's results block equals what results/<profile>/ says."""

from __future__ import annotations

import re

import pytest

from paper_lib import paths, report
from paper_lib.labels import LABEL_NAMES
from paper_lib.profiles import get_profile
from paper_lib.provenance import write_results


def test_readme_cpu_results_match_results_folder():
    cpu = get_profile("cpu")
    if not (paths.results / "cpu" / "05_results_tables.json").exists():
        assert "has not been committed yet" in report.readme_block(cpu)
        pytest.skip("no committed cpu run yet (results/cpu/ is absent)")
    assert report.readme_block(cpu) == report.results_section(cpu), (
        "README.md is out of date: run `python -m paper_lib report --profile cpu`")


def test_results_section_needs_a_run(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "results", tmp_path)
    with pytest.raises(FileNotFoundError, match="run_all.sh --profile paper"):
        report.results_section(get_profile("paper"))


def test_smoke_section_lists_every_variant(tmp_path, monkeypatch):
    """Rendered from results files written here, so it checks with or without a notebook run."""
    smoke = get_profile("smoke")
    for name in ("root", "results", "figures"):
        monkeypatch.setattr(paths, name, tmp_path if name == "root" else tmp_path / name)
    per_k = {"1": {"overall": 0.6}, "2": {"overall": 0.9}}
    write_results(smoke, "05_results_tables", {
        "table2": {v: dict(zip(LABEL_NAMES, (100.0, 0.1, 0.05, 1.0))) for v in smoke.variants},
        "snr": {v: 100.0 if v.endswith("_limited") else 20.0 for v in smoke.variants},
        "table3": {v: per_k for v in smoke.variants},
        "recalibration": {v: {"after": per_k, "quantile_map": per_k} for v in smoke.variants},
        "test_sizes": {v: 24 for v in smoke.variants}})
    diagonal = [v for v in smoke.variants if "_full" not in v]
    write_results(smoke, "06_harpsn_sun", {"predictions": {"UVES Sun": {
        v: {"mean": [5772.0, 4.4, 0.0, 2.0], "sigma": [100.0, 0.1, 0.1, 1.0]} for v in diagonal}}})
    (tmp_path / "figures" / "smoke").mkdir(parents=True)
    (tmp_path / "figures" / "smoke" / "fig3_residuals.png").write_bytes(b"")

    text = report.results_section(smoke)
    for variant in smoke.variants:  # Table 2 and Table 3 rows
        assert len(re.findall(rf"^\| {variant} \|", text, flags=re.M)) == 2
    for variant in diagonal:  # Table 4 rows
        assert f"| UVES Sun | {variant} | 5772.0 ± 100.0 |" in text
    assert "Table 2" in text and "Table 3" in text and "Table 4" in text
    assert "![Fig. 3: residuals against the true labels](figures/smoke/fig3_residuals.png)" in text
    assert "fig4_sigma.png" not in text  # only figures that exist are linked


def test_commits_text_names_each_commit_with_its_notebooks(monkeypatch):
    from paper_lib.profiles import get_profile

    commits = {"01": "a" * 40, "02": "a" * 40, "03": "a" * 40, "04": "a" * 40,
               "05": "b" * 40, "06": "b" * 40, "07": "c" * 40}
    monkeypatch.setattr(report, "_load", lambda profile, name: {
        "provenance": {"commit": commits[name[:2]]}})
    assert report.commits_text(get_profile("cpu")) == (
        f"commits `{'a' * 10}` (01–04), `{'b' * 10}` (05–06), `{'c' * 10}` (07)")
    commits.update(dict.fromkeys(commits, "d" * 40))
    assert report.commits_text(get_profile("cpu")) == f"commit `{'d' * 10}`"

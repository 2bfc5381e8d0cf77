"""The results blocks of README and of the site (docs/results.md) equal what results/<profile>/
says."""

from __future__ import annotations

import re

import pytest

from paper_lib import paths, report
from paper_lib.labels import LABEL_NAMES
from paper_lib.profiles import get_profile
from paper_lib.provenance import write_results


@pytest.mark.parametrize("page", sorted(report.PAGES))
def test_cpu_results_blocks_match_results_folder(page):
    cpu = get_profile("cpu")
    if not (paths.results / "cpu" / "05_results_tables.json").exists():
        assert "has not been committed yet" in report.page_block(cpu, page)
        pytest.skip("no committed cpu run yet (results/cpu/ is absent)")
    assert report.page_block(cpu, page) == report.results_section(
        cpu, short=report.PAGES[page]), (
        f"{page} is out of date: run `python -m paper_lib report --profile cpu`")


def test_readme_block_is_the_short_one_and_the_site_holds_the_rest():
    readme = report.page_block(get_profile("cpu"), "README.md")
    site = report.page_block(get_profile("cpu"), "docs/results.md")
    assert "Table 2" in readme and "Table 4" in readme and "Table 3" not in readme
    assert "Table 3" in site and len(re.findall(r"!\[", site)) > len(re.findall(r"!\[", readme))


def test_results_section_needs_a_run(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "results", tmp_path)
    with pytest.raises(FileNotFoundError, match="run_all.sh --profile paper"):
        report.results_section(get_profile("paper"))


@pytest.fixture
def smoke_results(tmp_path, monkeypatch):
    """Results files of the smoke profile written here, so the checks run without a notebook."""
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
    for name in ("fig3_residuals.png", "mae_vs_snr.png"):
        (tmp_path / "figures" / "smoke" / name).write_bytes(b"")
    return smoke, diagonal, tmp_path


def test_smoke_section_lists_every_variant(smoke_results):
    smoke, diagonal, _ = smoke_results
    text = report.results_section(smoke)
    for variant in smoke.variants:  # Table 2 and Table 3 rows
        assert len(re.findall(rf"^\| {variant} \|", text, flags=re.M)) == 2
    for variant in diagonal:  # Table 4 rows
        assert f"| UVES Sun | {variant} | 5772.0 ± 100.0 |" in text
    assert "Table 2" in text and "Table 3" in text and "Table 4" in text
    assert "![Fig. 3: residuals against the true labels](figures/smoke/fig3_residuals.png)" in text
    assert "fig4_sigma.png" not in text  # only figures that exist are linked
    assert r"| \[M/H\] \[dex\] |" in text  # a header, not a Markdown reference link


def test_short_section_keeps_tables_2_and_4_and_the_key_figures(smoke_results):
    smoke, _, _ = smoke_results
    text = report.results_section(smoke, short=True)
    assert "Table 2" in text and "Table 4" in text and "Table 3" not in text
    assert "figures/smoke/fig3_residuals.png" in text  # a key figure
    assert "mae_vs_snr.png" not in text  # present, but not one of README's key figures


def test_update_pages_rewrites_every_page_or_none(smoke_results):
    smoke, _, root = smoke_results
    (root / "docs").mkdir()
    empty = "<!-- results:smoke:start -->\nold\n<!-- results:smoke:end -->"
    (root / "README.md").write_text(f"# R\n\n{empty}\n")
    (root / "docs" / "results.md").write_text("# no block here\n")
    with pytest.raises(ValueError, match="docs/results.md has no"):
        report.update_pages(smoke)
    assert (root / "README.md").read_text() == f"# R\n\n{empty}\n"  # nothing written
    (root / "docs" / "results.md").write_text(f"# S\n\n{empty}\n")
    assert report.update_pages(smoke) == ["README.md", "docs/results.md"]
    assert report.page_block(smoke, "README.md") == report.results_section(smoke, short=True)
    assert report.page_block(smoke, "docs/results.md") == report.results_section(smoke)
    assert report.update_pages(smoke) == []


def test_commits_text_names_each_commit_with_its_notebooks(monkeypatch):
    commits = {"01": "a" * 40, "02": "a" * 40, "03": "a" * 40, "04": "a" * 40,
               "05": "b" * 40, "06": "b" * 40, "07": "c" * 40, "09": "c" * 40}
    monkeypatch.setattr(report, "_load", lambda profile, name: {
        "provenance": {"commit": commits[name[:2]]}})
    assert report.commits_text(get_profile("cpu")) == (
        f"commits `{'a' * 10}` (01–04), `{'b' * 10}` (05–06), `{'c' * 10}` (07–09)")
    commits.update(dict.fromkeys(commits, "d" * 40))
    assert report.commits_text(get_profile("cpu")) == f"commit `{'d' * 10}`"

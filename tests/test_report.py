"""README's results block equals what results/<profile>/ says."""

from __future__ import annotations

import pytest

from paper_lib import paths, report


def test_readme_cpu_results_match_results_folder():
    if not (paths.results / "cpu" / "05_results_tables.json").exists():
        assert "has not been committed yet" in report.readme_block("cpu")
        pytest.skip("no committed cpu run yet (results/cpu/ is absent)")
    assert report.readme_block("cpu") == report.results_section("cpu"), (
        "README.md is out of date: run `python -m paper_lib report --profile cpu`")


def test_results_section_needs_a_run(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "results", tmp_path)
    with pytest.raises(FileNotFoundError, match="run_all.sh --profile paper"):
        report.results_section("paper")


def test_smoke_section_lists_every_variant():
    """Rendered from the smoke run (nbval executes the notebooks before these tests)."""
    if not (paths.results / "smoke" / "05_results_tables.json").exists():
        pytest.skip("the smoke notebooks have not run in this checkout")
    text = report.results_section("smoke")
    from paper_lib.profiles import get_profile

    for variant in get_profile("smoke").variants:
        assert f"| {variant} |" in text
    assert "Table 2" in text and "Table 3" in text and "Table 4" in text
    assert "![Fig. 3: residuals against the true labels](figures/smoke/fig3_residuals.png)" in text

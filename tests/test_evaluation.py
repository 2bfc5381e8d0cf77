"""Tests of paper_lib.evaluation: hand-computed metrics, recalibration, figures and the separation of the paper's numbers from ours in the tables."""

import csv
import io
import os

os.environ.setdefault("MPLBACKEND", "agg")

import numpy as np
import pytest

from paper_lib.evaluation.figures import plot_calibration, plot_mae_vs_snr, plot_residuals, plot_sigma
from paper_lib.evaluation.metrics import (GAUSSIAN_COVERAGE, apply_sigma_scale, coverage,
                                          coverage_quantile_map, fit_sigma_quantile_map,
                                          fit_sigma_scale, gaussian_coverage, mae, mae_vs_snr,
                                          recalibration_report, residuals)
from paper_lib.evaluation.tables import (PAPER_SOURCE, PAPER_TABLE2, PAPER_TABLE3, PAPER_TABLE4,
                                         THEORY_SOURCE, THIS_WORK, rows_to_csv, table2, table3,
                                         table4)
from paper_lib.labels import LABEL_NAMES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- metrics

TRUE = np.array([[5000.0, 4.0, 0.0, 10.0],
                 [6000.0, 3.0, -1.0, 20.0]])
PRED = np.array([[5100.0, 4.5, 0.0, 8.0],
                 [5800.0, 3.0, -0.5, 23.0]])


def test_mae_hand_computed():
    result = mae(TRUE, PRED)
    assert list(result) == list(LABEL_NAMES)
    assert result == pytest.approx({"teff": 150.0, "logg": 0.25, "mh": 0.25, "vsini": 2.5})


def test_residuals_are_prediction_minus_truth():
    np.testing.assert_allclose(residuals(TRUE, PRED),
                               [[100.0, 0.5, 0.0, -2.0], [-200.0, 0.0, 0.5, 3.0]])


def test_metrics_reject_wrong_shapes():
    with pytest.raises(ValueError):
        mae(TRUE[:, :3], PRED[:, :3])
    with pytest.raises(ValueError):
        mae(TRUE, PRED[:1])


def test_coverage_hand_computed_and_strict():
    # errors in units of σ = 1 (σ = 2 for log g, so its errors are halved in σ units)
    errors = np.array([[0.5, 1.0, 0.0, 3.0],
                       [1.5, 3.0, 0.0, 3.0],
                       [2.5, -2.0, 0.0, 3.0],
                       [-0.2, 5.0, 0.0, 1.0]])  # 1.0 exactly at 1σ is *not* within (strict <)
    sigma = np.ones_like(errors)
    sigma[:, 1] = 2.0
    true = np.zeros_like(errors)
    result = coverage(true, errors, sigma, k=(1, 2))
    # teff |z| = .5, 1.5, 2.5, .2; logg |z| = .5, 1.5, 1, 2.5; mh all 0; vsini 3, 3, 3, 1
    assert result[1] == pytest.approx({"teff": 0.5, "logg": 0.25, "mh": 1.0, "vsini": 0.0,
                                       "overall": 7 / 16})
    assert result[2] == pytest.approx({"teff": 0.75, "logg": 0.75, "mh": 1.0, "vsini": 0.25,
                                       "overall": 11 / 16})


def test_gaussian_reference_values():
    assert GAUSSIAN_COVERAGE[1] == pytest.approx(0.682689, abs=1e-6)
    assert GAUSSIAN_COVERAGE[2] == pytest.approx(0.954500, abs=1e-6)
    np.testing.assert_allclose(gaussian_coverage(np.array([0.0, 1.0])), [0.0, 0.682689], atol=1e-6)


def test_mae_vs_snr_builds_tidy_table():
    def at_snr(snr):
        return TRUE, TRUE + 100.0 / snr  # error 100/SNR in every label

    table = mae_vs_snr(at_snr, [10, 100], variant="toy")
    assert len(table) == 2 * len(LABEL_NAMES)
    lookup = {(row["snr"], row["label"]): row["mae"] for row in table}
    assert lookup[(10.0, "teff")] == pytest.approx(10.0)
    assert lookup[(100.0, "vsini")] == pytest.approx(1.0)
    assert {row["variant"] for row in table} == {"toy"}
    assert rows_to_csv(table).splitlines()[0] == "variant,snr,label,unit,mae"


# --------------------------------------------------------------------------- recalibration

def _draw(rng, n, factor, heavy_tails=False):
    """Heteroscedastic synthetic predictions: the model's σ is ``factor`` × the true σ."""
    true = rng.uniform([3500, 0, -2.5, 0], [9750, 5, 0.5, 30], size=(n, 4))
    true_sigma = np.array([80.0, 0.14, 0.05, 0.7]) * np.exp(rng.normal(0, 0.5, size=(n, 4)))
    noise = rng.standard_t(3, size=(n, 4)) / np.sqrt(3.0) if heavy_tails else rng.normal(size=(n, 4))
    return true, true + true_sigma * noise, factor * true_sigma


@pytest.mark.parametrize("factor", [1.5, 0.6])
def test_recalibration_fixes_miscalibrated_sigma_on_fresh_draw(factor):
    rng = np.random.default_rng(7)
    val = _draw(rng, 40000, factor)
    test = _draw(rng, 40000, factor)

    before = coverage(*test)
    assert abs(before[1]["overall"] - GAUSSIAN_COVERAGE[1]) > 0.10  # clearly mis-calibrated

    scale = fit_sigma_scale(*val)
    np.testing.assert_allclose(scale, 1.0 / factor, rtol=0.03)
    np.testing.assert_allclose(fit_sigma_scale(*val, k=2.0), 1.0 / factor, rtol=0.03)
    scaled = coverage(test[0], test[1], apply_sigma_scale(test[2], scale))
    quantile_map = fit_sigma_quantile_map(*val)
    mapped = coverage_quantile_map(*test, quantile_map)
    for after in (scaled, mapped):
        for k in (1, 2):
            for key in list(LABEL_NAMES) + ["overall"]:
                assert after[k][key] == pytest.approx(GAUSSIAN_COVERAGE[k], abs=0.015), (k, key)


def test_quantile_map_calibrates_heavy_tails_where_one_scale_cannot():
    rng = np.random.default_rng(11)
    val = _draw(rng, 20000, 1.0, heavy_tails=True)
    test = _draw(rng, 20000, 1.0, heavy_tails=True)
    report = recalibration_report(*val, *test)
    # one factor fixes 1σ but, with Student-t residuals, not 2σ at the same time
    assert report["scaled"][1]["overall"] == pytest.approx(0.6827, abs=0.015)
    assert abs(report["scaled"][2]["overall"] - 0.9545) > 0.015
    for k in (1, 2):
        assert report["quantile_map"][k]["overall"] == pytest.approx(GAUSSIAN_COVERAGE[k], abs=0.015)
    assert set(report["sigma_scale"]) == set(LABEL_NAMES)


def test_quantile_map_effective_sigma_matches_multiplier():
    z = np.tile(np.linspace(0.0, 4.0, 401)[:, None], (1, 4))
    quantile_map = fit_sigma_quantile_map(np.zeros_like(z), z, np.ones_like(z))
    m1 = quantile_map.multiplier(1)
    np.testing.assert_allclose(m1, np.quantile(z[:, 0], GAUSSIAN_COVERAGE[1]))
    assert np.all(quantile_map.multiplier(2) > m1)  # monotone in k
    np.testing.assert_allclose(quantile_map.effective_sigma(np.full((1, 4), 2.0), 2.0),
                               [2.0 * quantile_map.multiplier(2) / 2.0])


# --------------------------------------------------------------------------- figures

@pytest.fixture(scope="module")
def synthetic_set():
    rng = np.random.default_rng(3)
    return _draw(rng, 300, 1.2)


def _assert_png(path):
    data = path.read_bytes()
    assert len(data) > 5000 and data.startswith(PNG_MAGIC)


def test_plot_residuals_and_sigma_write_png(tmp_path, synthetic_set):
    true, pred, sigma = synthetic_set
    fig = plot_residuals(true, pred, tmp_path / "sub" / "fig3.png")
    _assert_png(tmp_path / "sub" / "fig3.png")
    assert len([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]) == 16
    fig = plot_sigma(true, sigma, tmp_path / "fig4.png")
    _assert_png(tmp_path / "fig4.png")
    assert len(fig.axes) == 16
    fig = plot_sigma(true, sigma, tmp_path / "fig4_diag.png", layout="diagonal", log_sigma=True)
    _assert_png(tmp_path / "fig4_diag.png")
    assert len(fig.axes) == 4


def test_plot_mae_vs_snr_and_calibration_write_png(tmp_path, synthetic_set):
    table = mae_vs_snr(lambda snr: (TRUE, TRUE + 10.0 / snr), [5, 20, 100], "a")
    table += mae_vs_snr(lambda snr: (TRUE, TRUE + 20.0 / snr), [5, 20, 100], "b")
    fig = plot_mae_vs_snr(table, tmp_path / "mae_snr.png")
    _assert_png(tmp_path / "mae_snr.png")
    assert len(fig.axes[0].get_lines()) == 2

    true, pred, sigma = synthetic_set
    scale = fit_sigma_scale(true, pred, sigma)
    quantile_map = fit_sigma_quantile_map(true, pred, sigma)
    fig = plot_calibration(true, pred, sigma, tmp_path / "calibration.png",
                              sigma_scale=scale, quantile_map=quantile_map)
    _assert_png(tmp_path / "calibration.png")
    assert len(fig.axes) == 5


# --------------------------------------------------------------------------- tables

def _csv_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_table2_keeps_paper_numbers_in_a_separate_labelled_block(tmp_path):
    ours = {"resnet_diagonal": {"teff": 123.456, "logg": 0.2222, "mh": 0.0777, "vsini": 1.234, "snr": 20}}
    table = table2(ours, PAPER_TABLE2)
    ours_block, paper_block = table.markdown.split("### Comparison only")
    assert "123.5" in ours_block and "0.222" in ours_block and "1.23" in ours_block
    assert "76.9" not in ours_block and "Hüttel" not in ours_block
    assert PAPER_SOURCE in paper_block and "76.9" in paper_block and "123.5" not in paper_block
    assert "12.9" in paper_block and "StarNet" in paper_block

    rows = _csv_rows(table.csv)
    mine = [r for r in rows if r["source"] == THIS_WORK]
    published = [r for r in rows if r["source"] == PAPER_SOURCE]
    assert len(mine) == 1 and float(mine[0]["teff"]) == pytest.approx(123.456)
    assert len(published) == len(PAPER_TABLE2)
    by_key = {r["variant"]: r for r in published}
    assert float(by_key["attention_diagonal_dae"]["vsini"]) == 0.57
    assert by_key["cannon2"]["vsini"] == ""

    alone = table2(ours)
    assert "Hüttel" not in alone.markdown + alone.csv
    md_path, csv_path = alone.write(tmp_path / "t" / "table2")
    assert md_path.read_text(encoding="utf-8") == alone.markdown and csv_path.exists()


def test_table3_has_theory_ours_and_separate_paper_block():
    rng = np.random.default_rng(5)
    cov = coverage(*_draw(rng, 2000, 1.0))
    table = table3({"attention_diagonal_dae": cov}, PAPER_TABLE3)
    ours_block, paper_block = table.markdown.split("### Comparison only")
    assert "| Gaussian ideal, erf(k/√2) | 68.3 | 95.4 |" in ours_block
    assert f"{100 * cov[1]['overall']:.1f}" in ours_block
    assert "79.9" not in ours_block and "79.9" in paper_block and PAPER_SOURCE in paper_block
    rows = _csv_rows(table.csv)
    assert [r["source"] for r in rows] == [THEORY_SOURCE, THIS_WORK] + [PAPER_SOURCE] * 3
    assert float(rows[1]["overall_1sigma_percent"]) == pytest.approx(100 * cov[1]["overall"])
    assert float(rows[2]["overall_2sigma_percent"]) == 95.1  # the paper's printed Gaussian value


def test_table4_formats_mean_pm_sigma_and_paper_block():
    mean = np.array([5777.0, 4.438, 0.01, 1.9])
    sigma = np.array([120.0, 0.2, 0.1, 1.5])
    table = table4({"resnet_diagonal_limited": (mean, sigma)}, PAPER_TABLE4)
    ours_block, paper_block = table.markdown.split("### Comparison only")
    assert "5777.0 ± 120.0" in ours_block and "4.44 ± 0.20" in ours_block
    assert "5791.6 ± 140.1" in paper_block and "5791.6" not in ours_block
    assert "| reference | HARPS-N | 5750 |" in paper_block


def test_paper_constants_transcribed():
    t2 = PAPER_TABLE2
    assert (t2["resnet_diagonal"]["teff"], t2["resnet_full_dae"]["teff"]) == (76.9, 89.1)
    assert t2["attention_diagonal_limited"]["snr"] == 100 and t2["starnet"]["snr"] == 200
    assert [t2[k]["mh"] for k in ("cannon2", "starnet")] == [0.036, 0.025]
    assert PAPER_TABLE3["attention"][1] == 65.5 and PAPER_TABLE3["resnet"][2] == 98.4
    assert PAPER_TABLE4["attention"]["logg"] == (2.15, 0.04)

"""The benchmark stars as tables and a figure: one row per star (raw and calibrated answer,
reference, Δ, Δ/σ), one row per variant (median |Δ|, mean Δ, coverage), and Δ against the
reference per label with error bars and the stars named, as in the Gaia benchmark papers.

Tables are Markdown (and the DataFrames behind them); numbers come from
:mod:`paper_lib.evaluation.benchmark_stars`."""

from __future__ import annotations

import numpy as np

from ..labels import LABEL_PLAIN, LABEL_UNIT
from .label_calibration import CALIBRATED_LABELS

DIGITS = {"teff": 0, "logg": 2, "mh": 2}


def _num(value, label: str, sign: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return f"{value:{'+' if sign else ''}.{DIGITS[label]}f}"


def _short(star: str) -> str:
    """``'Procyon (HD 61421)'`` → ``'Procyon'``."""
    return star.split(" (")[0]


def star_table_markdown(raw, loso) -> str:
    """Per star (the mean of its spectra): the raw answer, the leave-one-star-out calibrated
    answer, the reference, Δ raw → calibrated and Δ/σ_total raw → calibrated, per label.
    Stars that are not counted (and so not calibrated) show their raw answer only."""
    from .benchmark_stars import per_star

    def means(table, columns):
        return table.groupby("star", sort=False)[columns].mean()

    labels = list(CALIBRATED_LABELS)
    raw_star, loso_star = per_star(raw), per_star(loso)
    raw_values = means(raw, labels + [f"ref_{k}" for k in labels])
    loso_values = means(loso, labels) if len(loso) else None
    head = ("| star | spectra | " + " | ".join(
        f"{LABEL_PLAIN[k]} raw → calibrated (reference) | Δ{LABEL_PLAIN[k]} | Δ/σ" for k in labels)
        + " |")
    lines = [head, "|" + "---|" * (2 + 3 * len(labels))]
    for star, row in raw_star.iterrows():
        calibrated = loso_values is not None and star in loso_values.index
        cells = [_short(star) + ("" if row["counted"] else " (not counted)"), str(int(row["spectra"]))]
        for k in labels:
            value = _num(raw_values.loc[star, k], k)
            delta, z = _num(row[f"delta_{k}"], k, True), f"{row[f'z_{k}']:+.1f}"
            if calibrated:
                value += f" → {_num(loso_values.loc[star, k], k)}"
                delta += f" → {_num(loso_star.loc[star, f'delta_{k}'], k, True)}"
                z += f" → {loso_star.loc[star, f'z_{k}']:+.1f}"
            cells += [f"{value} ({_num(raw_values.loc[star, f'ref_{k}'], k)})", delta, z]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def variant_table_markdown(results: dict) -> str:
    """One row per variant ({variant: calibrate_on_benchmarks result}): over the counted stars,
    median |Δ| and mean Δ raw, then median |Δ| and the fraction within 2σ_total raw and
    leave-one-star-out calibrated."""
    labels = list(CALIBRATED_LABELS)
    units = ", ".join(f"{LABEL_PLAIN[k]} [{LABEL_UNIT[k]}]" for k in labels)
    lines = [f"| variant | raw median \\|Δ\\| ({units}) | raw mean Δ | raw within 2σ | "
             "calibrated (LOSO) median \\|Δ\\| | calibrated within 2σ |", "|---|---|---|---|---|---|"]
    for variant, result in results.items():
        raw, cal = result["summary_raw"], result["summary_loso"]

        def triple(summary, key, sign=False):
            return ", ".join(_num(summary[key][k], k, sign) for k in labels)

        lines.append(f"| `{variant}` | {triple(raw, 'median_abs_delta')} | "
                     f"{triple(raw, 'mean_delta', True)} | {100 * raw['within_2sigma']:.0f} % | "
                     f"{triple(cal, 'median_abs_delta')} | {100 * cal['within_2sigma']:.0f} % |")
    return "\n".join(lines)


def plot_benchmark_deltas(raw, loso, path=None, title: str | None = None):
    """Δ = answer − reference against the reference, one panel per label, error bars σ_total,
    each star named; raw answers open, leave-one-star-out calibrated answers filled."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CALIBRATED_LABELS), figsize=(13, 4.2))
    for ax, k in zip(axes, CALIBRATED_LABELS):
        for table, style, name in ((raw, dict(mfc="none", color="0.45"), "raw"),
                                   (loso, dict(color="C0"), "calibrated (star left out)")):
            if not len(table):
                continue
            ax.errorbar(table[f"ref_{k}"], table[f"delta_{k}"], yerr=table[f"{k}_sigma"],
                        fmt="o", ms=6, capsize=2, label=name, **style)
        for star, group in raw.groupby("star", sort=False):
            ax.annotate(_short(star), (group[f"ref_{k}"].iloc[0], group[f"delta_{k}"].mean()),
                        xytext=(5, 4), textcoords="offset points", fontsize=7)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xlabel(f"reference {LABEL_PLAIN[k]} [{LABEL_UNIT[k]}]")
        ax.set_ylabel(f"Δ{LABEL_PLAIN[k]} (answer − reference) [{LABEL_UNIT[k]}]")
    axes[0].legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig

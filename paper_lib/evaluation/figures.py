"""The results figures: Figs 3–4 of the paper, MAE against SNR and the σ calibration plot.

Figures are built on :class:`matplotlib.figure.Figure` (no pyplot state, any backend), saved by
:func:`paper_lib.plotting.save_figure` and returned. Arrays are in physical units.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import seaborn as sns
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter

from ..labels import LABEL_NAMES, LABEL_TEX, LABEL_UNIT, N_LABELS
from ..plotting import save_figure
from .metrics import SigmaQuantileMap, check_same_shape, gaussian_coverage, standardized_abs_error

def _axis_label(name: str, prefix: str = "") -> str:
    return f"{prefix}{LABEL_TEX[name]} [{LABEL_UNIT[name]}]"


def _new_figure(nrows: int, ncols: int, size: tuple[float, float], **subplot_kw):
    with sns.axes_style("ticks"):
        fig = Figure(figsize=size, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def _point_alpha(n: int) -> float:
    return float(np.clip(1000.0 / max(n, 1), 0.15, 0.8))


def plot_residuals(true: np.ndarray, pred: np.ndarray, path: str | Path, gridsize: int = 25,
                   title: str | None = None) -> Figure:
    """Fig. 3: residual of label j (row j, ``pred − true``) against the true value of label i
    (column i), 4 × 4 hexbin panels with a shared logarithmic count scale and a zero line.
    Labels in the order Teff, log g, [M/H], v sin i, left to right and top to bottom."""
    true, pred = check_same_shape(true=true, pred=pred)
    res = pred - true
    fig, axes = _new_figure(N_LABELS, N_LABELS, (13, 11), sharex="col", sharey="row")
    hexbins = []
    for j, row_name in enumerate(LABEL_NAMES):
        for i, col_name in enumerate(LABEL_NAMES):
            ax = axes[j, i]
            hexbins.append(ax.hexbin(true[:, i], res[:, j], gridsize=gridsize, mincnt=1,
                                     cmap="viridis", linewidths=0))
            ax.axhline(0.0, color="crimson", lw=0.8, ls="--")
            if j == N_LABELS - 1:
                ax.set_xlabel(_axis_label(col_name, "true "))
            if i == 0:
                ax.set_ylabel(_axis_label(row_name, "Δ"))
    vmax = max(float(np.max(np.ma.getdata(hb.get_array()), initial=1.0)) for hb in hexbins)
    norm = LogNorm(vmin=1.0, vmax=max(vmax, 2.0))
    for hb in hexbins:
        hb.set_norm(norm)
    fig.colorbar(hexbins[-1], ax=axes, label="spectra per hexagon", shrink=0.6)
    fig.suptitle(title or f"Residuals (prediction − truth), N = {len(true)}")
    return save_figure(fig, path)


def _binned_median(x: np.ndarray, y: np.ndarray, nbins: int = 15, min_count: int = 3):
    """Centres and medians of y in equal-width bins of x (bins with < min_count points dropped)."""
    if np.ptp(x) == 0:
        return np.array([x[0]]), np.array([np.median(y)])
    edges = np.linspace(x.min(), x.max(), nbins + 1)
    index = np.clip(np.digitize(x, edges) - 1, 0, nbins - 1)
    centres, medians = [], []
    for b in range(nbins):
        selected = y[index == b]
        if selected.size >= min_count:
            centres.append(0.5 * (edges[b] + edges[b + 1]))
            medians.append(np.median(selected))
    return np.array(centres), np.array(medians)


def plot_sigma(true: np.ndarray, sigma: np.ndarray, path: str | Path, layout: str = "grid",
               log_sigma: bool = False, title: str | None = None) -> Figure:
    """Fig. 4: predicted σ against the true labels.

    ``layout="grid"``: 4 × 4 panels, σ of label j (row j) against the true value of label i
    (column i), as Fig. 3. ``layout="diagonal"``: 1 × 4 panels, σ of each label against its own
    true value. Points (transparent) plus the binned median (line). σ in physical units.
    """
    true, sigma = check_same_shape(true=true, sigma=sigma)
    if layout not in ("grid", "diagonal"):
        raise ValueError(f"layout must be 'grid' or 'diagonal', got {layout!r}")
    palette = sns.color_palette("colorblind")
    alpha = _point_alpha(len(true))
    if layout == "grid":
        fig, axes = _new_figure(N_LABELS, N_LABELS, (13, 11), sharex="col", sharey="row")
        pairs = [(j, i, axes[j, i]) for j in range(N_LABELS) for i in range(N_LABELS)]
    else:
        fig, axes = _new_figure(1, N_LABELS, (14, 3.6))
        pairs = [(i, i, axes[0, i]) for i in range(N_LABELS)]
    for j, i, ax in pairs:
        ax.scatter(true[:, i], sigma[:, j], s=4, alpha=alpha, color=palette[0], linewidths=0)
        centres, medians = _binned_median(true[:, i], sigma[:, j])
        ax.plot(centres, medians, color=palette[1], lw=1.5, label="binned median")
        if log_sigma:
            ax.set_yscale("log")
        if layout == "diagonal" or j == N_LABELS - 1:
            ax.set_xlabel(_axis_label(LABEL_NAMES[i], "true "))
        if layout == "diagonal" or i == 0:
            ax.set_ylabel(_axis_label(LABEL_NAMES[j], "σ "))
    axes.flat[0].legend(loc="best", fontsize="small")
    fig.suptitle(title or f"Predicted standard deviation against true labels, N = {len(true)}")
    return save_figure(fig, path)


def plot_mae_vs_snr(table: Sequence[Mapping[str, Any]], path: str | Path,
                    title: str | None = None) -> Figure:
    """MAE against SNR, one panel per label, one line per variant (log SNR axis).
    ``table`` is the tidy output of :func:`mae_vs_snr` (several variants may be concatenated)."""
    if not table:
        raise ValueError("empty MAE-vs-SNR table")
    variants = list(dict.fromkeys(row["variant"] for row in table))
    palette = sns.color_palette("colorblind", max(len(variants), 1))
    fig, axes = _new_figure(1, N_LABELS, (14, 3.6))
    for i, name in enumerate(LABEL_NAMES):
        ax = axes[0, i]
        for colour, variant in zip(palette, variants):
            points = sorted((row["snr"], row["mae"]) for row in table
                            if row["variant"] == variant and row["label"] == name)
            if points:
                snr, value = np.array(points).T
                ax.plot(snr, value, marker="o", color=colour, label=variant)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("SNR")
        ax.set_ylabel(_axis_label(name, "MAE "))
    axes[0, 0].legend(fontsize="small")
    fig.suptitle(title or "Mean absolute error against signal-to-noise ratio")
    return save_figure(fig, path)


def plot_calibration(true: np.ndarray, mean: np.ndarray, sigma: np.ndarray, path: str | Path,
                     sigma_scale: np.ndarray | None = None,
                     quantile_map: SigmaQuantileMap | None = None,
                     k_max: float = 3.0, title: str | None = None) -> Figure:
    """Reliability plot: fraction of residuals within kσ against k, per label and pooled.

    Curves: the Gaussian ideal ``erf(k/√2)``, the model's σ as predicted, and, if given, σ
    rescaled by ``sigma_scale`` (:func:`fit_sigma_scale`) and σ recalibrated by ``quantile_map``
    (:func:`fit_sigma_quantile_map`). Fit the recalibrations on a validation set and pass the
    **test** set here. Dotted lines mark k = 1, 2.
    """
    z = standardized_abs_error(true, mean, sigma)
    ks = np.linspace(0.0, k_max, 121)
    ideal = 100 * gaussian_coverage(ks)
    palette = sns.color_palette("colorblind")
    fig, axes = _new_figure(1, N_LABELS + 1, (16, 3.8), sharey=True)

    def curves_for(columns: list[int]):
        z_cols = z[:, columns]
        out = {"as predicted": [np.mean(z_cols < k) for k in ks]}
        if sigma_scale is not None:
            scale = np.asarray(sigma_scale, dtype=float)[columns]
            out["σ × scale"] = [np.mean(z_cols < k * scale) for k in ks]
        if quantile_map is not None:
            out["quantile map"] = [np.mean(z_cols < quantile_map.multiplier(k)[columns]) for k in ks]
        return {name: 100 * np.asarray(curve) for name, curve in out.items()}

    panels = [([i], LABEL_TEX[n]) for i, n in enumerate(LABEL_NAMES)]
    panels.append((list(range(N_LABELS)), "all labels"))
    for ax, (columns, panel_title) in zip(axes[0], panels):
        ax.plot(ks, ideal, color="black", ls="--", lw=1.2, label="Gaussian ideal")
        for colour, (name, curve) in zip(palette, curves_for(columns).items()):
            ax.plot(ks, curve, color=colour, lw=1.5, label=name)
        for k in (1, 2):
            ax.axvline(k, color="grey", lw=0.6, ls=":")
            ax.axhline(100 * gaussian_coverage(k), color="grey", lw=0.6, ls=":")
        ax.set_title(panel_title)
        ax.set_xlabel("k")
        ax.set_xlim(0, k_max)
        ax.set_ylim(0, 100)
    axes[0, 0].set_ylabel("residuals within kσ [%]")
    axes[0, 0].legend(fontsize="small", loc="lower right")
    fig.suptitle(title or f"σ calibration, N = {len(z)}")
    return save_figure(fig, path)


def plot_gap(order_wave: np.ndarray, inputs: Mapping[str, Any], synthetic: np.ndarray,
             gaps: Mapping[str, Mapping[str, dict]], path: str | Path, row: int = 3,
             window: tuple[float, float] = (5165.0, 5190.0)) -> Figure:
    """The synthetic gap at a glance (``paper_lib.evaluation.gap``).

    Top: real spectra (``inputs``: name → model input with ``.image``, ``.mask``) and the
    noise-free synthetic image at the reference labels (``synthetic``) in ``window`` [Å] of
    order ``row``. Bottom left: RMS of real − synthetic per order, for each real spectrum and
    forward model (``gaps``: name → {model name → :func:`~.gap.measure_gap` dict}). Bottom
    right: RMS against the [M/H] of the synthetic image, best match marked.
    """
    with sns.axes_style("ticks"):
        fig = Figure(figsize=(11, 7), layout="constrained")
        top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.1])
        ax_top = top.subplots()
        ax_order, ax_mh = bottom.subplots(1, 2)
    wave = order_wave[row]
    select = (wave >= window[0]) & (wave <= window[1])
    ax_top.plot(wave[select], synthetic[row][select], color="k", lw=1.6, label="synthetic (reference labels)")
    for name, model_input in inputs.items():
        flux = np.where(model_input.mask[row], model_input.image[row], np.nan)
        ax_top.plot(wave[select], flux[select], lw=0.9, label=name)
    ax_top.set(xlabel="wavelength [Å, air, rest frame]", ylabel="normalised flux",
               title=f"order {row}: real solar spectra against our synthetic Sun")
    ax_top.legend(fontsize=8, loc="lower center")
    for name, per_model in gaps.items():
        for model, gap in per_model.items():
            ax_order.plot(np.arange(len(gap["rms_per_order"])), gap["rms_per_order"], "o-",
                          label=f"{name}, {model} (RMS {gap['rms']:.4f})")
            scan = gap["mh_scan"]
            ax_mh.plot(scan["mh"], scan["rms"], label=f"{name}, {model}")
            ax_mh.axvline(gap["best_mh"], ls=":", color=ax_mh.lines[-1].get_color())
    ax_order.set(xlabel="order (0 = bluest)", ylabel="RMS real − synthetic")
    ax_order.legend(fontsize=7)
    ax_mh.axvline(0.0, color="k", lw=0.8)
    ax_mh.set(xlabel="[M/H] of the synthetic image [dex] (Teff, log g, v sin i fixed)",
              ylabel="RMS real − synthetic", title="best-matching [M/H] (dotted)")
    return save_figure(fig, path)


SOLAR_MODEL_WINDOWS = ((5219.0, 5223.0), (5384.0, 5388.0))  # Å: weak lines, no CCD gap


def plot_solar_models(inputs: Mapping[str, Any], images: Mapping[str, np.ndarray], lines,
                      path: str | Path, windows=SOLAR_MODEL_WINDOWS) -> Figure:
    """Real solar spectra (``inputs``: name → model input with ``.order_wave``, ``.image``,
    ``.mask``) against noise-free synthetic Suns from several model atmospheres (``images``:
    name → (8, 4096)): the spectra in wavelength ``windows`` [Å] (the first order holding each
    whole), and, for the first real spectrum, log(EW_real / EW_synthetic) of the isolated
    ``lines`` (:func:`~.gap.isolated_line_ews`) against the synthetic EW, with running medians."""
    from .gap import isolated_line_ews, usable_lines

    first_name, first = next(iter(inputs.items()))
    wave = first.order_wave
    fig, axes = _new_figure(1, len(windows) + 1, (4.2 * (len(windows) + 1), 3.6))
    axes = np.ravel(axes)
    for ax, (lo, hi) in zip(axes, windows):
        row = next((k for k in range(len(wave)) if wave[k, 0] <= lo and hi <= wave[k, -1]), None)
        if row is None:
            raise ValueError(f"window {lo}–{hi} Å lies in no order")
        select = (wave[row] >= lo) & (wave[row] <= hi)
        for c, (name, model_input) in enumerate(inputs.items()):
            flux = np.where(model_input.mask[row], model_input.image[row], np.nan)
            ax.plot(wave[row][select], flux[select], color=("k", "0.55")[c % 2], lw=1.4,
                    label=f"real: {name}")
        for c, (name, image) in enumerate(images.items()):
            ax.plot(wave[row][select], image[row][select], color=f"C{c}", lw=1.0, ls="--",
                    label=name)
        ax.set(xlabel="wavelength [Å, air, rest frame]", ylabel="normalised flux",
               title=f"{lo:.0f}–{hi:.0f} Å (order {row})")
    axes[0].legend(fontsize=7, loc="lower left")
    ax = axes[-1]
    for c, (name, image) in enumerate(images.items()):
        rows = usable_lines(isolated_line_ews(first, np.where(first.mask, image, 1.0), lines))
        real, synthetic = np.array([row[1:] for row in rows]).T
        ratio = np.log10(real / synthetic)
        ax.plot(synthetic, ratio, ".", color=f"C{c}", alpha=0.35, ms=4)
        centres, medians = _binned_median(np.log10(synthetic), ratio, nbins=6)
        ax.plot(10 ** centres, medians, "-o", color=f"C{c}", lw=1.6, ms=3,
                label=f"{name} (median {np.median(ratio):+.3f})")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set(xscale="log", ylim=(-0.4, 0.4), xlabel="EW in the synthetic Sun [mÅ]",  # blends beyond
           ylabel="log EW_real / EW_synthetic", title=f"isolated VALD3 lines, {first_name}")
    ax.legend(fontsize=7)
    fig.suptitle("The real Sun against synthetic Suns from 1D and ⟨3D⟩ atmospheres (< 0: ours too strong)")
    return save_figure(fig, path)


def plot_gap_attribution(centres: np.ndarray, sums: np.ndarray, shift: np.ndarray,
                         valley: Sequence[Mapping[str, float]], points: Mapping[str, Sequence[float]],
                         path: str | Path, title: str = "") -> Figure:
    """Where the synthetic gap moves a network (``paper_lib.evaluation.attribution``) and the
    valley of a classical fit (:func:`~.gap.label_scan`).

    Three panels: the shares of Teff, log g and [M/H] per wavelength bin (``centres`` Å, ``sums``
    (4, m) from :func:`~.attribution.binned_by_wavelength`; ``shift`` (4,) their totals). Fourth:
    the valley in the (Teff, [M/H]) plane, its best log g written at each point and its RMS as
    colour, with ``points`` (name → labels (4,)) such as the reference and networks' answers.
    """
    fig, axes = _new_figure(2, 2, (12, 7))
    for ax, k in zip(axes.ravel()[:3], range(3)):
        name = LABEL_NAMES[k]
        colours = np.where(sums[k] < 0, "tab:blue", "tab:red")
        ax.bar(centres, sums[k], width=np.diff(centres[:2])[0] if len(centres) > 1 else 1.0,
               color=colours)
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set(xlabel="wavelength [Å]", ylabel=f"share of the shift [{LABEL_UNIT[name]}]",
               title=f"{LABEL_TEX[name]}: shift {shift[k]:+.{2 if k else 0}f} {LABEL_UNIT[name]}")
    ax = axes[1, 1]
    teff = np.array([row["teff"] for row in valley])
    mh = np.array([row["mh"] for row in valley])
    rms = np.array([row["rms"] for row in valley])
    ax.plot(teff, mh, color="0.6", lw=1, zorder=1)
    dots = ax.scatter(teff, mh, c=rms, cmap="viridis", zorder=2, label="least-squares valley")
    for row in valley:
        ax.annotate(f"{row['logg']:.1f}", (row["teff"], row["mh"]), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=7)
    fig.colorbar(dots, ax=ax, label="RMS real − synthetic")
    markers = iter("*sDo^vP")
    for name, labels in points.items():
        ax.plot(labels[0], labels[2], next(markers, "o"), ms=9, ls="none",
                label=f"{name} (log g {labels[1]:.2f})")
    ax.set(xlabel=_axis_label("teff"), ylabel=_axis_label("mh"),
           title="best [M/H] (and log g, numbers) at each Teff")
    ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_learning_curves(curves: Sequence[Mapping[str, Any]], path: str | Path,
                         targets: Mapping[str, Sequence[float]] | None = None) -> Figure:
    """Validation MAE of each label against spectra seen (top row) and training minutes
    (bottom row), one line per ``curves`` entry (:func:`paper_lib.experiments.learning_curve`);
    ``targets`` (variant → 4 MAEs) are drawn as dotted lines of the same colour."""
    fig, axes = _new_figure(2, N_LABELS, (3.2 * N_LABELS, 5.6))
    for i, curve in enumerate(curves):
        mae = np.asarray(curve["val_mae"])
        for j, name in enumerate(LABEL_NAMES):
            for row, x in enumerate((curve["spectra"], curve["minutes"])):
                axes[row, j].plot(x, mae[:, j], color=f"C{i}", lw=1.2,
                                  label=curve["variant"] if j == 0 and row == 0 else None)
                if targets and curve["variant"] in targets:
                    axes[row, j].axhline(targets[curve["variant"]][j], color=f"C{i}", ls=":", lw=1)
    for j, name in enumerate(LABEL_NAMES):
        axes[0, j].set(xscale="log", yscale="log", xlabel="spectra seen",
                       ylabel=_axis_label(name, "validation MAE of "))
        axes[1, j].set(yscale="log", xlabel="training time [min]",
                       ylabel=_axis_label(name, "validation MAE of "))
        axes[0, j].xaxis.set_minor_formatter(NullFormatter())
        axes[1, j].xaxis.set_major_locator(MaxNLocator(4))
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("learning curves (dotted: 1.5× the paper's MAE)")
    return save_figure(fig, path)


def plot_systematics(model, path: str | Path, logg_values=(4.5, 2.0), mh: float = 0.0,
                     teff=np.linspace(3750.0, 9000.0, 106), title: str = "") -> Figure:
    """Systematic σ of a :class:`~.systematics.SystematicModel` against Teff, one panel per
    label: the total (black) and each physics variant's part (colours), for dwarfs (solid) and
    giants (dashed) at ``logg_values`` and [M/H] = ``mh``; the variants' nodes as ticks."""
    from .systematics import SystematicModel

    fig, axes = _new_figure(1, N_LABELS, (3.4 * N_LABELS, 3.4))
    axes = np.ravel(axes)
    for style, logg in zip(("-", "--"), logg_values):
        points = np.column_stack([teff, np.full(teff.size, logg), np.full(teff.size, mh)])
        for c, (variant, shift) in enumerate(model.shifts.items()):
            part = SystematicModel(model.nodes, {variant: shift}, model.scales).sigma(points)
            for j in range(N_LABELS):
                axes[j].plot(teff, part[:, j], ls=style, color=f"C{c}", lw=1,
                             label=variant if j == 0 and style == "-" else None)
        total = model.sigma(points)
        for j in range(N_LABELS):
            axes[j].plot(teff, total[:, j], ls=style, color="k", lw=1.8,
                         label=f"total, log g {logg:g}" if j == 0 else None)
    for j, name in enumerate(LABEL_NAMES):
        axes[j].plot(np.unique(model.nodes[:, 0]), np.zeros(np.unique(model.nodes[:, 0]).size),
                     "|", color="0.5", ms=8)
        axes[j].set(xlabel=_axis_label("teff"), ylabel=f"σ_sys of {LABEL_TEX[name]} "
                                                       f"[{LABEL_UNIT[name]}]")
        axes[j].set_ylim(bottom=0)
    axes[0].legend(fontsize=7)
    fig.suptitle(title or f"Systematic σ from physics variants ([M/H] = {mh:+.1f}; dashed: giants)")
    return save_figure(fig, path)


def plot_sigma_calibration(record: Mapping[str, Any], path: str | Path, title: str = "") -> Figure:
    """A σ calibration against SNR (:mod:`.sigma_calibration`): left, the factor per label
    against the estimated SNR; right, the test coverage within ±1σ and ±2σ (all labels
    pooled) raw (dashed) and calibrated (solid) against the nominal SNR, with the Gaussian
    values dotted."""
    rows = sorted(record["rows"], key=lambda r: r["snr"])
    fig, axes = _new_figure(1, 2, (9.5, 3.6))
    left, right = np.ravel(axes)
    estimated = [r["estimated_snr"] for r in rows]
    for j, name in enumerate(LABEL_NAMES):
        left.plot(estimated, [r["scale"][name] for r in rows], "o-", color=f"C{j}",
                  label=LABEL_TEX[name])
    left.axhline(1.0, color="0.5", lw=0.8)
    left.set(xscale="log", xlabel="estimated SNR", ylabel="σ factor s(SNR)")
    left.legend(fontsize=8)
    snr = [r["snr"] for r in rows]
    for k, color in (("1", "C0"), ("2", "C1")):
        right.plot(snr, [r["test_coverage_raw"][k]["overall"] for r in rows], "o--", color=color,
                   label=f"±{k}σ raw")
        right.plot(snr, [r["test_coverage_calibrated"][k]["overall"] for r in rows], "o-",
                   color=color, label=f"±{k}σ calibrated")
        right.axhline(100 * gaussian_coverage(float(k)), color=color, ls=":", lw=1)
    right.set(xscale="log", xlabel="SNR of the test set", ylabel="test errors inside [%]",
              ylim=(0, 102))
    right.legend(fontsize=8)
    fig.suptitle(title or f"{record['variant']}: σ calibrated against SNR")
    return save_figure(fig, path)

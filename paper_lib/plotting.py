"""Figures of the data and training stages (results figures: :mod:`paper_lib.evaluation.figures`).

Every function draws one figure, saves it with :func:`save_figure` when ``path`` is given and
returns the matplotlib Figure, so notebooks show and store the same picture.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .instrument import physical_order  # noqa: E402

MG_B = {"Mg b1": 5183.604, "Mg b2": 5172.684, "Mg b4": 5167.321}  # air Å
FE_LINES = {"Fe I 5269.5": 5269.537, "Fe I 5328.0": 5328.039, "Fe I 5227.2": 5227.189,
            "Fe I 5171.6": 5171.596}


FIGURE_DPI = 150  # every PNG the project writes


def save_figure(fig, path=None):
    """Save ``fig`` as a PNG at ``path`` (parents created; nothing when ``path`` is None) and
    return it: ``FIGURE_DPI``, tight bounding box, no software stamp (same bytes each run)."""
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=FIGURE_DPI, bbox_inches="tight", metadata={"Software": None})
    return fig


def plot_grid_coverage(grid, path=None):
    """Which Table-1 nodes exist: one Teff–log g panel per [M/H] (filled = present)."""
    fig, axes = plt.subplots(1, len(grid.axes[2]), figsize=(2.3 * len(grid.axes[2]), 3.2),
                             sharey=True)
    axes = np.atleast_1d(axes)
    teff, logg = np.meshgrid(grid.axes[0], grid.axes[1], indexing="ij")
    for k, (ax, mh) in enumerate(zip(axes, grid.axes[2])):
        present = grid.row_of[:, :, k] >= 0
        ax.scatter(teff[~present], logg[~present], s=8, facecolors="none", edgecolors="0.6",
                   linewidths=0.6, label="absent")
        ax.scatter(teff[present], logg[present], s=8, c="C0", label="present")
        ax.set_title(f"[M/H] = {mh:+.1f}", fontsize=9)
        ax.set_xlabel("Teff [K]")
        ax.invert_xaxis()
    axes[0].invert_yaxis()
    axes[0].set_ylabel("log g [dex]")
    axes[-1].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"grid coverage: {len(grid.labels)} of {grid.row_of.size} Table-1 nodes",
                 fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_spectra_window(wave, fluxes, labels, window=(5160.0, 5190.0), path=None, lines=MG_B):
    """Normalised spectra of several stars in a wavelength window, offset for clarity."""
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.9 * len(fluxes)))
    inside = (wave >= window[0]) & (wave <= window[1])
    for i, (flux, label) in enumerate(zip(fluxes, labels)):
        ax.plot(wave[inside], np.asarray(flux)[inside] + 0.8 * i, lw=0.7, color=f"C{i}")
        ax.text(window[1] + 0.3, 1.0 + 0.8 * i,
                f"{label[0]:.0f} K, {label[1]:.1f}, {label[2]:+.1f}", fontsize=8, va="center")
    for name, value in (lines or {}).items():
        ax.axvline(value, color="0.7", lw=0.6, ls=":")
        ax.text(value, ax.get_ylim()[1], name, fontsize=7, rotation=90, va="top", ha="right")
    ax.set_xlabel("air wavelength [Å]")
    ax.set_ylabel("normalised flux + offset")
    ax.set_xlim(window[0], window[1] + 6)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_figure1(wave, flux, image, order_wave, path=None, title=""):
    """The paper's Figure 1: a 1D model spectrum, the same cut into orders, and the image."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), gridspec_kw={"width_ratios": [1, 1, 1.1]})
    axes[0].plot(wave, flux, lw=0.3, color="k")
    axes[0].set(xlabel="air wavelength [Å]", ylabel="normalised flux", title="1D model spectrum")
    for row in range(image.shape[0]):
        axes[1].plot(order_wave[row], image[row] + 0.0, lw=0.3, color=f"C{row % 10}")
    axes[1].set(xlabel="air wavelength [Å]", ylabel="flux (with slant)",
                title="the same in 8 HARPS-N orders")
    shown = axes[2].imshow(image, aspect="auto", cmap="magma", interpolation="nearest",
                           extent=(0, image.shape[1], image.shape[0] - 0.5, -0.5))
    axes[2].set(xlabel="pixel", ylabel="order row (121 … 114)", title="8 × 4096 image")
    fig.colorbar(shown, ax=axes[2], fraction=0.05)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_image_rows(order_wave, images, names, window, path=None, lines=MG_B, offset=0.6):
    """Several 8×4096 images, shown in one wavelength window (the orders that cover it)."""
    fig, ax = plt.subplots(figsize=(8, 1.4 + 0.9 * len(images)))
    for i, (image, name) in enumerate(zip(images, names)):
        for row in range(image.shape[0]):
            inside = (order_wave[row] >= window[0]) & (order_wave[row] <= window[1])
            if inside.any():
                ax.plot(order_wave[row][inside], image[row][inside] + offset * i, lw=0.6,
                        color=f"C{i}", label=name if row == np.argmax(
                            [((w >= window[0]) & (w <= window[1])).any() for w in order_wave]) else None)
    for label, value in (lines or {}).items():
        ax.axvline(value, color="0.7", lw=0.6, ls=":")
    ax.set(xlabel="air wavelength [Å]", ylabel="normalised flux + offset", xlim=window)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_loss_curves(histories: dict, path=None, title="training"):
    """Training and validation loss per epoch for several runs ({name: history dict})."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, history) in enumerate(histories.items()):
        epochs = np.arange(1, len(history["train_loss"]) + 1)
        ax.plot(epochs, history["train_loss"], color=f"C{i}", lw=1, label=f"{name} (train)")
        if history.get("val_loss"):
            ax.plot(epochs, history["val_loss"], color=f"C{i}", lw=1, ls="--", label=f"{name} (val)")
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_attention_maps(image, maps, order_wave, path=None, lines=None, title=""):
    """The paper's Figure 5: the input image and the attention maps α upsampled to it.

    ``image`` (8, 4096); ``maps`` list of (8, 4096) arrays (each sums to one); ``lines``
    {name: air Å} marked on every panel at their pixel positions.
    """
    lines = {**MG_B, **FE_LINES} if lines is None else lines
    panels = [image, *maps]
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 1.6 * len(panels)), sharex=True)
    names = ["input (normalised flux)"] + [f"attention map α{i + 1}" for i in range(len(maps))]
    for ax, panel, name in zip(axes, panels, names):
        shown = ax.imshow(panel, aspect="auto", interpolation="nearest",
                          cmap="gray" if name.startswith("input") else "viridis",
                          extent=(0, panel.shape[1], panel.shape[0] - 0.5, -0.5))
        ax.set_ylabel("order row", fontsize=8)
        ax.set_title(name, fontsize=9, loc="left")
        fig.colorbar(shown, ax=ax, fraction=0.02, pad=0.01)
        for label, wave in lines.items():
            for row in range(order_wave.shape[0]):
                if order_wave[row, 0] <= wave <= order_wave[row, -1]:
                    px = np.interp(wave, order_wave[row], np.arange(order_wave.shape[1]))
                    ax.plot(px, row, marker="v", color="C3", ms=4, mec="w", mew=0.4)
    axes[0].set_title(f"input (normalised flux); ▼ {', '.join(lines)}", fontsize=8, loc="left")
    axes[-1].set_xlabel("pixel")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def attention_near_lines(maps, order_wave, lines, half_width_A: float = 0.5) -> list[dict]:
    """How much attention falls within ±``half_width_A`` of the given lines, per map.

    Returns, per map, the attention mass near the lines and the mass a uniform map would put
    there (their ratio > 1 means the map prefers those lines).
    """
    near = np.zeros(order_wave.shape, dtype=bool)
    for wave in lines.values():
        near |= np.abs(order_wave - wave) <= half_width_A
    out = []
    for alpha in maps:
        alpha = np.asarray(alpha, dtype=np.float64)
        mass = float(alpha[near].sum() / alpha.sum())
        uniform = float(near.mean())
        out.append({"mass_near_lines": mass, "uniform_mass": uniform,
                    "enhancement": mass / uniform if uniform > 0 else float("nan")})
    return out


def plot_sun_overlay(order_wave, real, mask, synthetic, rows, path=None, title=""):
    """Real (normalised) spectrum and the synthetic spectrum at the predicted labels, per order."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(12, 2.6 * len(rows)))
    for ax, row in zip(np.atleast_1d(axes), rows):
        wave = order_wave[row]
        ax.plot(wave, np.where(mask[row], real[row], np.nan), lw=0.5, color="k", label="observed")
        ax.plot(wave, synthetic[row], lw=0.5, color="C3", alpha=0.8,
                label="synthetic at the predicted labels")
        if (~mask[row]).any():
            ax.fill_between(wave, 0, 1.1, where=~mask[row], color="0.85", label="no data (filled)")
        ax.set(xlim=(wave[0], wave[-1]), ylim=(0, 1.15), ylabel="normalised flux")
        ax.set_title(f"order {physical_order(row)} ({wave[0]:.0f}–{wave[-1]:.0f} Å)", fontsize=9,
                     loc="left")
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="lower left", ncols=3)
    np.atleast_1d(axes)[-1].set_xlabel("air wavelength [Å]")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)

"""The synthetic gap: how far a real spectrum lies from our synthetic image at its known labels.

Both images live in the networks' input space (8 × 4096, continuum-normalised, rest frame): the
real one from :func:`paper_lib.observed.model_input.to_model_input`, the synthetic one
noise-free from the training generator (grid interpolation, v_micro of the grid, rotation,
macroturbulence, instrument) and normalised by the same continuum fit. Only pixels with real
data count (the HARPS CCD gap is left out). :func:`gap_metrics` gives

* ``rms`` and ``bias`` (real − synthetic), overall and per order;
* ``depth_ratio`` = Σ(1 − real) / Σ(1 − synthetic): below 1 when our lines are too deep;
* ``missing_line_fraction``: pixels where the real spectrum has a line (deeper than
  ``LINE_DEPTH``) and the synthetic one none (shallower than ``NO_LINE_DEPTH``);

and :func:`mh_scan` the [M/H] at which the synthetic image best matches the real one (least
RMS) with Teff, log g and v sin i fixed at the reference: the offset the gap alone would push a
perfect network to. :func:`label_scan` frees all four labels — a classical least-squares fit
over a grid of labels — and reports, for every Teff, the best log g, [M/H] and v sin i (the
valley of the RMS): where the valley is flat, the gap can move a fit, or a network, along it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..labels import LABEL_NAMES

LINE_DEPTH = 0.05  # a real line: deeper than this (1 − flux)
NO_LINE_DEPTH = 0.02  # no synthetic line: shallower than this
MH_STEP = 0.02  # dex, step of the [M/H] scan
RENDER_CHUNK = 64  # synthetic images rendered at a time by label_scan
# label_scan around the Sun: (first, last, step) of Teff [K], log g [dex], [M/H] [dex]; v sin i values
SOLAR_SCAN = {"teff": (5500.0, 6000.0, 50.0), "logg": (4.0, 4.5, 0.1), "mh": (-0.4, 0.1, 0.05),
              "vsini": (1.5, 2.5)}


@dataclass
class GapMeasurement:
    """Real − synthetic statistics over the pixels with real data (see the module docstring)."""

    rms: float
    bias: float
    depth_ratio: float
    missing_line_fraction: float
    rms_per_order: list
    bias_per_order: list
    n_pixels: int

    def to_dict(self) -> dict:
        return asdict(self)


def _check_images(real, synthetic, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    real, synthetic = np.asarray(real, dtype=np.float64), np.asarray(synthetic, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if real.shape != synthetic.shape or real.shape != mask.shape or real.ndim != 2:
        raise ValueError(f"real {real.shape}, synthetic {synthetic.shape} and mask {mask.shape} "
                         "must be the same (n_orders, n_pixels) image")
    if not mask.any():
        raise ValueError("the mask selects no pixel: no real data to compare")
    if not (np.all(np.isfinite(real[mask])) and np.all(np.isfinite(synthetic[mask]))):
        raise ValueError("real or synthetic image holds NaN/inf at unmasked pixels")
    return real, synthetic, mask


def gap_metrics(real, synthetic, mask) -> GapMeasurement:
    """Compare a real and a synthetic image (n_orders, n_pixels) where ``mask`` is True."""
    real, synthetic, mask = _check_images(real, synthetic, mask)
    diff = np.where(mask, real - synthetic, 0.0)
    per_order_n = np.maximum(mask.sum(axis=1), 1)
    real_depth = np.where(mask, 1.0 - real, 0.0)
    synthetic_depth = np.where(mask, 1.0 - synthetic, 0.0)
    missing = mask & (real_depth > LINE_DEPTH) & (synthetic_depth < NO_LINE_DEPTH)
    n = int(mask.sum())
    return GapMeasurement(
        rms=float(np.sqrt((diff ** 2).sum() / n)),
        bias=float(diff.sum() / n),
        depth_ratio=float(real_depth.sum() / synthetic_depth.sum()),
        missing_line_fraction=float(missing.sum() / n),
        rms_per_order=np.sqrt((diff ** 2).sum(axis=1) / per_order_n).round(5).tolist(),
        bias_per_order=(diff.sum(axis=1) / per_order_n).round(5).tolist(),
        n_pixels=n,
    )


def mh_values(lo: float, hi: float, step: float = MH_STEP) -> np.ndarray:
    """[M/H] values [dex] from ``lo`` to ``hi`` (inclusive) in steps of ``step``."""
    if not hi > lo:
        raise ValueError(f"the [M/H] scan needs lo < hi, got {lo}, {hi}")
    return np.round(np.arange(lo, hi + step / 2, step), 6)


def mh_scan(real, mask, render, labels, values) -> tuple[np.ndarray, np.ndarray, float]:
    """RMS of real − synthetic against [M/H], the other labels fixed at ``labels``.

    ``render(labels (n, 4)) → (n, n_orders, n_pixels)`` normalised noise-free images;
    ``labels`` (4,) physical; ``values`` the [M/H] grid [dex]. Returns
    ``(values, rms, best [M/H])``.
    """
    rows = np.repeat(np.asarray(labels, dtype=np.float64)[None], len(values), axis=0)
    rows[:, 2] = values
    images = np.asarray(render(rows), dtype=np.float64)
    rms = np.array([gap_metrics(real, image, mask).rms for image in images])
    return np.asarray(values), rms, float(values[int(np.argmin(rms))])


def measure_gap(real_input, render, labels, values) -> dict:
    """Gap metrics at ``labels`` and the best-matching [M/H] of one real model input.

    ``real_input`` has ``.image`` and ``.mask`` (an :class:`~paper_lib.observed.spectrum.
    ModelInput`); ``render`` as in :func:`mh_scan`. Returns a JSON-ready dict.
    """
    synthetic = np.asarray(render(np.asarray(labels, dtype=np.float64)[None]))[0]
    metrics = gap_metrics(real_input.image, synthetic, real_input.mask)
    grid_mh, rms, best = mh_scan(real_input.image, real_input.mask, render, labels, values)
    return {**metrics.to_dict(), "best_mh": best,
            "mh_scan": {"mh": grid_mh.tolist(), "rms": rms.round(6).tolist()},
            "labels": [float(v) for v in labels]}


def solar_scan_axes(bounds) -> dict:
    """The axes of :data:`SOLAR_SCAN`, cut to the grid's ``bounds`` ((lo, hi) of Teff, log g,
    [M/H], as ``Grid.bounds`` gives them)."""
    axes = {}
    for name, (lo, hi) in zip(LABEL_NAMES[:3], bounds):
        first, last, step = SOLAR_SCAN[name]
        values = np.round(np.arange(first, last + step / 2, step), 6)
        axes[name] = values[(values >= lo - 1e-9) & (values <= hi + 1e-9)]
    axes["vsini"] = np.asarray(SOLAR_SCAN["vsini"], dtype=np.float64)
    return axes


def label_scan(real, mask, render, axes: dict) -> dict:
    """RMS of real − synthetic over every combination of the label values in ``axes``.

    ``axes``: {"teff": values [K], "logg": [dex], "mh": [dex], "vsini": [km/s]} (all four);
    ``render`` as in :func:`mh_scan`, called in chunks of :data:`RENDER_CHUNK` images. Returns a
    JSON-ready dict: ``best`` labels (4,) and their ``best_rms``, and the ``valley``: for each
    Teff, the best ``logg``, ``mh``, ``vsini`` and ``rms``.
    """
    missing = [name for name in LABEL_NAMES if name not in axes or len(axes[name]) == 0]
    if missing:
        raise ValueError(f"label_scan needs values for every label; missing or empty: {missing}")
    values = [np.asarray(axes[name], dtype=np.float64) for name in LABEL_NAMES]
    rows = np.stack(np.meshgrid(*values, indexing="ij"), axis=-1).reshape(-1, len(values))
    rms = np.concatenate([
        [gap_metrics(real, image, mask).rms for image in np.asarray(render(rows[i:i + RENDER_CHUNK]))]
        for i in range(0, len(rows), RENDER_CHUNK)])
    cube = rms.reshape([len(v) for v in values])
    best = rows[int(np.argmin(rms))]
    valley = []
    for i, teff in enumerate(values[0]):
        j, k, m = np.unravel_index(int(np.argmin(cube[i])), cube[i].shape)
        valley.append({"teff": float(teff), "logg": float(values[1][j]), "mh": float(values[2][k]),
                       "vsini": float(values[3][m]), "rms": float(cube[i][j, k, m])})
    return {"best": best.tolist(), "best_rms": float(rms.min()), "valley": valley,
            "axes": {name: v.tolist() for name, v in zip(LABEL_NAMES, values)}}


# ------------------------------------------------------------------ line strengths

ISOLATION_A = 0.25  # Å: a VALD3 line with no other within this is isolated
EW_HALF_WIDTH_A = 0.15  # Å: equivalent widths are summed over the line centre ± this
EW_CLASSES_MA = ((5, 20), (20, 50), (50, 80), (80, 150))  # mÅ, in the synthetic spectrum


def vald_solar_lines(path) -> list[tuple[tuple[int, int], float]]:
    """(species, wavelength Å) of every atomic line of a Turbospectrum list (the VALD3 solar
    master list: lines ≥ 1 % deep in the Sun)."""
    from ..synthetic.linelists import atomic_species, read_turbospectrum_blocks

    return [(atomic_species(header), float(r.split()[0]))
            for header, _, rows in read_turbospectrum_blocks(path) for r in rows]


def isolated_line_ews(model_input, synthetic, lines) -> list[tuple[tuple[int, int], float, float]]:
    """(species, EW real, EW synthetic) [mÅ] of the isolated ``lines`` (no other within
    ``ISOLATION_A``) that lie fully inside an order with real data; ``synthetic`` (8, 4096)."""
    wave = model_input.order_wave
    lines = [(s, w) for s, w in lines if wave.min() + 0.5 <= w <= wave.max() - 0.5]
    centres = np.array([w for _, w in lines])
    out = []
    for species, centre in lines:
        if np.sum(np.abs(centres - centre) < ISOLATION_A) > 1:
            continue
        inside = [k for k in range(len(wave))
                  if wave[k, 50] < centre - 0.5 < centre + 0.5 < wave[k, -50]]
        if not inside:
            continue
        row = inside[0]
        near = np.abs(wave[row] - centre) < EW_HALF_WIDTH_A
        if not model_input.mask[row, near].all():
            continue
        step = np.gradient(wave[row])[near] * 1e3
        out.append((species, float(((1 - model_input.image[row, near]) * step).sum()),
                    float(((1 - synthetic[row, near]) * step).sum())))
    return out


EW_USABLE_MA = (5, 150)  # mÅ in the synthetic spectrum: the lines the excess is measured on


def usable_lines(rows) -> list:
    """The :func:`isolated_line_ews` rows with ``EW_USABLE_MA`` in the synthetic spectrum and a
    positive real EW."""
    lo, hi = EW_USABLE_MA
    return [(s, r, y) for s, r, y in rows if lo <= y < hi and r > 0]


def line_strength_excess(rows) -> dict:
    """Median log10(EW_real / EW_synthetic) of :func:`isolated_line_ews` rows with 5–150 mÅ in
    the synthetic spectrum, per strength class and species class: {name: (count, median)},
    plus ``n`` (lines used). Negative: our lines are too strong."""
    usable = usable_lines(rows)
    classes = {f"EW {lo}-{hi} mÅ": (lambda s, y, lo=lo, hi=hi: lo <= y < hi)
               for lo, hi in EW_CLASSES_MA}
    classes.update({"Fe I": lambda s, y: s == (26, 1),
                    "other neutral atoms": lambda s, y: s[1] == 1 and s[0] != 26,
                    "ions": lambda s, y: s[1] == 2})
    out = {"n": len(usable)}
    for name, select in classes.items():
        ratio = [np.log10(r / y) for s, r, y in usable if select(s, y)]
        if ratio:
            out[name] = (len(ratio), float(np.median(ratio)))
    return out


def compare_with_real(real_input, images, lines) -> dict:
    """How each noise-free synthetic image in ``images`` ({name: (8, 4096)}) matches one real
    model input: {name: {"rms", "depth_ratio" (:func:`gap_metrics`), "n_lines" and
    "excess" ({class: median log10 EW_real/EW_synthetic}, :func:`line_strength_excess` of the
    isolated ``lines``)}}. The pixels the real input lacks are set to 1.0 in the synthetic
    image, as ``to_model_input`` fills them in the real one."""
    out = {}
    for name, image in images.items():
        synthetic = np.where(real_input.mask, image, 1.0).astype(np.float32)
        metrics = gap_metrics(real_input.image, synthetic, real_input.mask)
        excess = line_strength_excess(isolated_line_ews(real_input, synthetic, lines))
        out[name] = {"rms": metrics.rms, "depth_ratio": metrics.depth_ratio,
                     "n_lines": excess.pop("n"),
                     "excess": {k: round(median, 4) for k, (_, median) in excess.items()}}
    return out

"""Evaluation of the stellar-parameter regressors: Table 2 (MAE), Table 3 (σ coverage),
Table 4 (the Sun), Figs 3–4 (residuals and σ against the true labels), MAE against SNR and a
post-hoc σ recalibration that goes beyond the paper.

Conventions
-----------
* Every array here is in **physical units** unless a name says ``scaled``. Columns follow
  :data:`paper_lib.profiles.LABEL_NAMES`: ``teff`` [K], ``logg`` [dex], ``mh`` ([M/H], the
  paper's Z) [dex], ``vsini`` [km/s]. ``true``, ``pred``/``mean`` and ``sigma`` have shape (N, 4).
* The networks work on **scaled labels**, ``scaled = (x − min) / (max − min)`` with the
  Table-1 ranges of :data:`paper_lib.profiles.LABEL_RANGES`, and return
  ``GaussianOutput(mean (B, 4), scale_tril (B, 4, 4))``: the mean and the lower Cholesky factor
  of the covariance, both in scaled units. :func:`predict` converts them to physical units.
* Residuals are ``pred − true`` (positive: the model overestimates the label).
* "Within kσ" means ``|pred − true| < k σ`` (strict), as in the paper's Table 3.
* Published numbers of the paper live in :data:`PAPER_TABLE2`, :data:`PAPER_TABLE3` and
  :data:`PAPER_TABLE4`. They are used **only** for clearly labelled comparison blocks of the
  tables; nothing in this module mixes them into our results.

Figures are built on :class:`matplotlib.figure.Figure` (no pyplot state, any backend) and
returned after being saved.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import seaborn as sns
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter
from scipy import special

from paper_lib.profiles import LABEL_NAMES, LABEL_RANGES, LABEL_UNITS

N_LABELS = len(LABEL_NAMES)

LABEL_TEX = {
    "teff": r"$T_\mathrm{eff}$",
    "logg": r"$\log g$",
    "mh": "[M/H]",
    "vsini": r"$v \sin i$",
}
LABEL_PLAIN = {"teff": "Teff", "logg": "log g", "mh": "[M/H]", "vsini": "v sin i"}
LABEL_UNIT = dict(zip(LABEL_NAMES, LABEL_UNITS))

# Decimals used in the Markdown tables (those of the paper's Table 2).
TABLE_DECIMALS = {"teff": 1, "logg": 3, "mh": 3, "vsini": 2}

THIS_WORK = "this work"
PAPER_SOURCE = "paper (Hüttel & Clemmensen 2021)"
THEORY_SOURCE = "theory (Gaussian)"


# ---------------------------------------------------------------------------------------------
# Published numbers of the paper (transcribed from its Tables 2–4; comparison only)
# ---------------------------------------------------------------------------------------------

def _paper_mae(model, covariance, snr, teff, logg, mh, vsini):
    return {"model": model, "covariance": covariance, "snr": snr,
            "teff": teff, "logg": logg, "mh": mh, "vsini": vsini}


#: Table 2 of Hüttel & Clemmensen (2021): MAE in physical units (Teff [K], log g [dex],
#: Z = [M/H] [dex], v sin i [km/s]). Keys are our variant names where a row has one;
#: ``cannon2`` and ``starnet`` are the literature rows the paper quotes (no v sin i: ``None``).
#: The ``*_limited`` rows are the paper's † rows (Teff 4000–6000 K, SNR 100).
PAPER_TABLE2: dict[str, dict[str, Any]] = {
    "resnet_diagonal": _paper_mae("Residual-network", "Diagonal", 20, 76.9, 0.138, 0.055, 0.71),
    "attention_diagonal": _paper_mae("Attention-network", "Diagonal", 20, 73.0, 0.135, 0.053, 0.69),
    "resnet_diagonal_dae": _paper_mae("DAE Residual-network", "Diagonal", 20, 72.3, 0.133, 0.052, 0.67),
    "attention_diagonal_dae": _paper_mae("DAE Attention-network", "Diagonal", 20, 70.9, 0.134, 0.049, 0.57),
    "resnet_full": _paper_mae("Residual-network", "Full", 20, 83.8, 0.143, 0.060, 0.75),
    "attention_full": _paper_mae("Attention-network", "Full", 20, 79.2, 0.146, 0.055, 0.72),
    "resnet_full_dae": _paper_mae("DAE Residual-network", "Full", 20, 89.1, 0.150, 0.060, 0.72),
    "attention_full_dae": _paper_mae("DAE Attention-network", "Full", 20, 72.9, 0.137, 0.049, 0.58),
    "cannon2": _paper_mae("Cannon2 [3]", "-", 200, 46.8, 0.066, 0.036, None),
    "starnet": _paper_mae("StarNet [6]", "-", 200, 31.2, 0.053, 0.025, None),
    "resnet_diagonal_limited": _paper_mae("Residual-network †", "Diagonal", 100, 19.5, 0.053, 0.026, 0.30),
    "attention_diagonal_limited": _paper_mae("Attention-network †", "Diagonal", 100, 12.9, 0.045, 0.013, 0.15),
}

#: Table 3 of the paper: percentage of residuals within 1σ and 2σ (keys 1 and 2, in **percent**),
#: models trained at SNR ≈ 20. The "Gaussian" row is printed in the paper as 68.2 % / 95.1 %;
#: the exact values are 68.27 % / 95.45 % (:data:`GAUSSIAN_COVERAGE`). The paper does not say
#: which covariance/DAE variant the two model rows are.
PAPER_TABLE3: dict[str, dict[Any, Any]] = {
    "gaussian": {"model": "Gaussian", 1: 68.2, 2: 95.1},
    "resnet": {"model": "Residual-network", 1: 79.9, 2: 98.4},
    "attention": {"model": "Attention-network", 1: 65.5, 2: 93.4},
}

#: Table 4 of the paper: the HARPS-N Sun. ``reference`` holds the adopted solar values (plain
#: floats); the model rows hold ``(mean, σ)`` pairs in physical units. Models trained at SNR ≈ 100.
PAPER_TABLE4: dict[str, dict[str, Any]] = {
    "reference": {"model": "HARPS-N", "teff": 5750.0, "logg": 4.44, "mh": 0.0, "vsini": 2.0},
    "resnet": {"model": "Residual-net", "teff": (5791.6, 140.1), "logg": (4.72, 0.28),
               "mh": (0.035, 0.15), "vsini": (0.762, 1.76)},
    "attention": {"model": "Attention-net", "teff": (5325.2, 10.0), "logg": (2.15, 0.04),
                  "mh": (-0.576, 0.01), "vsini": (5.226, 0.40)},
}


# ---------------------------------------------------------------------------------------------
# Gaussian reference values
# ---------------------------------------------------------------------------------------------

def gaussian_coverage(k: float | np.ndarray) -> float | np.ndarray:
    """Probability that a Gaussian variable lies within ``k`` standard deviations of its mean,
    ``erf(k / √2)`` (0.6827 for k = 1, 0.9545 for k = 2). A fraction, not a percentage."""
    value = special.erf(np.asarray(k, dtype=float) / math.sqrt(2.0))
    return float(value) if np.ndim(value) == 0 else value


#: Exact Gaussian coverage (fractions) for k = 1, 2, 3.
GAUSSIAN_COVERAGE = {k: gaussian_coverage(k) for k in (1, 2, 3)}


# ---------------------------------------------------------------------------------------------
# Scaled ↔ physical labels and prediction
# ---------------------------------------------------------------------------------------------

def label_offset_span() -> tuple[np.ndarray, np.ndarray]:
    """(min, max − min) of each label from Table 1, shape (4,) each, physical units."""
    low = np.array([LABEL_RANGES[name][0] for name in LABEL_NAMES], dtype=float)
    high = np.array([LABEL_RANGES[name][1] for name in LABEL_NAMES], dtype=float)
    return low, high - low


def to_physical(mean_scaled: np.ndarray, scale_tril_scaled: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert a Gaussian in scaled labels to physical units.

    ``mean = min + mean_scaled · span`` and, with ``D = diag(span)``, the Cholesky factor
    becomes ``D L`` so the covariance is ``D L Lᵀ D``. σ is the square root of its diagonal
    (for a full covariance this is *not* the diagonal of L).

    Returns ``(mean (N, 4), sigma (N, 4), cov (N, 4, 4))`` in K, dex, dex, km/s
    (cov in the products of those units).
    """
    mean_scaled = np.asarray(mean_scaled, dtype=float)
    tril = np.asarray(scale_tril_scaled, dtype=float)
    if mean_scaled.ndim != 2 or mean_scaled.shape[1] != N_LABELS:
        raise ValueError(f"mean must have shape (N, {N_LABELS}), got {mean_scaled.shape}")
    if tril.shape != mean_scaled.shape + (N_LABELS,):
        raise ValueError(f"scale_tril must have shape (N, {N_LABELS}, {N_LABELS}), got {tril.shape}")
    low, span = label_offset_span()
    mean = low + mean_scaled * span
    tril_phys = tril * span[:, None]  # row j of L times span_j: D @ L
    cov = tril_phys @ np.swapaxes(tril_phys, -1, -2)
    sigma = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    return mean, sigma, cov


def _unpack_gaussian(output):
    """(mean, scale_tril) from a ``GaussianOutput``-like object or a 2-tuple."""
    if hasattr(output, "mean") and hasattr(output, "scale_tril"):
        return output.mean, output.scale_tril
    if isinstance(output, (tuple, list)) and len(output) == 2:
        return output[0], output[1]
    raise TypeError("the model must return GaussianOutput(mean, scale_tril) or a (mean, scale_tril) "
                    f"tuple, got {type(output).__name__}")


def _input_batches(batches_or_tensor, batch_size: int):
    """Yield input tensors: chunks of a tensor/array, or the items of an iterable of batches
    (a tensor, an array, or a tuple/list whose first element is the input, as a DataLoader
    yields ``(x, y)``)."""
    import torch

    if isinstance(batches_or_tensor, (torch.Tensor, np.ndarray)):
        data = torch.as_tensor(batches_or_tensor)
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
        yield from torch.split(data, batch_size, dim=0)
        return
    for item in batches_or_tensor:
        if isinstance(item, (tuple, list)):
            item = item[0]
        yield torch.as_tensor(item)


def predict(model, batches_or_tensor, batch_size: int = 64, device=None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run a regressor over inputs and return its Gaussian in physical units.

    Parameters
    ----------
    model
        ``torch.nn.Module`` whose forward returns ``GaussianOutput(mean (B, 4), scale_tril
        (B, 4, 4))`` (or a ``(mean, scale_tril)`` tuple) in scaled labels.
    batches_or_tensor
        a tensor/array of inputs (split along axis 0 into ``batch_size`` chunks) or an iterable
        of batches (tensors, arrays, or ``(x, ...)`` tuples such as a DataLoader yields).
    batch_size
        chunk size when a single tensor/array is given.
    device
        where to run; ``None`` keeps the model where it is. If given, the model is moved there.

    The model runs in eval mode under ``torch.no_grad``; its previous train/eval mode is
    restored afterwards. Floating inputs are cast to the dtype of the model's parameters.

    Returns ``(mean (N, 4), sigma (N, 4), cov (N, 4, 4))`` in physical units (see
    :func:`to_physical`).
    """
    import torch

    if device is not None:
        model = model.to(device)
    parameter = next(iter(model.parameters()), None)
    run_device = torch.device(device) if device is not None else (
        parameter.device if parameter is not None else torch.device("cpu"))
    dtype = parameter.dtype if parameter is not None else torch.float32

    was_training = model.training
    model.eval()
    means, trils = [], []
    try:
        with torch.no_grad():
            for x in _input_batches(batches_or_tensor, batch_size):
                x = x.to(run_device, dtype=dtype) if x.is_floating_point() else x.to(run_device)
                mean, tril = _unpack_gaussian(model(x))
                means.append(mean.detach().to("cpu", torch.float64).numpy())
                trils.append(tril.detach().to("cpu", torch.float64).numpy())
    finally:
        model.train(was_training)
    if not means:
        raise ValueError("predict() got no input batches")
    return to_physical(np.concatenate(means), np.concatenate(trils))


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------

def _as_labels(array, name: str) -> np.ndarray:
    array = np.asarray(array, dtype=float)
    if array.ndim != 2 or array.shape[1] != N_LABELS:
        raise ValueError(f"{name} must have shape (N, {N_LABELS}) with columns {LABEL_NAMES}, "
                         f"got {array.shape}")
    return array


def _check_same_shape(**arrays) -> list[np.ndarray]:
    checked = [_as_labels(value, name) for name, value in arrays.items()]
    shapes = {a.shape for a in checked}
    if len(shapes) != 1:
        raise ValueError("shape mismatch: " + ", ".join(f"{n} {a.shape}" for n, a in zip(arrays, checked)))
    return checked


def residuals(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """``pred − true`` (N, 4), physical units (K, dex, dex, km/s)."""
    true, pred = _check_same_shape(true=true, pred=pred)
    return pred - true


def mae(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Mean absolute error per label, ``{"teff": K, "logg": dex, "mh": dex, "vsini": km/s}``."""
    error = np.abs(residuals(true, pred))
    return {name: float(value) for name, value in zip(LABEL_NAMES, error.mean(axis=0))}


def standardized_abs_error(true: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """``|mean − true| / σ`` (N, 4), dimensionless; σ must be positive."""
    true, mean, sigma = _check_same_shape(true=true, mean=mean, sigma=sigma)
    if np.any(~(sigma > 0)):
        raise ValueError("sigma must be positive and finite")
    return np.abs(mean - true) / sigma


def _ks(k) -> tuple:
    return tuple(np.atleast_1d(k).tolist())


def _coverage_of_z(z: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    """Fractions of ``z < thresholds`` per label and pooled over all labels ("overall")."""
    inside = z < thresholds
    result = {name: float(value) for name, value in zip(LABEL_NAMES, inside.mean(axis=0))}
    result["overall"] = float(inside.mean())
    return result


def coverage(true: np.ndarray, mean: np.ndarray, sigma: np.ndarray, k=(1, 2)
             ) -> dict[Any, dict[str, float]]:
    """Fraction of residuals with ``|mean − true| < k σ`` (Table 3).

    Returns ``{k: {"teff": f, "logg": f, "mh": f, "vsini": f, "overall": f}}`` with fractions
    in [0, 1]; "overall" pools all N × 4 residuals. Compare with :data:`GAUSSIAN_COVERAGE`.
    """
    z = standardized_abs_error(true, mean, sigma)
    return {kk: _coverage_of_z(z, np.full(N_LABELS, float(kk))) for kk in _ks(k)}


def mae_vs_snr(predict_at_snr: Callable[[float], tuple[np.ndarray, np.ndarray]],
               snrs: Iterable[float], variant: str = "model") -> list[dict[str, Any]]:
    """MAE against SNR as a tidy (long) table.

    ``predict_at_snr(snr)`` returns ``(true, pred)`` (N, 4) in physical units for a test set at
    that SNR. The result has one row per (SNR, label):
    ``{"variant": str, "snr": float, "label": name, "unit": unit, "mae": value}``.
    Rows of several variants can be concatenated and passed to :func:`plot_mae_vs_snr`.
    """
    rows = []
    for snr in snrs:
        true, pred = predict_at_snr(snr)
        for name, value in mae(true, pred).items():
            rows.append({"variant": variant, "snr": float(snr), "label": name,
                         "unit": LABEL_UNIT[name], "mae": value})
    return rows


def rows_to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV text of a list of dicts (columns in the order they first appear)."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_value(row.get(key)) for key in columns})
    return buffer.getvalue()


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return value


# ---------------------------------------------------------------------------------------------
# Post-hoc σ recalibration (not in the paper)
# ---------------------------------------------------------------------------------------------

def fit_sigma_scale(true: np.ndarray, mean: np.ndarray, sigma: np.ndarray, k: float = 1.0
                    ) -> np.ndarray:
    """One multiplicative σ factor per label, fitted on a **validation** set.

    ``s_j`` is chosen so that a fraction ``erf(k/√2)`` of the validation residuals of label j lie
    within ``k s_j σ``: ``s_j = quantile(|error|/σ, erf(k/√2)) / k`` (k = 1: the 68.27th
    percentile of ``|error|/σ``). ``s > 1`` means the model's σ was too small.
    Returns an array of shape (4,), dimensionless.
    """
    z = standardized_abs_error(true, mean, sigma)
    return np.quantile(z, gaussian_coverage(k), axis=0) / k


def apply_sigma_scale(sigma: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``σ · s`` per label (N, 4), physical units. (A covariance scales as ``cov · s sᵀ``.)"""
    sigma = _as_labels(sigma, "sigma")
    scale = np.asarray(scale, dtype=float)
    if scale.shape != (N_LABELS,):
        raise ValueError(f"scale must have shape ({N_LABELS},), got {scale.shape}")
    return sigma * scale


@dataclass(frozen=True)
class SigmaQuantileMap:
    """Quantile (isotonic) recalibration of σ, per label, fitted on a validation set.

    It stores the sorted validation ``|error|/σ`` of each label. For a nominal Gaussian level
    k the calibrated interval half-width is ``m_j(k) σ`` with
    ``m_j(k) = quantile_j(erf(k/√2))``; ``m_j`` is monotone in k (an isotonic map from nominal
    to calibrated multiples of σ). Unlike a single scale factor it calibrates every k at once,
    also for non-Gaussian (e.g. heavy-tailed) residuals, up to the resolution of the validation
    set in the far tails.
    """

    z_sorted: np.ndarray  # (N_val, 4), sorted |error|/σ of the validation set

    def multiplier(self, k: float) -> np.ndarray:
        """``m_j(k)`` (4,): calibrated half-width of the nominal kσ interval in units of σ."""
        return np.quantile(self.z_sorted, gaussian_coverage(float(k)), axis=0)

    def effective_sigma(self, sigma: np.ndarray, k: float) -> np.ndarray:
        """σ to use for the kσ interval: ``σ · m(k) / k`` (N, 4), physical units."""
        return _as_labels(sigma, "sigma") * (self.multiplier(k) / float(k))


def fit_sigma_quantile_map(true: np.ndarray, mean: np.ndarray, sigma: np.ndarray) -> SigmaQuantileMap:
    """Fit :class:`SigmaQuantileMap` on a validation set (arrays (N, 4), physical units)."""
    z = standardized_abs_error(true, mean, sigma)
    return SigmaQuantileMap(z_sorted=np.sort(z, axis=0))


def coverage_quantile_map(true: np.ndarray, mean: np.ndarray, sigma: np.ndarray,
                          quantile_map: SigmaQuantileMap, k=(1, 2)) -> dict[Any, dict[str, float]]:
    """Like :func:`coverage`, but with the interval half-widths of ``quantile_map``:
    fraction with ``|mean − true| < m(k) σ``."""
    z = standardized_abs_error(true, mean, sigma)
    return {kk: _coverage_of_z(z, quantile_map.multiplier(kk)) for kk in _ks(k)}


def recalibration_report(val_true, val_mean, val_sigma, test_true, test_mean, test_sigma,
                         k=(1, 2)) -> dict[str, Any]:
    """Fit both recalibrations on the validation set and report test coverage before/after.

    Returns ``{"sigma_scale": {label: s}, "before": coverage, "scaled": coverage,
    "quantile_map": coverage, "gaussian": {k: erf(k/√2)}}`` (coverages as from
    :func:`coverage`, fractions).
    """
    scale = fit_sigma_scale(val_true, val_mean, val_sigma)
    quantile_map = fit_sigma_quantile_map(val_true, val_mean, val_sigma)
    return {
        "sigma_scale": {name: float(s) for name, s in zip(LABEL_NAMES, scale)},
        "before": coverage(test_true, test_mean, test_sigma, k),
        "scaled": coverage(test_true, test_mean, apply_sigma_scale(test_sigma, scale), k),
        "quantile_map": coverage_quantile_map(test_true, test_mean, test_sigma, quantile_map, k),
        "gaussian": {kk: gaussian_coverage(kk) for kk in _ks(k)},
    }


# ---------------------------------------------------------------------------------------------
# Tables (Markdown + CSV, no pandas)
# ---------------------------------------------------------------------------------------------

class TableText(NamedTuple):
    """A rendered table: Markdown for humans, CSV (with a ``source`` column) for machines."""

    markdown: str
    csv: str

    def write(self, stem: str | Path) -> tuple[Path, Path]:
        """Write ``<stem>.md`` and ``<stem>.csv`` (parents created); returns both paths."""
        stem = Path(stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        md_path, csv_path = stem.with_suffix(".md"), stem.with_suffix(".csv")
        md_path.write_text(self.markdown, encoding="utf-8")
        csv_path.write_text(self.csv, encoding="utf-8")
        return md_path, csv_path


def _fmt(value, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{decimals}f}"


def _fmt_g(value) -> str:
    return "–" if value is None else f"{float(value):g}"


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in body]
    return "\n".join(lines)


def _label_header(name: str) -> str:
    return f"{LABEL_PLAIN[name]} [{LABEL_UNIT[name]}]"


def _paper_heading(table: str) -> str:
    return (f"### Comparison only — {PAPER_SOURCE}, {table} "
            "(published numbers, transcribed; not computed by this package)")


def table2(rows: Mapping[str, Mapping[str, Any]], paper: Mapping[str, Mapping[str, Any]] | None = None
           ) -> TableText:
    """Table 2: MAE per variant.

    ``rows`` maps our variant name to an :func:`mae` dict (physical units; an optional ``"snr"``
    entry is shown). ``paper`` (e.g. :data:`PAPER_TABLE2`) adds a **separate**, labelled block
    with the published numbers; the CSV labels every row with ``source`` ("this work" or
    "paper (Hüttel & Clemmensen 2021)").
    """
    header = ["Variant", "SNR"] + [_label_header(n) for n in LABEL_NAMES]
    ours = [[variant, _fmt_g(values.get("snr"))]
            + [_fmt(values.get(n), TABLE_DECIMALS[n]) for n in LABEL_NAMES]
            for variant, values in rows.items()]
    parts = ["### This work: mean absolute error of the mean prediction", _markdown(header, ours)]
    records = [{"source": THIS_WORK, "variant": v, "description": "", "snr": vals.get("snr"),
                **{n: vals.get(n) for n in LABEL_NAMES}} for v, vals in rows.items()]
    if paper:
        paper_header = ["Paper row", "Model", "Σθ(x)", "SNR"] + [_label_header(n) for n in LABEL_NAMES]
        body = [[key, vals.get("model", ""), vals.get("covariance", ""), _fmt_g(vals.get("snr"))]
                + [_fmt(vals.get(n), TABLE_DECIMALS[n]) for n in LABEL_NAMES]
                for key, vals in paper.items()]
        parts += ["", _paper_heading("Table 2"), _markdown(paper_header, body)]
        records += [{"source": PAPER_SOURCE, "variant": key,
                     "description": f"{vals.get('model', '')}; covariance {vals.get('covariance', '')}",
                     "snr": vals.get("snr"), **{n: vals.get(n) for n in LABEL_NAMES}}
                    for key, vals in paper.items()]
    return TableText("\n".join(parts) + "\n", rows_to_csv(records))


def _common_ks(rows: Mapping[str, Mapping[Any, Any]]) -> list:
    ks = None
    for values in rows.values():
        keys = {key for key in values if isinstance(key, (int, float)) and not isinstance(key, bool)}
        ks = keys if ks is None else ks & keys
    return sorted(ks or {1, 2})


def table3(rows: Mapping[str, Mapping[Any, Mapping[str, float]]],
           paper: Mapping[str, Mapping[Any, Any]] | None = None, per_label: bool = True) -> TableText:
    """Table 3: percentage of residuals within kσ.

    ``rows`` maps a variant name (e.g. ``"attention_diagonal_dae"`` or
    ``"attention_diagonal_dae (σ rescaled)"``) to a :func:`coverage` dict (fractions). The first
    row is the exact Gaussian value (theory). ``per_label`` adds one column per label and k.
    ``paper`` (e.g. :data:`PAPER_TABLE3`, in percent) adds a separate, labelled block.
    """
    ks = _common_ks(rows)
    header = ["Variant"] + [f"within {k:g}σ, all [%]" for k in ks]
    if per_label:
        header += [f"{LABEL_PLAIN[n]} {k:g}σ [%]" for n in LABEL_NAMES for k in ks]

    def cells(get):
        out = [_fmt(100 * get(k, "overall"), 1) for k in ks]
        if per_label:
            out += [_fmt(100 * get(k, n), 1) for n in LABEL_NAMES for k in ks]
        return out

    theory = ["Gaussian ideal, erf(k/√2)"] + cells(lambda k, _name: gaussian_coverage(k))
    ours = [[variant] + cells(lambda k, name, v=values: v[k][name]) for variant, values in rows.items()]
    parts = ["### This work: residuals within kσ of the mean (σ from the diagonal of Σθ(x))",
             _markdown(header, [theory] + ours)]

    def record(source, variant, get, names):
        rec = {"source": source, "variant": variant}
        for k in ks:
            rec.update({f"{name}_{k:g}sigma_percent": 100 * get(k, name) for name in names})
        return rec

    names = ["overall"] + (list(LABEL_NAMES) if per_label else [])
    records = [record(THEORY_SOURCE, "gaussian", lambda k, _n: gaussian_coverage(k), names)]
    records += [record(THIS_WORK, v, lambda k, n, vals=vals: vals[k][n], names) for v, vals in rows.items()]
    if paper:
        paper_ks = [1, 2]
        body = [[key, vals.get("model", "")] + [_fmt(vals.get(k), 1) for k in paper_ks]
                for key, vals in paper.items()]
        paper_header = ["Paper row", "Model"] + [f"ε < {k}Σθ(x) [%]" for k in paper_ks]
        parts += ["", _paper_heading("Table 3"), _markdown(paper_header, body)]
        for key, vals in paper.items():
            rec = {"source": PAPER_SOURCE, "variant": key}
            rec.update({f"overall_{k}sigma_percent": vals.get(k) for k in paper_ks})
            records.append(rec)
    return TableText("\n".join(parts) + "\n", rows_to_csv(records))


def table4(rows: Mapping[str, tuple[np.ndarray, np.ndarray]],
           paper: Mapping[str, Mapping[str, Any]] | None = None) -> TableText:
    """Table 4: predictions for one real spectrum (the Sun) as ``mean ± σ``.

    ``rows`` maps a variant name to ``(mean (4,), sigma (4,))`` in physical units. ``paper``
    (e.g. :data:`PAPER_TABLE4`) adds a separate, labelled block with the published numbers,
    including the adopted solar reference values.
    """
    decimals = {"teff": 1, "logg": 2, "mh": 3, "vsini": 2}
    header = ["Variant"] + [_label_header(n) for n in LABEL_NAMES]
    body, records = [], []
    for variant, (mean, sigma) in rows.items():
        mean, sigma = np.ravel(mean).astype(float), np.ravel(sigma).astype(float)
        if mean.shape != (N_LABELS,) or sigma.shape != (N_LABELS,):
            raise ValueError(f"{variant}: mean and sigma must have {N_LABELS} values each")
        body.append([variant] + [f"{_fmt(m, decimals[n])} ± {_fmt(s, decimals[n])}"
                                 for n, m, s in zip(LABEL_NAMES, mean, sigma)])
        rec = {"source": THIS_WORK, "variant": variant}
        for n, m, s in zip(LABEL_NAMES, mean, sigma):
            rec.update({n: m, f"{n}_sigma": s})
        records.append(rec)
    parts = ["### This work: predicted mean ± σ", _markdown(header, body)]
    if paper:
        paper_body = []
        for key, vals in paper.items():
            cells = []
            rec = {"source": PAPER_SOURCE, "variant": key}
            for n in LABEL_NAMES:
                value = vals.get(n)
                m, s = value if isinstance(value, tuple) else (value, None)
                cells.append(_fmt_g(m) if s is None else f"{_fmt_g(m)} ± {_fmt_g(s)}")
                rec.update({n: m, f"{n}_sigma": s})
            paper_body.append([key, vals.get("model", "")] + cells)
            records.append(rec)
        paper_header = ["Paper row", "Model"] + [_label_header(n) for n in LABEL_NAMES]
        parts += ["", _paper_heading("Table 4"), _markdown(paper_header, paper_body)]
    return TableText("\n".join(parts) + "\n", rows_to_csv(records))


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

def _axis_label(name: str, prefix: str = "") -> str:
    return f"{prefix}{LABEL_TEX[name]} [{LABEL_UNIT[name]}]"


def _new_figure(nrows: int, ncols: int, size: tuple[float, float], **subplot_kw):
    with sns.axes_style("ticks"):
        fig = Figure(figsize=size, layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False, **subplot_kw)
    return fig, axes


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> Figure:
    """Save ``fig`` to ``path`` (parents created) and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return fig


def _point_alpha(n: int) -> float:
    return float(np.clip(1000.0 / max(n, 1), 0.15, 0.8))


def plot_residuals(true: np.ndarray, pred: np.ndarray, path: str | Path, gridsize: int = 25,
                   title: str | None = None) -> Figure:
    """Fig. 3: residual of label j (row j, ``pred − true``) against the true value of label i
    (column i), 4 × 4 hexbin panels with a shared logarithmic count scale and a zero line.
    Labels in the order Teff, log g, [M/H], v sin i, left to right and top to bottom."""
    true, pred = _check_same_shape(true=true, pred=pred)
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
    true, sigma = _check_same_shape(true=true, sigma=sigma)
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

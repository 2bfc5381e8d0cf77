"""The paper's Tables 2–4 as Markdown (for humans) and CSV (for machines), no pandas.

Our rows and the paper's published numbers (:data:`PAPER_TABLE2`–:data:`PAPER_TABLE4`,
transcribed; comparison only) always go into separate, labelled blocks; the CSV labels every
row with its ``source``.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from ..labels import LABEL_DECIMALS, LABEL_NAMES, LABEL_PLAIN, N_LABELS, label_header
from .metrics import gaussian_coverage

THIS_WORK = "this work"
PAPER_SOURCE = "paper (Hüttel & Clemmensen 2021)"
THEORY_SOURCE = "theory (Gaussian)"


# Published numbers of the paper (transcribed from its Tables 2–4; comparison only) -------


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
#: the exact values are 68.27 % / 95.45 %
#: (:data:`paper_lib.evaluation.metrics.GAUSSIAN_COVERAGE`). The paper does not say
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


# Rendering --------------------------------------------------------------------------------


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
    header = ["Variant", "SNR"] + [label_header(n) for n in LABEL_NAMES]
    ours = [[variant, _fmt_g(values.get("snr"))]
            + [_fmt(values.get(n), LABEL_DECIMALS[n]) for n in LABEL_NAMES]
            for variant, values in rows.items()]
    parts = ["### This work: mean absolute error of the mean prediction", _markdown(header, ours)]
    records = [{"source": THIS_WORK, "variant": v, "description": "", "snr": vals.get("snr"),
                **{n: vals.get(n) for n in LABEL_NAMES}} for v, vals in rows.items()]
    if paper:
        paper_header = ["Paper row", "Model", "Σθ(x)", "SNR"] + [label_header(n) for n in LABEL_NAMES]
        body = [[key, vals.get("model", ""), vals.get("covariance", ""), _fmt_g(vals.get("snr"))]
                + [_fmt(vals.get(n), LABEL_DECIMALS[n]) for n in LABEL_NAMES]
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
    header = ["Variant"] + [label_header(n) for n in LABEL_NAMES]
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
        paper_header = ["Paper row", "Model"] + [label_header(n) for n in LABEL_NAMES]
        parts += ["", _paper_heading("Table 4"), _markdown(paper_header, paper_body)]
    return TableText("\n".join(parts) + "\n", rows_to_csv(records))

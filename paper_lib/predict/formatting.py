"""Predictions as text: JSON, CSV and the command line's table (with a note on its flags).

Rows are those of :func:`paper_lib.predict.predict_rows`; rows holding an ``error`` are left
out here (the command line reports them on stderr).
"""

from __future__ import annotations

import csv
import io
import json

from ..labels import LABEL_NAMES, LABEL_UNITS
from .flags import FLAGS, flag_kind
from .rows import ANSWER_SUFFIXES, CALIBRATION_SUFFIXES, QUALITY_COLUMNS, SIGMA_SUFFIXES

EXTRA_COLUMNS = QUALITY_COLUMNS  # RV, SNR, gap, bad pixels, OOD score: the row's own order


def _number(value, digits: int = 5):
    return None if value is None or value != value else round(float(value), digits)


def to_json(rows: list[dict]) -> str:
    """One object per file: labels as {value, sigma, unit}, correlations, RV, quality, flags."""
    out = []
    for r in rows:
        item = {"file": r["file"], "kind": r["kind"], "model": r["model"],
                "method": r["method"], "fixed": r["fixed"]}
        for name, unit in zip(LABEL_NAMES, LABEL_UNITS):
            item[name] = {"value": _number(r[name]), "sigma": _number(r[f"{name}_sigma"]),
                          "sigma_stat": _number(r[f"{name}_sigma_stat"]),
                          "sigma_sys": _number(r[f"{name}_sigma_sys"]), "unit": unit,
                          "network": _number(r[f"{name}_network"]), "fit": _number(r[f"{name}_fit"])}
            if r["method"].endswith("+calibrated"):
                item[name].update(raw=_number(r[f"{name}_raw"]),
                                  sigma_cal=_number(r[f"{name}_sigma_cal"]))
        item["fit_rms"] = _number(r["fit_rms"])
        corr = {k[5:]: _number(v, 4) for k, v in r.items() if k.startswith("corr_")}
        if corr:
            item["correlation"] = corr
        item.update({k: (_number(r[k]) if not isinstance(r[k], str) else r[k])
                     for k in EXTRA_COLUMNS})
        item["flags"] = list(r["flags"])
        out.append(item)
    return json.dumps(out, indent=1)


def to_csv(rows: list[dict]) -> str:
    """A header and one line per file; ``flags`` joined by ';' (empty when all is well)."""
    if not rows:
        return ""
    columns = ["file", "kind", "model", "method", "fixed",
               *[f"{n}{s}" for n in LABEL_NAMES for s in SIGMA_SUFFIXES],
               *[f"{n}{s}" for s in ANSWER_SUFFIXES for n in LABEL_NAMES], "fit_rms",
               *[f"{n}{s}" for n in LABEL_NAMES for s in CALIBRATION_SUFFIXES],
               *sorted(k for k in rows[0] if k.startswith("corr_")), *EXTRA_COLUMNS, "flags"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([";".join(r[c]) if c == "flags" else
                         (f"{r[c]:.6g}" if isinstance(r[c], float) else r[c]) for c in columns])
    return buffer.getvalue().rstrip("\n")


def to_table(rows: list[dict]) -> str:
    """Human-readable lines per file, then a note explaining each flag that occurs."""
    lines, seen = [], []
    for r in rows:
        significance = (f", CCF significance {r['rv_significance']:.0f}"
                        if r["rv_significance"] is not None else " (given)")
        lines.append(f"{r['file']}  ({r['model']}{_how(r)}; "
                     f"rv {r['rv_kms']:+.2f} km/s{significance}; "
                     f"SNR ≈ {r['snr']:.0f}; {100 * r['gap_fraction']:.1f} % filled; "
                     f"OOD score {r['ood_score']:.2f})")
        for name, unit in zip(LABEL_NAMES, LABEL_UNITS):
            cal = (f", cal {r[f'{name}_sigma_cal']:.3f}; raw {r[f'{name}_raw']:.3f}"
                   if r["method"].endswith("+calibrated") and name != "vsini" else "")
            lines.append(f"  {name:6s} {r[name]:10.3f} ± {r[f'{name}_sigma']:8.3f} {unit:4s}"
                         f"  (stat {r[f'{name}_sigma_stat']:.3f}, sys {r[f'{name}_sigma_sys']:.3f}"
                         f"{cal}" + (f"; network {r[f'{name}_network']:.3f})"
                                     if r["method"].split("+")[0] in ("refined", "fit") else ")"))
        corr = [f"{k[5:].replace('_', '-')} {v:+.2f}" for k, v in r.items() if k.startswith("corr_")]
        if corr:
            lines.append("  correlations: " + "  ".join(corr))
        lines.append("  flags: " + (", ".join(r["flags"]) or "none"))
        seen += [flag_kind(f) for f in r["flags"]]
    if seen:
        lines.append("")
        lines += [f"note: {kind}: {FLAGS[kind]}" for kind in dict.fromkeys(seen)]
    return "\n".join(lines)


def _how(row: dict) -> str:
    """How the answer was made, for the table's header line of one file."""
    method = row["method"] or ""
    parts = [f"conditioned on {row['fixed']}" if "+fix" in method else "",
             "refined on the grid" + (f" with {row['fixed']}" if row["fixed"] else "")
             if method.startswith("refined") else "",
             "fitted on the emulator" + (f" with {row['fixed']}" if row["fixed"] else "")
             if method.startswith("fit") else "",
             "calibrated on the benchmark stars" if method.endswith("+calibrated") else ""]
    return "".join(f"; {p}" for p in parts if p)


def render(rows: list[dict], fmt: str) -> str:
    """``fmt``: 'json', 'csv' or 'table'."""
    good = [r for r in rows if r.get("error") is None]
    return {"json": to_json, "csv": to_csv, "table": to_table}[fmt](good)

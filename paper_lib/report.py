"""The results sections of README and of the site, generated from ``results/<profile>/*.json``.

``python -m paper_lib report --profile cpu`` rewrites the block between
``<!-- results:<profile>:start -->`` and ``<!-- results:<profile>:end -->`` in each file of
:data:`PAGES`: README.md gets the short section (Table 2, Table 4, three key figures),
docs/results.md the full one (Tables 2–4 and every figure). So the numbers people read are
exactly the numbers a run wrote (a test checks both files). Figure links are relative to the
repository root, which the site serves at its own root (``docs/hooks.py``), so the same link
works in both files.
"""

from __future__ import annotations

import json
import re

import numpy as np

from . import paths
from .labels import LABEL_DECIMALS, LABEL_NAMES, label_header
from .profiles import REAL_VARIANT, Profile


def _load(profile: Profile, notebook: str) -> dict | None:
    path = paths.results / profile.name / f"{notebook}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _row(cells) -> str:
    """A Markdown table row; brackets escaped, so that "[M/H] [dex]" is text, not a link."""
    return "| " + " | ".join(str(c).replace("[", r"\[").replace("]", r"\]") for c in cells) + " |"


def _fmt(value, label) -> str:
    return "–" if value is None else f"{value:.{LABEL_DECIMALS[label]}f}"


def _signed(value, label) -> str:
    return "–" if value is None else f"{value:+.{LABEL_DECIMALS[label]}f}"


def table2_block(results: dict) -> list[str]:
    from .evaluation.tables import PAPER_TABLE2

    lines = [_row(["variant", "SNR", *(label_header(n) for n in LABEL_NAMES),
                   *(f"paper {label_header(n)}" for n in LABEL_NAMES)]),
             _row(["---"] * (2 + 2 * len(LABEL_NAMES)))]
    for variant, mae in results["table2"].items():
        paper = PAPER_TABLE2.get(variant, {})
        lines.append(_row([variant, f"{results['snr'][variant]:g}",
                           *(_fmt(mae[n], n) for n in LABEL_NAMES),
                           *(_fmt(paper.get(n), n) for n in LABEL_NAMES)]))
    return lines


def table3_block(results: dict) -> list[str]:
    lines = [_row(["variant", "within 1σ", "within 2σ", "1σ, σ scaled per label",
                   "2σ, σ scaled per label", "1σ, quantile map", "2σ, quantile map"]),
             _row(["---"] * 7)]
    for variant, cov in results["table3"].items():
        recal = results["recalibration"][variant]
        cells = [cov, recal["after"], recal["quantile_map"]]
        lines.append(_row([variant, *(f"{100 * c[k]['overall']:.1f} %" for c in cells
                                      for k in ("1", "2"))]))
    lines.append(_row(["Gaussian ideal", *(["68.3 %", "95.4 %"] * 3)]))
    lines.append(_row(["paper: ResNet / attention (comparison)", "79.9 % / 65.5 %",
                       "98.4 % / 93.4 %", "–", "–", "–", "–"]))
    return lines


def table4_block(results: dict) -> list[str]:
    lines = [_row(["spectrum", "variant", *(label_header(n) for n in LABEL_NAMES)]),
             _row(["---"] * (2 + len(LABEL_NAMES)))]
    for spectrum, rows in results["predictions"].items():
        for variant, pred in rows.items():
            lines.append(_row([spectrum, variant, *(
                f"{_fmt(pred['mean'][i], n)} ± {_fmt(pred['sigma'][i], n)}"
                for i, n in enumerate(LABEL_NAMES))]))
    return lines


def benchmark_block(results: dict, *, short: bool) -> list[str]:
    """The benchmark stars of notebook 09: per star the reference and Δ of predict's default,
    raw and calibrated with the star left out (``short``: with the emulator fit's Δ and the
    Δlog g the pixels want beside them, one row per star, instead of a separate diagnosis
    table); then median |Δ| and coverage per variant, the default's choice and the fit."""
    from .evaluation.logg_diagnosis import diagnosis_markdown

    labels = ("teff", "logg", "mh")
    default = results["default_model"]
    per_star = results["default_per_star"]
    diagnosis = _diagnosis_per_star(results.get("diagnosis") or []) if short else {}
    extra = ["Δ emulator fit", "Δlog g wanted"] if diagnosis else []
    lines = [_row(["star", "reference Teff, log g, [M/H]", "Δ raw", "Δ calibrated (star left out)",
                   *extra]), _row(["---"] * (4 + len(extra)))]
    for star in per_star["raw"]:
        ref = next(s["reference"] for s in results["stars"] if s["star"] == star)
        counted = next(s["counted"] for s in results["stars"] if s["star"] == star)

        def delta(table):
            d = table.get(star)
            return "–" if d is None else ", ".join(_fmt(d[f"delta_{k}"], k) for k in labels)

        cells = [star.split(" (")[0] + ("" if counted else " (not counted)"),
                 ", ".join(_fmt(ref[k], k) for k in labels),
                 delta(per_star["raw"]), delta(per_star["calibrated_loso"])]
        if diagnosis:
            fit, wanted = diagnosis.get(star, (None, None))
            cells += ["–" if fit is None else ", ".join(_signed(v, k) for k, v in zip(labels, fit)),
                      "–" if wanted is None else _signed(wanted, "logg")]
        lines.append(_row(cells))
    if diagnosis:
        lines += ["", "*Δ emulator fit*: the raw least-squares fit on the emulator (`--refine`); "
                  "*Δlog g wanted*: the grid's least-squares log g with Teff and [M/H] held at "
                  "the reference (both per spectrum in [Benchmark stars](docs/benchmark_stars.md)"
                  " and [Results](docs/results.md))."]
    lines += ["", _row(["variant", r"raw median \|Δ\| Teff, log g, [M/H]", "raw within 2σ",
                        r"calibrated (LOSO) median \|Δ\|", "calibrated within 2σ"]),
              _row(["---"] * 5)]
    for variant, summary in results["variants"].items():
        lines.append(_summary_row(variant, summary))
    fit = results.get("fit")
    if fit:
        lines.append(_summary_row(f"{default} + least-squares fit on the emulator (`--refine`)",
                                  fit))
    lines += ["", default_choice_text(results)]
    if fit:
        lines[-1] += (f" The fit, calibrated, {'reads' if fit['beats_network'] else 'does not read'}"
                      f" the stars at least as well as the calibrated network on every label: "
                      f"`predict` {'fits' if fit['fit_by_default'] else 'gives the network answer'}"
                      f" by default.")
    if results.get("diagnosis") and not short:
        lines += ["", "Where log g is lost (raw answers; nothing fitted to the stars): Δ of the "
                  "network, of the fit on the emulator and of the grid's own least-squares fit, "
                  "and the Δlog g the pixels want with Teff and [M/H] held at the reference:", ""]
        lines += diagnosis_markdown(results["diagnosis"]).splitlines()
    return lines


def _summary_row(name: str, summary: dict) -> str:
    """A row of the per-variant table: raw and LOSO-calibrated median |Δ| and within 2σ."""
    cells = [name]
    for part in (summary["raw"], summary["calibrated_loso"]):
        cells += [", ".join(_fmt(part["median_abs_delta"][k], k) for k in ("teff", "logg", "mh")),
                  f"{100 * part['within_2sigma']:.0f} %"]
    return _row(cells)


def default_choice_text(results: dict) -> str:
    """Why ``predict``'s default variant: its rank among the variants by the calibrated (LOSO)
    median |Δlog g| on the benchmark stars, and its raw and calibrated numbers."""
    variants = results["variants"]
    default = results["default_model"]

    def loso_logg(v):
        return variants[v]["calibrated_loso"]["median_abs_delta"]["logg"]

    ranked = sorted(variants, key=loso_logg)
    rank = ranked.index(default) + 1
    cal, raw = variants[default]["calibrated_loso"], variants[default]["raw"]
    first = "" if rank == 1 else f" (`{ranked[0]}` ranks first)"
    return (f"`predict`'s default `{default}` ranks {rank} of {len(ranked)} by the calibrated "
            f"(LOSO) median |Δlog g|{first}: {_triple_text(cal['median_abs_delta'])}, "
            f"{100 * cal['within_2sigma']:.0f} % within 2σ; raw {_triple_text(raw['median_abs_delta'])}"
            f", {100 * raw['within_2sigma']:.0f} % within 2σ. The calibration `predict` applies "
            f"(fitted on all these stars; each model chosen by its LOSO error): "
            f"{calibration_text(variants[default]['calibration'])} (raw answers: "
            f"`--no-calibration`).")


def calibration_text(labels: dict) -> str:
    """The stored calibration's model per label, e.g. "Teff none, log g none, [M/H] +0.07"."""
    names = {"teff": ("Teff", " K", 0), "logg": ("log g", "", 2), "mh": ("[M/H]", "", 2)}
    parts = []
    for label, (name, unit, digits) in names.items():
        fit = labels[label]
        model = fit.get("model") or ("zero point" if fit["term"] is None
                                     else f"zero point + {fit['term']}")
        text = "none" if model == "none" else f"{fit['zero_point']:+.{digits}f}{unit}"
        if fit["term"] is not None:
            text += f" {fit['slope']:+.2f} × ({fit['term']} term)"
        parts.append(f"{name} {text}")
    return ", ".join(parts)


def _triple_text(values: dict) -> str:
    """``{teff, logg, mh}`` → "33 K, log g 0.17, [M/H] 0.09"."""
    return f"{values['teff']:.0f} K, log g {values['logg']:.2f}, [M/H] {values['mh']:.2f}"


def _diagnosis_per_star(rows: list[dict]) -> dict:
    """{star: (mean Δ of the emulator fit (3,) or None, mean Δlog g wanted over the whole
    window or None)} over each star's spectra in the log g diagnosis."""
    out = {}
    for star in dict.fromkeys(row["star"] for row in rows):
        mine = [row for row in rows if row["star"] == star]
        fits = [[row["delta_emulator_fit"][k] for k in ("teff", "logg", "mh")]
                for row in mine if row.get("delta_emulator_fit")]
        wanted = [row["delta_held_whole"]["logg"] for row in mine if row.get("delta_held_whole")]
        out[star] = (list(np.mean(fits, axis=0)) if fits else None,
                     float(np.mean(wanted)) if wanted else None)
    return out


FIGURES = (  # (file in figures/<profile>/, caption), shown under the tables when present
    ("fig3_residuals.png", "Fig. 3: residuals against the true labels"),
    ("fig4_sigma.png", "Fig. 4: predicted σ against the true labels"),
    ("calibration.png", "σ calibration before and after recalibration"),
    ("mae_vs_snr.png", "MAE against SNR"),
    ("learning_curve.png", "Learning curves: SNR-20 validation MAE against spectra seen and "
                           "training time"),
    ("sun_overlay.png", "HARPS Sun against the synthetic spectrum at the predicted labels"),
    ("synthetic_gap.png", "The synthetic gap: real solar spectra against our synthetic image "
                          "at the Sun's labels"),
    ("gap_attribution.png", "Where the gap moves predict's default network (integrated "
                            "gradients) and the valley of a least-squares fit"),
    ("fig5_attention.png", "Fig. 5: attention maps"),
    ("benchmark_stars.png", "Benchmark stars: answer − reference of predict's default, raw and "
                            "calibrated with the star left out"),
)


KEY_FIGURES = ("fig3_residuals.png", "sun_overlay.png", "benchmark_stars.png")  # README's three

# the files that hold a results block, and whether theirs is the short one
PAGES = {"README.md": True, "docs/results.md": False}


def figures_block(profile: Profile, names=None) -> list[str]:
    """Markdown image links to the profile's figures that exist (paths relative to the root);
    ``names``: only these files of :data:`FIGURES` (default: all)."""
    lines = []
    for name, caption in FIGURES:
        path = paths.figures / profile.name / name
        if path.exists() and (names is None or name in names):
            lines += ["", f"![{caption}]({path.relative_to(paths.root).as_posix()})"]
    return ["", "**Figures** (all from this run; every figure of the run is in "
            f"`figures/{profile.name}/`)", *lines] if lines else []


def training_seconds(profile: Profile) -> float:
    """Optimiser time of every trained network (from the training notebooks' results).

    Taken from the checkpoints' histories, not from the notebooks' wall time: a notebook that
    finds a finished checkpoint loads it in seconds.
    """
    total = 0.0
    dae = _load(profile, "02_train_dae")
    if dae:
        total += dae["results"].get("train_wall_time_s", 0.0)
    for notebook in ("03_train_resnet", "04_train_attention"):
        record = _load(profile, notebook)
        if record:
            total += sum(v.get("train_seconds", 0.0) for v in record["results"].values())
    return total


def notebook_seconds(profile: Profile) -> float:
    """Wall time of the notebooks as their results files record it."""
    from .pipeline import NOTEBOOKS

    records = [_load(profile, name) for name in NOTEBOOKS]
    return sum(r["provenance"].get("wall_time_s", 0.0) for r in records if r)


def commits_text(profile: Profile) -> str:
    """"commit `abc`", or, where the notebooks ran at different commits (a run resumed with
    ``--from``), each commit with the notebooks it wrote: "commits `abc` (01–04), `def` (05–07)"."""
    from .pipeline import NOTEBOOKS

    groups: list[list] = []  # [commit, first notebook, last notebook]
    for name in NOTEBOOKS:
        record = _load(profile, name)
        if record is None:
            continue
        commit = record["provenance"]["commit"][:10]
        if groups and groups[-1][0] == commit:
            groups[-1][2] = name[:2]
        else:
            groups.append([commit, name[:2], name[:2]])
    if len(groups) <= 1:
        return f"commit `{groups[0][0]}`" if groups else "commit unknown"
    return "commits " + ", ".join(f"`{c}` ({a}–{b})" if a != b else f"`{c}` ({a})"
                                  for c, a, b in groups)


def results_section(profile: Profile, *, short: bool = False) -> str:
    """Markdown of a profile's results with provenance; raises if notebook 05 has not run.

    ``short``: README's version — Table 2, Table 4 and :data:`KEY_FIGURES`, without Table 3."""
    tables = _load(profile, "05_results_tables")
    if tables is None:
        raise FileNotFoundError(f"no results/{profile.name}/05_results_tables.json: run "
                                f"./run_all.sh --profile {profile.name} first")
    prov = tables["provenance"]
    hw = prov["hardware"]
    out = [f"Profile `{profile.name}`, {commits_text(profile)}, {hw['cpu']} "
           f"({hw['cpu_count']} cores), GPU: {hw['gpu'] or 'none'}, torch {hw['torch']}; "
           f"training took {training_seconds(profile) / 60:.0f} min (summed from the "
           f"checkpoints' histories), the notebooks {notebook_seconds(profile) / 60:.0f} min "
           f"of wall time in the runs that wrote these files. Our grid is rebuilt from "
           f"public inputs (Turbospectrum, ATLAS9 ODFNEW, Gaia-ESO lines), not the authors' "
           f"grid; paper columns are the published numbers, for comparison only.", "",
           "**Table 2 — mean absolute error on the test set** "
           f"({next(iter(tables['results']['test_sizes'].values()))} spectra)", ""]
    out += table2_block(tables["results"])
    if not short:
        out += table3_section(tables["results"])
    sun = _load(profile, "06_harpsn_sun")
    if sun is not None:
        out += ["", "**Table 4 — real solar spectra** (reference: Teff 5772 K, log g 4.438, "
                "[M/H] 0, v sin i ≈ 2 km/s; paper's HARPS-N Sun: ResNet 5791.6 ± 140.1 K, "
                "4.72 ± 0.28, 0.035 ± 0.15, 0.76 ± 1.76 km/s" + (
                    f"; `{REAL_VARIANT}` never sees a line mask made from the Sun and "
                    "Arcturus: the Sun is a calibrator of it, read without its own mask in "
                    "the benchmark table below" if profile.line_mask else "") + ")", ""]
        out += table4_block(sun["results"])
    stars = _load(profile, "09_benchmark_stars")
    if stars is not None:
        out += ["", f"**Benchmark stars** (notebook 09; Gaia FGK benchmark stars and the Sun, "
                f"references without spectroscopy; `predict`'s default `"
                f"{stars['results']['default_model']}`; Δ = answer − reference, a star's Δ the "
                f"mean of its spectra; *calibrated*: by a calibration fitted without that star. "
                f"These stars are calibrators of the calibration `predict` applies.)", ""]
        out += benchmark_block(stars["results"], short=short)
    out += figures_block(profile, KEY_FIGURES if short else None)
    return "\n".join(out)


def table3_section(results: dict) -> list[str]:
    """Table 3 with its heading (the σ coverage before and after recalibration)."""
    out = ["", "**Table 3 — fraction of test residuals within ±1σ / ±2σ (all labels), before "
            "and after the σ recalibrations fitted on the validation set** (one scale factor "
            "per label; a quantile map of |error|/σ)", ""]
    return out + table3_block(results)


def _markers(profile: Profile) -> tuple[str, str]:
    return f"<!-- results:{profile.name}:start -->", f"<!-- results:{profile.name}:end -->"


def update_pages(profile: Profile) -> list[str]:
    """Rewrite the profile's results block in every file of :data:`PAGES`; returns the files
    that changed. Raises ``ValueError`` (and writes nothing) if a file lacks the markers."""
    start, end = _markers(profile)
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    texts = {name: (paths.root / name).read_text() for name in PAGES}
    for name, text in texts.items():
        if not pattern.search(text):
            raise ValueError(f"{name} has no {start} … {end} block")
    blocks = {name: f"{start}\n{results_section(profile, short=short)}\n{end}"
              for name, short in PAGES.items()}
    new = {name: pattern.sub(lambda _: blocks[name], text) for name, text in texts.items()}
    changed = [name for name in PAGES if new[name] != texts[name]]
    for name in changed:
        (paths.root / name).write_text(new[name])
    return changed


def page_block(profile: Profile, name: str = "README.md") -> str | None:
    """The text between the profile's markers in the file ``name`` of :data:`PAGES` (None if
    absent)."""
    start, end = (re.escape(m) for m in _markers(profile))
    match = re.search(f"{start}\n(.*?)\n{end}", (paths.root / name).read_text(), re.S)
    return match.group(1) if match else None

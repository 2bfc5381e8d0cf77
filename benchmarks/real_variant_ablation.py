"""Why ``resnet_diagonal_real`` reads real stars worse than ``resnet_diagonal``: one change at a time.

Each run fine-tunes ``resnet_diagonal_real`` from the shipped ``models/<profile>/resnet_diagonal.pt``
exactly as the profile does (``experiments.train_variants``, ``init_from_base``) with **one**
change against the setting shipped until stop 34 (:data:`PREVIOUS_REAL`: ``profiles.REAL_SPECTRA``
without its line-strength errors; ``variant_epochs`` 40 for the ``cpu`` profile): the SNR
range off (SNR 20 as the base), no CCD gap, no RV jitter, no continuum curvature, 10 epochs
instead of 40, no realism at all (fine-tuning alone), that setting again with another seed (how
far two runs of one setting land apart), and line-strength errors added
(:class:`~paper_lib.echelle.realism.Realism` ``line_strength_sigma``): 0.23 (0.1 dex of log gf,
today's ``REAL_SPECTRA``; also with seed 2022) and 0.46 (0.2 dex); and 0.23 with the training
spectra interpolated between the grid's nodes by the Catmull–Rom spline instead of trilinearly
(``Profile.interpolation``; the base network stays the trilinear one). The two shipped networks
are evaluated as they are (again whenever their weights change).

Every network is read on the benchmark stars **raw** (``calibrate=False``: the network's answer,
no label calibration; ``paper_lib.evaluation.benchmark_stars``): median |Δ| over the counted
stars (Vega is not counted) of Teff [K], log g [dex], [M/H] [dex], the mean Δ log g [dex], and
the median |Δ| after the label calibration of :mod:`paper_lib.evaluation.label_calibration`
judged leaving one star out (LOSO: what the network's answers are worth once calibrated, as
``predict`` reports them), the fraction of (spectrum, label) pairs within 2 σ, σ being the
network's own σ (no σ calibration, no systematic model: the new runs have neither) and the
reference's error; for the shipped networks also within 2 σ_total as ``predict`` gives it
(their σ calibration and systematic model).
Synthetic accuracy, MAE in physical units (Teff K / log g dex / [M/H] dex): on the run's own
validation set (last epoch of its history, ``val_mae`` × ``labels.label_span()``; its own
realism, so not comparable between runs), and on two fixed sets for all: the profile's SNR-20
validation set (``experiments.validation_batch``, that of ``resnet_diagonal``) and the
``_real`` validation set with the realism of :data:`PREVIOUS_REAL` (lines as synthesised).
A second table gives each benchmark spectrum's raw Δ with the share of its pixels that the
model input fills (the HARPS CCD gap).

    python benchmarks/real_variant_ablation.py [--profile cpu] [--out DIR] [--runs NAME ...]

Each run trains in ``<out>/<run>/`` (its own folder: a checkpoint there resumes only the same
setting; ``settings.json`` guards that) and its result goes to ``<out>/<run>.json``; a run whose
JSON exists is not repeated. Default ``--out``: ``<cache>/real_variant_ablation/<profile>``.
Training seconds: the sum of the history's per-epoch ``train_seconds`` (a resumed run counts each
epoch once); they depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from paper_lib import experiments, paths
from paper_lib.evaluation import benchmark_stars as bs
from paper_lib.fileio import atomic_write_json, file_sha256
from paper_lib.labels import label_span
from paper_lib.predict import BATCH_SIZE, Predictor, predict
from paper_lib.predict.flags import training_bounds
from paper_lib.predict.inputs import prepare
from paper_lib.predict.rows import label_rows
from paper_lib.profiles import REAL_SPECTRA, REAL_VARIANT, get_profile
from paper_lib.provenance import cpu_model, git_commit
from paper_lib.training.checkpoints import history_path, load_model

BASE = "resnet_diagonal"
LABELS = ("teff", "logg", "mh")
# the setting the runs change one thing of: REAL_SPECTRA as it was before the line-strength
# errors (shipped until stop 34; the runs below found what that setting costs)
PREVIOUS_REAL = {k: v for k, v in REAL_SPECTRA.items() if not k.startswith("line_strength")}
# run: (what changes against PREVIOUS_REAL, Realism options changed (None: realism off),
# other profile fields changed); in the order they run, the most telling first
RUNS = {
    "shipped": ("nothing (the previous REAL_SPECTRA, 40 epochs)", {}, {}),
    "none": ("Realism off (fine-tuning alone, 40 epochs)", None, {}),
    "no_snr_range": ("snr_range None: SNR 20 as the base", {"snr_range": None}, {}),
    "short": ("10 epochs instead of 40", {}, {"epochs": 10}),
    "no_gap": ("gap_probability 0", {"gap_probability": 0.0}, {}),
    "no_rv_jitter": ("rv_jitter_kms 0", {"rv_jitter_kms": 0.0}, {}),
    "no_curvature": ("curvature_max 0", {"curvature_max": 0.0}, {}),
    "shipped_seed": ("nothing, seed 2022 (run-to-run spread)", {}, {"seed": 2022}),
    "line_strength": ("+ line-strength errors, σ(ε) 0.23 (0.1 dex of log gf): today's "
                      "REAL_SPECTRA", {"line_strength_sigma": 0.23}, {}),
    "line_strength_seed": ("+ line-strength errors σ(ε) 0.23, seed 2022 (run-to-run spread)",
                           {"line_strength_sigma": 0.23}, {"seed": 2022}),
    "line_strength_0.46": ("+ line-strength errors, σ(ε) 0.46 (0.2 dex of log gf)",
                           {"line_strength_sigma": 0.46}, {}),
    "line_strength_cubic": ("+ line-strength errors σ(ε) 0.23, the training spectra "
                            "interpolated between nodes by the Catmull–Rom spline, not trilinear",
                            {"line_strength_sigma": 0.23}, {"interpolation": "cubic"}),
}
SHIPPED = {BASE: "shipped base network, no fine-tuning",
           REAL_VARIANT: "shipped _real network (models/<profile>)"}


def run_profile(profile, run: str):
    """The profile of ``run``: the shipped one with its single change."""
    _, real, other = RUNS[run]
    epochs = other.get("epochs", profile.variant_epochs.get(REAL_VARIANT, profile.finetune_epochs))
    changed = {k: v for k, v in other.items() if k != "epochs"}
    return dataclasses.replace(
        profile, real={} if real is None else {**PREVIOUS_REAL, **real},
        variant_epochs={**profile.variant_epochs, REAL_VARIANT: epochs}, **changed)


def run_settings(profile) -> dict:
    """What a run's folder was trained with (JSON-ready): realism, epochs, seed."""
    extra = {} if profile.interpolation == "linear" else {"interpolation": profile.interpolation}
    return json.loads(json.dumps({"real": profile.real, "seed": profile.seed,
                                  "epochs": profile.variant_epochs[REAL_VARIANT], **extra}))


def train_run(profile, grid, folder: Path, base_weights: Path):
    """Fine-tune ``resnet_diagonal_real`` of ``profile`` in ``folder`` from ``base_weights``
    (resuming a checkpoint there only if it was made with the same settings; a finished one
    is only loaded). Returns the model and its history (``train_seconds`` per epoch)."""
    settings, guard = run_settings(profile), folder / "settings.json"
    if guard.exists() and json.loads(guard.read_text()) != settings:
        raise ValueError(f"{folder} holds a run with other settings ({guard}): delete it")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(guard, settings)
    shutil.copyfile(base_weights, folder / f"{BASE}.pt")
    result = experiments.train_variants([REAL_VARIANT], profile, grid, folder,
                                        progress=False)[REAL_VARIANT]
    return result.model, result.history


def benchmark_inputs(spectra) -> list:
    """Prepared network inputs of the benchmark spectra (read once for every network)."""
    return [prepare(s.path, None, None, None, None) for s in spectra]


def spectrum_name(spectrum, model_input) -> str:
    """``Sun (HARPS, gap 7.7 %)``: the star, its instrument and the share of its pixels that
    the model input fills (the HARPS CCD gap, mostly)."""
    instrument = spectrum.instrument.split()[0]
    instrument = {"solar": "FTS atlas"}.get(instrument, instrument)
    return (f"{spectrum.star.split(' (')[0]} ({instrument}, "
            f"gap {100 * model_input.gap_fraction:.1f} %)")


def benchmark_numbers(model, profile, spectra, inputs) -> dict:
    """Raw answers of ``model`` on the benchmark stars, with the network's own σ: the summary
    (median |Δ|, mean Δ over counted stars; fraction within 2 σ) and each spectrum's Δ
    (Teff K, log g dex, [M/H] dex)."""
    predictor = Predictor(REAL_VARIANT, model, "diagonal", None, None, training_bounds(profile),
                          profile=profile.name)
    table = pd.DataFrame(label_rows(predictor, inputs, BATCH_SIZE, calibrate=False))
    table = bs.with_references(table, spectra)
    return {"summary": bs.summary(table),
            "loso": bs.summary(bs.loso_calibrated(table))["median_abs_delta"],
            "per_spectrum": {spectrum_name(s, i): [float(row[f"delta_{k}"]) for k in LABELS]
                             for s, i, (_, row) in zip(spectra, inputs, table.iterrows())}}


def mae(model, batch) -> list[float]:
    """MAE of Teff [K], log g [dex], [M/H] [dex] of ``model`` on a synthetic Batch."""
    mean, _, _ = predict(model, batch.noisy)
    return np.abs(mean - batch.labels_physical.numpy()).mean(axis=0)[:3].tolist()


def synthetic_sets(profile, grid) -> dict:
    """The fixed synthetic sets every network is measured on (profile.n_val spectra each): the
    SNR-20 validation set and the ``_real`` one with the realism of :data:`PREVIOUS_REAL` (its
    lines as synthesised: the set every run of this script has been measured on)."""
    previous = dataclasses.replace(profile, real=PREVIOUS_REAL)
    return {"mae_snr20": experiments.validation_batch(grid, profile),
            "mae_real": experiments.validation_batch(grid, previous, real=True)}


def evaluate(model, history, profile, bench, sets) -> dict:
    """Benchmark-star and synthetic numbers of one network (``history``: its training
    history, for the MAE on its own validation set)."""
    record = benchmark_numbers(model, profile, *bench)
    record["val_mae_own"] = (np.asarray(history[-1]["val_mae"]) * label_span())[:3].tolist()
    record.update({name: mae(model, batch) for name, batch in sets.items()})
    return record


def provenance_fields() -> dict:
    """Commit, CPU and torch threads of this process (where the numbers came from)."""
    commit = git_commit()
    return {"commit": commit["commit"][:7], "dirty": commit["dirty"], "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}


def do_run(run: str, profile, grid, out: Path, bench, sets) -> dict:
    """Train and evaluate one ablation run; its record."""
    changed = run_profile(profile, run)
    base_weights = experiments.models_dir(profile) / f"{BASE}.pt"
    model, history = train_run(changed, grid, out / run, base_weights)
    record = {"run": run, "change": RUNS[run][0], "settings": run_settings(changed),
              "train_seconds": float(sum(h["train_seconds"] for h in history)),
              **evaluate(model, history, profile, bench, sets)}
    return {**record, **provenance_fields()}


def shipped_row(variant: str, profile, bench, sets) -> dict:
    """Evaluate a shipped network of ``models/<profile>/`` (no training here)."""
    path = experiments.models_dir(profile) / f"{variant}.pt"
    history = json.loads(history_path(path).read_text())["history"]
    record = {"run": f"{variant} (shipped)", "change": SHIPPED[variant], "train_seconds": None,
              "weights_sha256": file_sha256(path),
              **evaluate(load_model(path), history, profile, bench, sets)}
    table = bs.predict_benchmarks(bench[0], variant, profile=profile.name, calibrate=False,
                                  workers=1)  # predict's σ_total: its σ calibration, σ_sys
    record["within_2sigma_predict"] = bs.summary(table)["within_2sigma"]
    return {**record, **provenance_fields()}


def cached(path: Path, make, weights: Path, profile, bench, *, shipped: bool = False) -> dict:
    """The record in ``path``, or ``make()`` written there; a stored record of an older version
    of this script without the calibrated (LOSO) medians gets them from ``weights``. A
    ``shipped`` network's record is made again when its weights' SHA-256 changed."""
    if path.exists():
        record = json.loads(path.read_text())
        if shipped and record.get("weights_sha256") != file_sha256(weights):
            record = make()  # a shipped network was replaced (or unrecorded): read it again
            atomic_write_json(path, record)
        if "loso" not in record:
            record["loso"] = benchmark_numbers(load_model(weights), profile, *bench)["loso"]
            atomic_write_json(path, record)
        return record
    record = make()
    atomic_write_json(path, record)
    return record


def triple(values, formats=("{:.0f}", "{:.2f}", "{:.2f}")) -> str:
    return " / ".join(f.format(v) for f, v in zip(formats, values))


def table_line(r: dict) -> str:
    """One row of the printed (markdown) table."""
    s = r["summary"]
    seconds = "–" if r["train_seconds"] is None else f"{r['train_seconds']:.0f}"
    return (f"| {r['run']} | {r['change']} | {triple(s['median_abs_delta'][k] for k in LABELS)} | "
            f"{triple(r['loso'][k] for k in LABELS)} | "
            f"{s['mean_delta']['logg']:+.2f} | {s['within_2sigma']:.2f} | "
            f"{triple(r['val_mae_own'])} | {triple(r['mae_snr20'])} | {triple(r['mae_real'])} | "
            f"{seconds} | {r['commit']}{'+' if r['dirty'] else ''} |")


def print_tables(records: list[dict]) -> None:
    """The summary table and each star's raw Δ per run."""
    print("| run | change | median abs Δ Teff / log g / [M/H] (K, dex, dex) | calibrated, one star "
          "left out | mean Δ log g | within 2σ | val MAE own set | MAE SNR-20 set | MAE _real set "
          "| train s | commit |")
    print("|---" * 11 + "|")
    for record in records:
        print(table_line(record))
    names = list(records[0]["per_spectrum"])
    print("\nper spectrum, raw Δ Teff / log g / [M/H] (answer − reference)")
    print("| run | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for r in records:
        deltas = [triple(r["per_spectrum"][n], ("{:+.0f}", "{:+.2f}", "{:+.2f}")) for n in names]
        print(f"| {r['run']} | " + " | ".join(deltas) + " |")


def main(argv=None) -> None:
    from paper_lib.synthetic.grid import load_grid

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="folder of the runs' results")
    parser.add_argument("--runs", nargs="*", choices=list(RUNS), default=list(RUNS))
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    out = args.out or paths.cache_dir() / "real_variant_ablation" / profile.name
    out.mkdir(parents=True, exist_ok=True)
    grid = load_grid(profile)
    spectra = bs.benchmark_set()
    bench, sets = (spectra, benchmark_inputs(spectra)), synthetic_sets(profile, grid)
    models = experiments.models_dir(profile)
    records = [cached(out / f"shipped_{v}.json", lambda v=v: shipped_row(v, profile, bench, sets),
                      models / f"{v}.pt", profile, bench, shipped=True) for v in SHIPPED]
    for run in args.runs:
        print(f"run {run}: {RUNS[run][0]}", flush=True)
        record = cached(out / f"{run}.json",
                        lambda run=run: do_run(run, profile, grid, out, bench, sets),
                        out / run / f"{REAL_VARIANT}.pt", profile, bench)
        records.append({**record, "change": RUNS[run][0]})  # as described today
    print(f"\nprofile {profile.name}; results in {out}; CPU {records[-1]['cpu']}, "
          f"{records[-1]['cpu_count']} cores")
    print_tables(records)
    for r in records:
        if "within_2sigma_predict" in r:
            print(f"{r['run']}: within 2σ_total of predict (its σ calibration and systematic "
                  f"model, raw labels): {r['within_2sigma_predict']:.2f}")


if __name__ == "__main__":
    main()

"""What more compute buys: test MAE at SNR 20 against the training budget of the headline networks.

For each variant and each budget (a fraction of ``--steps`` optimiser steps of the profile's
batch size), a fresh network is trained with the profile's settings and schedule (the whole
schedule shrunk to the budget, as a real run of that length would be) through
``experiments.training_source`` and ``training.loop.fit``; then its MAE on the first ``--n``
spectra of the profile's fixed SNR-20 test set is measured. Spectra seen, training minutes and
the four MAEs are printed per run, written to ``results/<profile>/bench_learning_curve.json``
and drawn into ``figures/<profile>/bench_learning_curve.png`` (dotted: 1.5× the paper's row).

    python benchmarks/bench_learning_curve.py [--profile cpu] [--steps 8000] [--quick]
        [--variants resnet_diagonal attention_diagonal] [--grid PATH]

``--grid`` trains on another grid file (e.g. the shared 5030–5370 Å reference grid, padded with
continuum) instead of the profile's. The last line is ``best: <variant> <MAE Teff> K`` (largest
budget). Timings depend on the machine and on what else runs: the hardware is recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch

from paper_lib import experiments, paths
from paper_lib.fileio import atomic_write_json
from paper_lib.evaluation import figures, tables
from paper_lib.labels import LABEL_NAMES
from paper_lib.predict import predict
from paper_lib.profiles import get_profile
from paper_lib.provenance import provenance
from paper_lib.synthetic.grid import Grid, load_grid
from paper_lib.training.variants import train_variant

FRACTIONS = (0.125, 0.25, 0.5, 1.0)


def run_budget(profile, grid, variant: str, steps: int, test, pad: bool) -> dict:
    """Train ``variant`` from scratch for ``steps`` steps; its test MAE and cost."""
    epochs = max(1, steps // profile.steps_per_epoch)
    sized = dataclasses.replace(profile, epochs=epochs, variant_epochs={}, init_from_base=False)
    source = _padded_source(grid, sized) if pad else experiments.training_source(grid, sized)
    val = test[: min(len(test), 256)]
    with tempfile.TemporaryDirectory() as folder:
        result = train_variant(variant, sized, source, val, folder, progress=False)
    mean, _, _ = predict(result.model, test.noisy)
    mae = np.abs(mean - test.labels_physical.numpy()).mean(axis=0)
    minutes = sum(h["train_seconds"] for h in result.history) / 60.0
    return {"variant": variant, "steps": epochs * profile.steps_per_epoch,
            "spectra": epochs * profile.steps_per_epoch * profile.batch_size,
            "minutes": round(minutes, 3), "mae": dict(zip(LABEL_NAMES, mae.round(4).tolist()))}


def _padded_source(grid, profile):
    from paper_lib.echelle.generator import SpectrumGenerator

    return SpectrumGenerator(grid, slant_max=profile.slant_max, seed=profile.seed,
                             compile=profile.compile_generator, pad_with_continuum=True,
                             **experiments.data_settings(profile))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=8000, help="largest budget (optimiser steps)")
    parser.add_argument("--variants", nargs="+", default=["resnet_diagonal", "attention_diagonal"])
    parser.add_argument("--n", type=int, default=1000, help="test spectra (SNR 20)")
    parser.add_argument("--grid", default=None, help="another grid FITS file (padded with continuum)")
    parser.add_argument("--quick", action="store_true", help="tiny budgets, a smoke check")
    args = parser.parse_args()
    profile = get_profile(args.profile)
    torch.set_num_threads(1)  # fit trains on one thread and draws batches on the other core
    if args.quick:
        args.steps, args.n = 4 * profile.steps_per_epoch, min(args.n, 64)
    grid = Grid.from_fits(args.grid) if args.grid else load_grid(profile)
    pad = args.grid is not None
    test = experiments.test_batch(grid, profile, n=args.n, pad_with_continuum=pad) if pad \
        else experiments.test_batch(grid, profile, n=args.n)
    runs = []
    for variant in args.variants:
        for fraction in FRACTIONS:
            run = run_budget(profile, grid, variant, max(1, int(fraction * args.steps)), test, pad)
            runs.append(run)
            print(f"{variant:20s} {run['spectra']:8d} spectra {run['minutes']:6.1f} min  "
                  + "  ".join(f"{n} {run['mae'][n]:.4g}" for n in LABEL_NAMES), flush=True)
    curves = [{"variant": v, "spectra": [r["spectra"] for r in runs if r["variant"] == v],
               "minutes": [r["minutes"] for r in runs if r["variant"] == v],
               "val_mae": [[r["mae"][n] for n in LABEL_NAMES] for r in runs if r["variant"] == v]}
              for v in args.variants]
    targets = {v: [1.5 * tables.PAPER_TABLE2[v][n] for n in LABEL_NAMES]
               for v in args.variants if v in tables.PAPER_TABLE2}
    out = paths.figures / profile.name / "bench_learning_curve.png"
    figures.plot_learning_curves(curves, out, targets=targets)
    record = {"runs": runs, "grid": args.grid or "profile", "test_spectra": len(test),
              "provenance": provenance(profile)}
    results = paths.results / profile.name / "bench_learning_curve.json"
    atomic_write_json(results, record)
    print(f"figure: {out}\nresults: {results}")
    best = min((r for r in runs if r["steps"] == max(x["steps"] for x in runs)),
               key=lambda r: r["mae"]["teff"])
    print(f"best: {best['variant']} {best['mae']['teff']:.1f} K")


if __name__ == "__main__":
    main()

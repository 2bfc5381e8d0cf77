"""The development benchmark stars three ways: the network, the fit on the emulator, the fit on a grid.

Stars: ``../shared/data/benchmarks/`` (``references.csv``; the solar flux atlas ``.txt.gz`` is left
out) and the two solar spectra of ``../shared/data/sun/`` (IAU 2015 Sun). For each: Δ = answer −
reference of Teff, log g, [M/H] for the default network, ``predict --refine`` on the emulator and
(with ``--grid``) on the grid, and the emulator fit minus the grid fit. Then the median |Δ| over
the FGK stars (reference Teff < 7000 K) whose fits ended without a fit flag, and the largest
|emulator − grid| (issue 32's goal: within 15 K / 0.03 / 0.02).

    python benchmarks/fit_benchmark_stars.py [--grid FILE] [--emulator FILE] [--pad]

``--emulator``: another emulator file (default ``models/cpu/emulator.pt``); ``--pad``: the grid
is narrower than the orders (the reference grid): pad it with continuum.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_fit import models_folder

from paper_lib import paths
from paper_lib.labels import SUN_REFERENCE
from paper_lib.predict import DEFAULT_MODEL, DEFAULT_PROFILE, Predictor, predict_rows

LABELS = ("teff", "logg", "mh")
GOAL = (15.0, 0.03, 0.02)
FIT_FLAGS = ("refine_failed", "fit_at_bound", "fit_not_converged")


def benchmark_stars() -> list[tuple[str, Path, tuple]]:
    """(star, file, (Teff, log g, [M/H]) reference) of every development benchmark spectrum."""
    folder = paths.shared_file("benchmarks/references.csv").parent
    stars = []
    with open(folder / "references.csv") as table:
        for row in csv.DictReader(table):
            if not row["file"].endswith(".txt.gz"):
                stars.append((row["star"].split(" (")[0], folder / row["file"],
                              (float(row["teff"]), float(row["logg"]), float(row["feh"]))))
    sun = tuple(SUN_REFERENCE[k] for k in LABELS)
    for star, name in (("Sun HARPS", "Sun_HARPS_Ganymede_s1d.fits"),
                       ("Sun UVES", "UVES_Sun-1_cleaned_norm.txt")):
        stars.append((star, paths.shared_file(f"sun/{name}"), sun))
    return stars


def answers(files, predictor, refine) -> tuple[list[dict], float]:
    """Rows of ``files`` and the seconds per file."""
    t0 = time.perf_counter()
    rows = predict_rows(files, predictor, refine=refine, progress=False, workers=1,
                        calibrate=False)  # raw: the benchmark stars are the calibrators
    return rows, (time.perf_counter() - t0) / len(files)


def delta(row, reference) -> np.ndarray:
    return np.array([row[k] for k in LABELS]) - np.array(reference)


def show(d) -> str:
    return f"{d[0]:+5.0f} {d[1]:+5.2f} {d[2]:+5.2f}"


def main(argv=None) -> None:
    from paper_lib.predict.rows import refinement_renderer
    from paper_lib.synthetic.grid import Grid

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", default=None, help="a grid file to fit as well")
    parser.add_argument("--emulator", default=None, help="an emulator file (default: the shipped one)")
    parser.add_argument("--pad", action="store_true", help="pad the grid with continuum")
    args = parser.parse_args(argv)
    stars = benchmark_stars()
    files = [file for _, file, _ in stars]
    with tempfile.TemporaryDirectory() as spare:
        models = models_folder(args.emulator, Path(spare))
        predictor = Predictor.load(DEFAULT_MODEL, DEFAULT_PROFILE, models)
        methods = {"network": answers(files, predictor, False),
                   "emulator": answers(files, predictor, refinement_renderer(None, DEFAULT_PROFILE, models))}
    if args.grid:
        from paper_lib.predict.refine import GridRefiner

        methods["grid"] = answers(files, predictor, GridRefiner(Grid.from_fits(args.grid),
                                                                pad_with_continuum=args.pad))
    print(f"Δ = answer − reference (Teff K, log g, [M/H]); {', '.join(methods)}"
          + ("; emulator − grid" if args.grid else ""))
    good = {name: [] for name in methods}
    differences = []
    for k, (star, file, reference) in enumerate(stars):
        line = f"{star:16s} {reference[0]:5.0f} {reference[1]:4.2f} {reference[2]:+5.2f} |"
        for name, (rows, _) in methods.items():
            row = rows[k]
            flags = [f for f in row["flags"] if f in FIT_FLAGS]
            line += f" {show(delta(row, reference))} {','.join(flags):14s}|"
            if reference[0] < 7000 and not flags:
                good[name].append(np.abs(delta(row, reference)))
        if args.grid:
            pair = [methods[m][0][k] for m in ("emulator", "grid")]
            if not any(f in FIT_FLAGS for r in pair for f in r["flags"]):
                differences.append(delta(pair[0], [pair[1][k] for k in LABELS]))
                line += f" {show(differences[-1])}"
        print(line)
    for name, (rows, seconds) in methods.items():
        median = np.median(good[name], axis=0) if good[name] else [np.nan] * 3
        print(f"{name}: median |Δ| over {len(good[name])} FGK stars without a fit flag: "
              f"{median[0]:.0f} K, {median[1]:.2f}, {median[2]:.2f}; {seconds:.2f} s a file")
    if differences:
        worst = np.abs(differences).max(axis=0)
        print(f"emulator − grid over {len(differences)} stars, largest |Δ|: {worst[0]:.1f} K, "
              f"{worst[1]:.3f}, {worst[2]:.3f} (goal {GOAL[0]:g} K, {GOAL[1]:g}, {GOAL[2]:g})")


if __name__ == "__main__":
    main()

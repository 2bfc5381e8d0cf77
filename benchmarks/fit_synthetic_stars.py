"""Emulator fit vs grid fit on noisy stars made by the grid itself (where the grid is the truth).

``n`` labels drawn (seeded) from the FGK part of the grid (4000–6800 K, log g 1–4.8, [M/H]
−1.5…+0.4, v sin i 1–10 km/s), rendered by the grid's forward model, with Gaussian noise at
``--snr``; both fits start from the truth moved by (100 K, 0.2, 0.1, 1 km/s) × a standard normal.
Prints each star's errors, then the median and largest |emulator − grid| (issue 32's goal for
real stars: 15 K / 0.03 / 0.02) and the seconds per star of each fit.

    python benchmarks/fit_synthetic_stars.py --grid FILE [--emulator FILE] [--pad] [-n 12]

``--emulator`` default ``models/cpu/emulator.pt``; ``--pad``: the grid is narrower than the
orders (the reference grid).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from paper_lib import paths

BOX = {"teff": (4000.0, 6800.0), "logg": (1.0, 4.8), "mh": (-1.5, 0.4)}
START_SCATTER = np.array([100.0, 0.2, 0.1, 1.0])  # K, dex, dex, km/s


def main(argv=None) -> None:
    from paper_lib.predict.fit import EmulatorFitter
    from paper_lib.predict.refine import GridRefiner
    from paper_lib.synthetic.grid import Grid

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", required=True, help="the grid file the emulator was trained on")
    parser.add_argument("--emulator", default=str(paths.models / "cpu" / "emulator.pt"))
    parser.add_argument("--pad", action="store_true", help="pad the grid with continuum")
    parser.add_argument("-n", type=int, default=12, help="stars (default 12)")
    parser.add_argument("--snr", type=float, default=100.0, help="per pixel (default 100)")
    args = parser.parse_args(argv)
    grid = Grid.from_fits(args.grid)
    on_grid, on_emulator = GridRefiner(grid, pad_with_continuum=args.pad), EmulatorFitter.load(args.emulator)
    rng = np.random.default_rng(7)
    truth = np.column_stack([grid.sample_labels(args.n, rng, box=BOX), rng.uniform(1.0, 10.0, args.n)])
    images = on_grid.render(truth) + rng.normal(0.0, 1.0 / args.snr, (args.n, 8, 4096))
    masks = np.ones(images.shape, dtype=bool)
    start = truth + rng.normal(0.0, 1.0, truth.shape) * START_SCATTER
    start[:, 3] = np.clip(start[:, 3], 0.0, 30.0)
    fits, seconds = {}, {}
    for name, fitter in (("grid", on_grid), ("emulator", on_emulator)):
        t0 = time.perf_counter()
        fits[name] = [fitted for fitted, _ in fitter.fit(images, masks, start)]
        seconds[name] = (time.perf_counter() - t0) / args.n
    differences = []
    print("truth (Teff, log g, [M/H], v sin i) | grid − truth | emulator − truth | emulator − grid")
    for k, true in enumerate(truth):
        grid_fit, emulator_fit = fits["grid"][k], fits["emulator"][k]
        if grid_fit is None or emulator_fit is None:
            print(f"{np.round(true, 2)}: a fit failed (outside the grid)")
            continue
        differences.append(emulator_fit.labels - grid_fit.labels)
        print(f"{np.round(true, 2)} | {np.round(grid_fit.labels - true, 3)} | "
              f"{np.round(emulator_fit.labels - true, 3)} | {np.round(differences[-1], 3)}")
    differences = np.abs(differences)
    print(f"|emulator − grid| over {len(differences)} stars at SNR {args.snr:g}: median "
          f"{np.round(np.median(differences, 0), 3)}, largest {np.round(differences.max(0), 3)} "
          "(Teff K, log g, [M/H], v sin i km/s)")
    print(f"seconds per star: grid {seconds['grid']:.2f}, emulator {seconds['emulator']:.2f} "
          f"(a batch of {args.n})")


if __name__ == "__main__":
    main()

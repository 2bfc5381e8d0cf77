"""The synthetic gap of the real Sun for the previous and the current synthesis physics.

Synthesises the 14 smoke nodes around the Sun with the previous physics (v_micro 2 km/s,
Gaia-ESO atoms only; ``synthesize_node(vmicro=2.0, molecules=False, supplement=False)``, about a
minute on 2 cores), takes the current smoke grid (``python -m paper_lib synth --profile smoke``),
and measures both real solar spectra against each with :func:`paper_lib.evaluation.gap.measure_gap`
(noise-free synthetic image at the Sun's reference labels; [M/H] scanned from −0.5 to 0):

    python benchmarks/gap_physics.py

prints one row per physics and spectrum (RMS, bias, depth ratio, missing-line fraction, best
[M/H]); the last line is ``rms: <HARPS RMS, previous> -> <HARPS RMS, current with macroturbulence>``.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch

from paper_lib import experiments, paths
from paper_lib.evaluation import gap
from paper_lib.labels import LABEL_NAMES, SUN_REFERENCE
from paper_lib.observed.model_input import to_model_input
from paper_lib.observed.read import read_spectrum
from paper_lib.profiles import SMOKE_NODES, get_profile
from paper_lib.synthetic.grid import Grid, load_grid
from paper_lib.synthetic.turbospectrum import grid_wavelengths, synthesize_node

SPECTRA = {"HARPS Sun": "sun/Sun_HARPS_Ganymede_s1d.fits", "UVES Sun": "sun/UVES_Sun-1_cleaned_norm.txt"}


def previous_physics(node) -> np.ndarray:
    return synthesize_node(*node, vmicro=2.0, molecules=False, supplement=False)[1]


def main() -> None:
    torch.set_num_threads(1)
    nodes = [tuple(map(float, n)) for n in SMOKE_NODES]
    with ProcessPoolExecutor(2) as pool:
        flux = np.array(list(pool.map(previous_physics, nodes)), dtype=np.float32)
    grids = {"previous (v_micro 2 km/s, Gaia-ESO atoms), no macroturbulence":
             (Grid(grid_wavelengths(), nodes, flux, source="previous physics"), False)}
    current = load_grid(get_profile("smoke"))
    grids["current synthesis, no macroturbulence"] = (current, False)
    grids["current synthesis + macroturbulence"] = (current, True)
    sun = np.array([SUN_REFERENCE[n] for n in LABEL_NAMES])
    inputs = {name: to_model_input(read_spectrum(paths.shared_file(f)), template=current)
              for name, f in SPECTRA.items()}
    rms = {}
    for label, (grid, macro) in grids.items():
        def render(labels, grid=grid, macro=macro):
            return experiments.synthetic_images(grid, labels, macroturbulence=macro)
        for name, inp in inputs.items():
            g = gap.measure_gap(inp, render, sun, gap.mh_values(-0.5, 0.0))
            rms[(label, name)] = g["rms"]
            print(f"{label:62s} {name:9s} RMS {g['rms']:.4f} bias {g['bias']:+.4f} depth ratio "
                  f"{g['depth_ratio']:.3f} missing lines {100 * g['missing_line_fraction']:.1f} % "
                  f"best [M/H] {g['best_mh']:+.2f}", flush=True)
    first, last = list(grids)[0], list(grids)[-1]
    print(f"rms: {rms[(first, 'HARPS Sun')]:.4f} -> {rms[(last, 'HARPS Sun')]:.4f}")


if __name__ == "__main__":
    main()

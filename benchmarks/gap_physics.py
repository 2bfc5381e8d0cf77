"""The synthetic gap of the real Sun for the previous and the current synthesis physics.

Synthesises the 14 smoke nodes around the Sun with the previous physics (v_micro 2 km/s,
Gaia-ESO atoms only; ``synthesize_node(vmicro=2.0, molecules=False, supplement=False)``, about a
minute on 2 cores), takes the current smoke grid (``python -m paper_lib synth --profile smoke``),
and measures both real solar spectra against each with :func:`paper_lib.evaluation.gap.measure_gap`
(noise-free synthetic image at the Sun's reference labels; [M/H] scanned from −0.5 to 0):

    python benchmarks/gap_physics.py

prints one row per physics and spectrum (RMS, bias, depth ratio, missing-line fraction, best
[M/H]); the last line is ``rms: <HARPS RMS, previous> -> <HARPS RMS, current with macroturbulence>``.

    python benchmarks/gap_physics.py --solar-selected

adds a diagnostic row, **not a physics we adopt**: the current synthesis with only those
Gaia-ESO lines that the VALD3 solar master list also holds (a list selected for the Sun: lines
≥ 1 % deep in it), i.e. without the ~10 000 weak Gaia-ESO lines the Sun-selected list lacks.
It measures how much absorption those weak lines put into the synthetic Sun.

    python benchmarks/gap_physics.py --line-check

prints, for the ten strongest Gaia-ESO lines that :mod:`paper_lib.synthetic.linecheck` leaves
out, their equivalent width in the solar model and the line depth (1 − minimum of the
normalised flux within ± 0.06 Å) in the unbroadened synthesis of the 5750 K / 4.5 / 0.0 node
with every Gaia-ESO line and in the two real solar spectra (HARPS: continuum = 97th percentile
within ± 2 Å). A look at the real Sun, not an input of the check.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from paper_lib import experiments, paths
from paper_lib.evaluation import gap
from paper_lib.labels import LABEL_NAMES, SUN_REFERENCE
from paper_lib.observed.model_input import to_model_input
from paper_lib.observed.read import read_spectrum
from paper_lib.profiles import SMOKE_NODES, get_profile
from paper_lib.synthetic.atmospheres import extract_atmospheres
from paper_lib.synthetic.grid import Grid, load_grid
from paper_lib.synthetic.linelists import (VALD_FILE, atomic_species, has_line_within,
                                           line_wavelengths, mgh_linelist,
                                           read_turbospectrum_blocks, trimmed_gaia_eso,
                                           vald_supplement, write_blocks)
from paper_lib.synthetic.turbospectrum import (WAVE_RANGE, grid_wavelengths,
                                               synthesize_from_files, synthesize_node)
from paper_lib.synthetic.turbulence import vmicro_kms

CURRENT = "current synthesis + macroturbulence"  # what training sees: the row the last line reports
SPECTRA = {"HARPS Sun": "sun/Sun_HARPS_Ganymede_s1d.fits", "UVES Sun": "sun/UVES_Sun-1_cleaned_norm.txt"}


def previous_physics(node) -> np.ndarray:
    return synthesize_node(*node, vmicro=2.0, molecules=False, supplement=False,
                           checked=False)[1]


def solar_selected_gaia_eso(target: Path) -> Path:
    """The Gaia-ESO lines (cut to the synthesis range) that the VALD3 solar list also holds
    (same element and ion within ``SAME_LINE_A``), written in Turbospectrum's format to ``target``."""
    vald = line_wavelengths(paths.shared_file(VALD_FILE))
    blocks = []
    for header, name, body in read_turbospectrum_blocks(trimmed_gaia_eso(WAVE_RANGE)):
        ref = vald.get(atomic_species(header), np.empty(0))
        blocks.append((header, name, [r for r in body
                                      if has_line_within(ref, float(r.split(None, 1)[0]))]))
    return write_blocks(blocks, target)


def solar_selected_node(node, linelists) -> np.ndarray:
    teff, logg, mh = node
    atmosphere = extract_atmospheres([node], paths.cache_dir() / "atmospheres")
    return synthesize_from_files(node, next(iter(atmosphere.values())), linelists,
                                 vmicro=vmicro_kms(teff, logg, mh))[1]


def solar_selected_grid(nodes, folder: Path) -> Grid:
    folder.mkdir(parents=True, exist_ok=True)
    lists = [solar_selected_gaia_eso(folder / "gaia_eso_in_vald3_solar.txt"),
             vald_supplement(WAVE_RANGE), mgh_linelist(WAVE_RANGE)]
    with ProcessPoolExecutor(2) as pool:
        flux = np.array(list(pool.map(solar_selected_node, nodes, [lists] * len(nodes))),
                        dtype=np.float32)
    return Grid(grid_wavelengths(), nodes, flux, source="diagnostic: Sun-selected Gaia-ESO lines")


def _depth(wave, flux, centre, half_width=0.06, continuum_window=None) -> float:
    """1 − min(flux / continuum) within ``centre`` ± ``half_width`` Å (NaN where no data)."""
    near = (np.abs(wave - centre) <= half_width) & np.isfinite(flux) & (flux > 0)
    if not near.any():
        return float("nan")
    continuum = 1.0
    if continuum_window:
        window = (np.abs(wave - centre) <= continuum_window) & np.isfinite(flux) & (flux > 0)
        continuum = np.percentile(flux[window], 97)
    return float(1.0 - flux[near].min() / continuum)


def line_check_against_the_sun(count: int = 10) -> None:
    from paper_lib.synthetic.linecheck import dropped_lines

    strongest = sorted(dropped_lines(WAVE_RANGE), key=lambda d: -d["ew_mA"])[:count]
    wave, flux = synthesize_node(5750.0, 4.5, 0.0, checked=False)
    real = {name: read_spectrum(paths.shared_file(f)) for name, f in SPECTRA.items()}
    real = {name: (np.asarray(s.wave, float).ravel(), np.asarray(s.flux, float).ravel())
            for name, s in real.items()}
    print(f"{'line':>16s} {'EW mA':>7s} {'synthetic':>9s} " + " ".join(f"{n:>9s}" for n in real))
    for line in strongest:
        centre = line["wave_A"]
        depths = [_depth(w, f, centre, continuum_window=2.0) for w, f in real.values()]
        print(f"Z={line['species'][0]:2d} ion {line['species'][1]} {centre:9.3f} "
              f"{line['ew_mA']:7.1f} {_depth(wave, flux, centre):9.2f} "
              + " ".join(f"{d:9.2f}" for d in depths), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--solar-selected", action="store_true",
                        help="add the diagnostic row with the Sun-selected Gaia-ESO lines")
    parser.add_argument("--line-check", action="store_true",
                        help="only compare the strongest lines the line check drops with the "
                             "real Sun")
    args = parser.parse_args()
    if args.line_check:
        line_check_against_the_sun()
        return
    torch.set_num_threads(1)
    nodes = [tuple(map(float, n)) for n in SMOKE_NODES]
    with ProcessPoolExecutor(2) as pool:
        flux = np.array(list(pool.map(previous_physics, nodes)), dtype=np.float32)
    grids = {"previous (v_micro 2 km/s, Gaia-ESO atoms), no macroturbulence":
             (Grid(grid_wavelengths(), nodes, flux, source="previous physics"), False)}
    current = load_grid(get_profile("smoke"))
    grids["current synthesis, no macroturbulence"] = (current, False)
    grids[CURRENT] = (current, True)
    if args.solar_selected:
        grids["diagnostic, not adopted: only Gaia-ESO lines in the VALD3 solar list"] = (
            solar_selected_grid(nodes, paths.cache_dir() / "work" / "gap_physics"), True)
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
    first = list(grids)[0]
    print(f"rms: {rms[(first, 'HARPS Sun')]:.4f} -> {rms[(CURRENT, 'HARPS Sun')]:.4f}")


if __name__ == "__main__":
    main()

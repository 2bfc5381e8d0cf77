"""The synthetic gap of the real Sun under each physics variant: is another published input better?

For the grid's physics and each variant of :mod:`paper_lib.synthetic.variants` (MARCS
atmospheres, AGSS09 abundances, VALD3 log gf, ξ + 0.2 km/s, Valenti & Fischer ζ, the SME code), the 12 smoke
nodes around the Sun (5500–6000 K, log g 4.0–4.5, [M/H] −0.5–0; the variant node files of
``python -m paper_lib systematics`` are reused, missing ones synthesised) make a small grid, and
both real solar spectra are measured against it with the code of notebook 06:

* the gap at the Sun's reference labels (:func:`paper_lib.evaluation.gap.measure_gap`): RMS,
  depth ratio real/synthetic, best-matching [M/H] with Teff, log g, v sin i held;
* the weak-line excess: median log(EW_real / EW_synthetic) of isolated VALD3 lines of 5–20 and
  20–50 mÅ (:func:`~paper_lib.evaluation.gap.line_strength_excess`; negative = ours too strong);
* the four-label least-squares fit (:func:`~paper_lib.evaluation.gap.label_scan`): its best
  labels and RMS;
* ``predict``'s default network (committed ``cpu`` weights) on the noise-free synthetic Sun.

    python benchmarks/physics_variants_gap.py [--workers 2]

The last line is ``best_mh_harps: <grid's> -> <MARCS'>``. Nothing here changes the physics; a
variant better on both spectra by every measure would be a candidate for the default.
"""

from __future__ import annotations

import argparse
import functools

import numpy as np

from paper_lib import experiments, paths, systematic_runs
from paper_lib.evaluation import gap
from paper_lib.labels import LABEL_NAMES, SUN_REFERENCE
from paper_lib.observed.model_input import to_model_input
from paper_lib.observed.read import read_spectrum
from paper_lib.predict import DEFAULT_MODEL, predict
from paper_lib.profiles import SMOKE_NODES, get_profile
from paper_lib.synthetic.grid import Grid, load_grid
from paper_lib.synthetic.linelists import VALD_FILE
from paper_lib.synthetic.runner import grid_wavelengths
from paper_lib.synthetic.variants import VARIANTS, build_variant_nodes, vmacro_vf05_kms

SPECTRA = {"HARPS Sun": "sun/Sun_HARPS_Ganymede_s1d.fits", "UVES Sun": "sun/UVES_Sun-1_cleaned_norm.txt"}
SOLAR_NODES = [tuple(map(float, n)) for n in SMOKE_NODES if 5500 <= n[0] <= 6000]


def physics_grids(workers: int) -> dict:
    """{name: (Grid, render options)} for the grid's physics and every variant."""
    smoke = load_grid(get_profile("smoke"))
    grids = {"grid (ATLAS9, GAS07, Gaia-ESO gf, Tsantaki/Adibekyan xi, Doyle zeta)": (smoke, {})}
    for variant in VARIANTS:
        if variant.solar_only:  # one model of the Sun, no grid: benchmarks/solar_mean3d_gap.py
            continue
        if not variant.needs_synthesis:
            grids[variant.name] = (smoke, {"vmacro": vmacro_vf05_kms})
            continue
        found = build_variant_nodes(variant, SOLAR_NODES, workers=workers)
        flux = np.stack([found[n] for n in SOLAR_NODES])
        grids[variant.name] = (Grid(grid_wavelengths(), SOLAR_NODES, flux, source=variant.name), {})
    return grids


def renderer(grid, vmacro=None):
    """labels (n, 4) → noise-free normalised images, with the variant's ζ relation if given."""
    if vmacro is None:
        return functools.partial(experiments.synthetic_images, grid)

    def render(labels):
        labels = np.atleast_2d(labels)
        return systematic_runs.node_images(grid, grid.interpolate(labels[:, :3]), labels,
                                       vmacro(labels[:, 0]))
    return render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sun = np.array([SUN_REFERENCE[n] for n in LABEL_NAMES])
    grids = physics_grids(args.workers)
    template = next(iter(grids.values()))[0]
    inputs = {n: to_model_input(read_spectrum(paths.shared_file(f)), template=template)
              for n, f in SPECTRA.items()}
    lines = gap.vald_solar_lines(paths.shared_file(VALD_FILE))
    model = experiments.load_variant(get_profile("cpu"), DEFAULT_MODEL)
    best = {}
    for label, (grid, options) in grids.items():
        render = renderer(grid, options.get("vmacro"))
        print(f"== {label}")
        for name, inp in inputs.items():
            g = gap.measure_gap(inp, render, sun, gap.mh_values(-0.5, 0.0))
            synthetic = render(sun[None])[0]
            excess = gap.line_strength_excess(gap.isolated_line_ews(inp, synthetic, lines))
            fit = gap.label_scan(inp.image, inp.mask, render,
                                 gap.solar_scan_axes(grid.bounds({"teff": (5500, 6000),
                                                                  "logg": (4.0, 4.5),
                                                                  "mh": (-0.5, 0.0)})))
            answer = predict(model, np.where(inp.mask, synthetic, 1.0)[None].astype(np.float32))[0][0]
            best[(label, name)] = g["best_mh"]
            print(f"  {name:9s} RMS {g['rms']:.4f} depth ratio {g['depth_ratio']:.3f} best [M/H] "
                  f"{g['best_mh']:+.2f} | weak-line excess 5-20 mA {excess['EW 5-20 mÅ'][1]:+.3f} "
                  f"20-50 mA {excess['EW 20-50 mÅ'][1]:+.3f} | least squares "
                  f"{fit['best']} RMS {fit['best_rms']:.5f} | {DEFAULT_MODEL} on the synthetic "
                  f"Sun {answer[0]:.0f} K {answer[1]:.2f} {answer[2]:+.3f}", flush=True)
    first = next(iter(grids))
    print(f"best_mh_harps: {best[(first, 'HARPS Sun')]:+.2f} -> {best[('marcs', 'HARPS Sun')]:+.2f}")


if __name__ == "__main__":
    main()

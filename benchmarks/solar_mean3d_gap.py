"""The real Sun's gap with a ⟨3D⟩ model atmosphere: how much of it is the 1D structure?

The only ⟨3D⟩ model reachable here is one of the Sun (CO5BOLD, averaged over surfaces of equal
optical depth; shipped beside the 1D MARCS model of the Sun from the same source,
``paper_lib/data/solar_models``). This script synthesises both (the ``sun_mean3d`` and
``sun_marcs1d`` physics variants: same Turbospectrum, lines, abundances and ξ; node files in the
cache, reused) and sets them beside the grid's own synthetic Sun (ATLAS9, interpolated in the
smoke grid at the same labels), all rendered at 5777 K, 4.44, [M/H] 0, v sin i 2 km/s:

* the gap to both real solar spectra (:func:`paper_lib.evaluation.gap.gap_metrics`): RMS and
  depth ratio real/synthetic;
* the weak-line excess: median log(EW_real / EW_synthetic) of isolated VALD3 lines per class
  (:func:`~paper_lib.evaluation.gap.line_strength_excess`; negative = ours too strong);
* ``predict``'s default network (committed ``cpu`` weights) on each noise-free synthetic Sun,
  and the ⟨3D⟩ − 1D shift that the ``sun_mean3d`` term of the systematic σ holds.

    python benchmarks/solar_mean3d_gap.py

The last line is ``mean3d_shift: <Teff K> <log g> <[M/H]>`` of the default network. Nothing
here uses the real Sun to choose or scale anything: it is measured, not fitted.
"""

from __future__ import annotations

import numpy as np

from paper_lib import experiments, paths
from paper_lib.evaluation import gap
from paper_lib.observed.model_input import to_model_input
from paper_lib.observed.read import read_spectrum
from paper_lib.predict import DEFAULT_MODEL, predict
from paper_lib.profiles import get_profile
from paper_lib.synthetic.atmospheres import SOLAR_MODEL_NODE
from paper_lib.synthetic.grid import load_grid
from paper_lib.synthetic.linelists import VALD_FILE
from paper_lib.synthetic.variants import build_variant_nodes, get_variant
from paper_lib.systematic_runs import node_images

SPECTRA = {"HARPS Sun": "sun/Sun_HARPS_Ganymede_s1d.fits", "UVES Sun": "sun/UVES_Sun-1_cleaned_norm.txt"}
VSINI_KMS = 2.0
CLASSES = ("EW 5-20 mÅ", "EW 20-50 mÅ", "EW 80-150 mÅ", "Fe I", "other neutral atoms", "ions")


def solar_images(grid) -> dict[str, np.ndarray]:
    """{physics: noise-free normalised image (8, 4096)} of the Sun's three synthetic spectra."""
    labels = np.array([[*SOLAR_MODEL_NODE, VSINI_KMS]])
    images = {"ATLAS9 1D (grid)": experiments.synthetic_images(grid, labels)[0]}
    for name, title in (("sun_marcs1d", "MARCS 1D"), ("sun_mean3d", "CO5BOLD <3D>")):
        flux = build_variant_nodes(get_variant(name), [SOLAR_MODEL_NODE])[SOLAR_MODEL_NODE]
        images[title] = node_images(grid, flux[None], labels)[0]
    return images


def main() -> None:
    grid = load_grid(get_profile("smoke"))
    images = solar_images(grid)
    model = experiments.load_variant(get_profile("cpu"), DEFAULT_MODEL)
    answers, _, _ = predict(model, np.stack(list(images.values())).astype(np.float32))
    lines = gap.vald_solar_lines(paths.shared_file(VALD_FILE))
    print(f"{DEFAULT_MODEL} on the noise-free synthetic Sun ({SOLAR_MODEL_NODE}, v sin i "
          f"{VSINI_KMS} km/s):")
    for title, answer in zip(images, answers):
        print(f"  {title:18s} {answer[0]:6.0f} K {answer[1]:5.3f} {answer[2]:+6.3f} "
              f"{answer[3]:4.2f} km/s")
    for name, relative in SPECTRA.items():
        real = to_model_input(read_spectrum(paths.shared_file(relative)), template=grid)
        print(f"== {name}")
        for title, image in images.items():
            synthetic = np.where(real.mask, image, 1.0).astype(np.float32)
            metrics = gap.gap_metrics(real.image, synthetic, real.mask)
            excess = gap.line_strength_excess(gap.isolated_line_ews(real, synthetic, lines))
            print(f"  {title:18s} RMS {metrics.rms:.4f} depth ratio {metrics.depth_ratio:.3f} | "
                  f"{excess['n']} lines, excess " + ", ".join(
                      f"{k} {excess[k][1]:+.3f}" for k in CLASSES if k in excess), flush=True)
    shift = answers[2] - answers[1]
    print(f"mean3d_shift: {shift[0]:+.1f} K {shift[1]:+.3f} {shift[2]:+.3f}")


if __name__ == "__main__":
    main()

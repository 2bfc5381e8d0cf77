"""The real Sun's gap with a ⟨3D⟩ model atmosphere: how much of it is the 1D structure?

The only ⟨3D⟩ model reachable here is one of the Sun (CO5BOLD, averaged over surfaces of equal
optical depth; shipped beside the 1D MARCS model of the Sun from the same source,
``paper_lib/data/solar_models``). :func:`paper_lib.systematic_runs.solar_model_images`
synthesises both (the ``sun_mean3d`` and ``sun_marcs1d`` physics variants: same Turbospectrum,
lines, abundances and ξ; node files in the cache, reused) and sets them beside the grid's own
synthetic Sun (ATLAS9, interpolated in the smoke grid at the same labels), all rendered at
5777 K, 4.44, [M/H] 0, v sin i 2 km/s. For both real solar spectra it prints
(:func:`paper_lib.evaluation.gap.compare_with_real`, as notebook 06 does):

* the RMS and the depth ratio real/synthetic;
* the weak-line excess: median log(EW_real / EW_synthetic) of isolated VALD3 lines per class
  (negative = ours too strong);

and ``predict``'s default network (committed ``cpu`` weights) on each noise-free synthetic Sun.

    python benchmarks/solar_mean3d_gap.py

The last line is ``mean3d_shift: <Teff K> <log g> <[M/H]>``, the default network's ⟨3D⟩ − 1D
MARCS shift that the ``sun_mean3d`` term of the systematic σ holds at v sin i 2 km/s. Nothing
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
from paper_lib.synthetic.grid import load_grid
from paper_lib.synthetic.linelists import VALD_FILE
from paper_lib.systematic_runs import SOLAR_MODEL_TITLES, solar_model_images

SPECTRA = {"HARPS Sun": "sun/Sun_HARPS_Ganymede_s1d.fits", "UVES Sun": "sun/UVES_Sun-1_cleaned_norm.txt"}


def main() -> None:
    grid = load_grid(get_profile("smoke"))
    images = solar_model_images(grid, progress=True)
    model = experiments.load_variant(get_profile("cpu"), DEFAULT_MODEL)
    answers, _, _ = predict(model, np.stack(list(images.values())).astype(np.float32))
    answers = dict(zip(images, answers))
    print(f"{DEFAULT_MODEL} on the noise-free synthetic Sun:")
    for title, answer in answers.items():
        print(f"  {title:18s} {answer[0]:6.0f} K {answer[1]:5.3f} {answer[2]:+6.3f} "
              f"{answer[3]:4.2f} km/s")
    lines = gap.vald_solar_lines(paths.shared_file(VALD_FILE))
    for name, relative in SPECTRA.items():
        real = to_model_input(read_spectrum(paths.shared_file(relative)), template=grid)
        print(f"== {name}")
        for title, row in gap.compare_with_real(real, images, lines).items():
            print(f"  {title:18s} RMS {row['rms']:.4f} depth ratio {row['depth_ratio']:.3f} | "
                  f"{row['n_lines']} lines, excess "
                  + ", ".join(f"{k} {v:+.3f}" for k, v in row["excess"].items()), flush=True)
    shift = answers[SOLAR_MODEL_TITLES["sun_mean3d"]] - answers[SOLAR_MODEL_TITLES["sun_marcs1d"]]
    print(f"mean3d_shift: {shift[0]:+.1f} K {shift[1]:+.3f} {shift[2]:+.3f}")


if __name__ == "__main__":
    main()

"""What the fit leaves on the benchmark stars, and what masks made from the Sun and Arcturus do.

The Payne's practice (Ting et al. 2019) for a synthesis whose lines are not all right: leave out
of the fit the pixels where the models miss well-known stars. Here, for every benchmark
spectrum (:func:`paper_lib.evaluation.benchmark_stars.benchmark_set`):

1. **what the fit leaves**: the shipped emulator's image at the reference Teff, log g, [M/H]
   (v sin i fitted, the labels held), and the RMS of the real image minus it;
2. **masks**: a pixel is left out where a *calibrator* spectrum — the Sun's three (FTS atlas,
   HARPS, UVES) and Arcturus — misses its model of step 1 by more than ``t`` (and ±2 pixels
   round it; :mod:`paper_lib.evaluation.line_mask`), for thresholds ``t`` of
   :data:`THRESHOLDS`; the least-squares fit on the emulator (``predict --refine``, from the
   network's raw answer) is then run with the mask.

Every star is judged with a mask made without it (leave one star out): the Sun's spectra with
Arcturus's mask, Arcturus with the Sun's, the others with both. Printed: each star's raw Δ
(answer − reference; the Sun's three spectra averaged) and the median |Δ| over the counted
stars (Vega is not counted), with the share of the pixels kept. Nothing here is shipped and no
threshold is chosen: picking one by this table would make every benchmark star a calibrator
of that choice, and the Sun and Arcturus are calibrators of the masks themselves.

    python benchmarks/fit_masks.py
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from paper_lib.evaluation.benchmark_stars import benchmark_set
from paper_lib.evaluation.line_mask import calibrator_mask, calibrator_of, residuals_at_reference
from paper_lib.predict import BATCH_SIZE, DEFAULT_MODEL, DEFAULT_PROFILE, Predictor
from paper_lib.predict.fit import fit_batch
from paper_lib.predict.inputs import prepare
from paper_lib.predict.rows import label_rows, refinement_renderer

LABELS = ("teff", "logg", "mh")
THRESHOLDS = (None, 0.10, 0.05, 0.03, 0.02)  # None: no mask (today's fit)


def per_star(spectra, deltas) -> dict:
    """{star: (mean Δ over its spectra (3,), counted)}."""
    stars = {}
    for spectrum, delta in zip(spectra, deltas):
        stars.setdefault(spectrum.star, ([], spectrum.counted))[0].append(delta)
    return {star: (np.mean(found, axis=0), counted) for star, (found, counted) in stars.items()}


def benchmark_residuals() -> SimpleNamespace:
    """The benchmark spectra read once: ``spectra``, their model ``inputs``, ``images`` and
    ``masks`` (n, 8, 4096), the default network (``predictor``) and its raw answers
    (``starts``, (n, 4)), the emulator's ``render`` and the ``residuals`` at the reference
    labels (:func:`~paper_lib.evaluation.line_mask.residuals_at_reference`)."""
    spectra = benchmark_set()
    inputs = [prepare(s.path, None, None, None, None) for s in spectra]
    predictor = Predictor.load(DEFAULT_MODEL, DEFAULT_PROFILE)
    starts = [[row[k] for k in (*LABELS, "vsini")]
              for row in label_rows(predictor, inputs, BATCH_SIZE, calibrate=False)]
    render = refinement_renderer(None, DEFAULT_PROFILE, None).render
    images, masks = np.stack([i.image for i in inputs]), np.stack([i.mask for i in inputs])
    residuals = residuals_at_reference(spectra, images, masks, [s[3] for s in starts], render)
    return SimpleNamespace(spectra=spectra, inputs=inputs, images=images, masks=masks,
                           predictor=predictor, starts=starts, render=render,
                           residuals=residuals)


def main() -> None:
    read = benchmark_residuals()
    spectra, images, masks, residuals = read.spectra, read.images, read.masks, read.residuals
    print("what the fit leaves: RMS of real − emulator at the reference labels (v sin i fitted)")
    for spectrum, residual in zip(spectra, residuals):
        print(f"  {spectrum.star:24s} {spectrum.instrument[:28]:28s} {np.nanstd(residual):.4f}")
    print("the fit on the emulator from the network's answer, with masks from the Sun and "
          "Arcturus (each star's mask made without it); Δ Teff K, log g, [M/H]")
    for threshold in THRESHOLDS:
        kept = masks if threshold is None else np.stack(
            [masks[k] & calibrator_mask(spectra, residuals, threshold,
                                        without=calibrator_of(spectra[k]))
             for k in range(len(spectra))])
        fits = fit_batch(images, kept, read.starts, read.render)
        deltas = [f.labels[:3] - [s.reference[k] for k in LABELS] for f, s in zip(fits, spectra)]
        stars = per_star(spectra, deltas)
        median = np.median([np.abs(d) for d, counted in stars.values() if counted], axis=0)
        name = "no mask" if threshold is None else f"|residual| > {threshold:g}"
        print(f"{name:20s} pixels kept {kept.sum() / masks.sum():4.0%}  median |Δ| "
              f"{median[0]:3.0f} K, {median[1]:.2f}, {median[2]:.2f} | " + "; ".join(
                  f"{star.split(' (')[0]} {d[0]:+.0f} {d[1]:+.2f} {d[2]:+.2f}"
                  for star, (d, _) in stars.items()))


if __name__ == "__main__":
    main()

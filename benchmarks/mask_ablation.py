"""Where the network's log g offset lives, and networks that never see those pixels.

1. **In-painting (a diagnosis, no training).** Each benchmark spectrum's pixels that miss the
   shipped emulator's image at the star's *own* reference labels by more than ``t`` (the
   residual of :func:`paper_lib.evaluation.line_mask.residuals_at_reference`) are replaced by that image, and the
   shipped ``resnet_diagonal_real`` reads the result raw. How far its offset shrinks with the
   share of pixels replaced says whether the offset lives in a few badly synthesised features
   (a mask could help) or in every line (only the synthesis can). This uses each star's
   reference, so it measures; it calibrates nothing.
2. **Line masks in training, leaving one star out.** ``resnet_diagonal_real`` fine-tuned from
   the shipped ``resnet_diagonal`` exactly as the profile does (today's ``REAL_SPECTRA``), plus
   ``Realism.masked_wavelengths``: the rest-frame pixels (±2) where a calibrator spectrum — the
   Sun's three, Arcturus — misses its model by more than :data:`THRESHOLD`
   (:func:`paper_lib.evaluation.line_mask.calibrator_mask`), never shown in training and filled with 1.0 in the real
   inputs too. Three networks, so that no star is read through a mask made from it: the mask
   of the Sun and Arcturus (read on the other stars), of Arcturus alone (read on the Sun's
   spectra) and of the Sun alone (read on Arcturus). Printed: raw median |Δ| over the counted
   stars, the same after the label calibration judged leaving one star out, mean Δ log g, each
   star's raw Δ, and each network's MAE on its own validation set (its own mask).

:data:`THRESHOLD` = 0.05 was picked from step 1 run on all the stars (where the offset is
mostly gone), so the benchmark stars are calibrators of that choice. The package ships that
mask since commit ``5a74be5`` (``models/cpu/line_mask.json``, ``python -m paper_lib
line-mask``; notebook 03 trains the same three networks); this script keeps the measurement
for other thresholds and seeds. Its networks now keep the mask in their architecture record
(``hidden_runs``): folders trained before that commit are refused with a clear error (delete
them to retrain).

    python benchmarks/mask_ablation.py [--profile cpu] [--out DIR] [--diagnosis-only]
                                       [--threshold 0.05] [--seed S]

Each network trains in ``<out>/<fold>/`` (resumable, guarded by its settings like
``real_variant_ablation.py``); default ``--out``: ``<cache>/mask_ablation/<profile>``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from fit_masks import LABELS, benchmark_residuals
from real_variant_ablation import BASE, train_run

from paper_lib import experiments, paths
from paper_lib.evaluation import benchmark_stars as bs
from paper_lib.evaluation.line_mask import (THRESHOLD, apply_mask, calibrator_mask,
                                            calibrator_of, mask_intervals)
from paper_lib.labels import label_span
from paper_lib.predict import BATCH_SIZE, DEFAULT_MODEL, Predictor
from paper_lib.predict.flags import training_bounds
from paper_lib.predict.rows import label_rows
from paper_lib.profiles import REAL_VARIANT, get_profile

IN_PAINT = (None, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01)  # thresholds of the diagnosis
FOLDS = {"sun_and_arcturus": None, "without_sun": "Sun", "without_arcturus": "Arcturus"}


def read_raw(predictor, inputs, spectra) -> pd.DataFrame:
    """The raw answers of ``predictor`` on ``inputs`` with the references beside them."""
    return bs.with_references(pd.DataFrame(label_rows(predictor, inputs, BATCH_SIZE,
                                                      calibrate=False)), spectra)


def summary_line(name: str, table: pd.DataFrame, extra: str = "") -> str:
    """Raw and LOSO-calibrated median |Δ| and mean Δ log g over the counted stars, and each
    star's raw Δ (its spectra averaged)."""
    raw, loso = bs.summary(table), bs.summary(bs.loso_calibrated(table))
    median = [raw["median_abs_delta"][k] for k in LABELS]
    calibrated = [loso["median_abs_delta"][k] for k in LABELS]
    stars = bs.per_star(table)
    per = "; ".join(f"{star.split(' (')[0]} {row['delta_teff']:+.0f} {row['delta_logg']:+.2f} "
                    f"{row['delta_mh']:+.2f}" for star, row in stars.iterrows())
    return (f"{name:24s}{extra} raw {median[0]:3.0f} K, {median[1]:.2f}, {median[2]:.2f} | LOSO "
            f"{calibrated[0]:3.0f} K, {calibrated[1]:.2f}, {calibrated[2]:.2f} | mean Δlog g "
            f"{raw['mean_delta']['logg']:+.2f} | {per}")


def in_painting(read) -> None:
    """Step 1 of the module doc (``read``: :func:`fit_masks.benchmark_residuals`)."""
    spectra, inputs, residuals = read.spectra, read.inputs, read.residuals
    model_images = read.images - np.nan_to_num(residuals)
    print(f"1. {DEFAULT_MODEL} on the real spectra with the pixels that miss the model at the "
          "star's own reference by more than t replaced by the model:")
    for t in IN_PAINT:
        painted = []
        for k, model_input in enumerate(inputs):
            image = model_input.image.copy()
            if t is not None:
                bad = np.abs(np.nan_to_num(residuals[k])) > t
                image[bad] = model_images[k][bad]
            painted.append(dataclasses.replace(model_input, image=image.astype(np.float32)))
        share = 0.0 if t is None else float(np.mean(np.abs(np.nan_to_num(residuals)) > t))
        print(summary_line("no change" if t is None else f"t = {t:g}",
                           read_raw(read.predictor, painted, spectra), f" {share:4.0%} replaced"))


def train_folds(profile, grid, out, spectra, inputs, residuals, order_wave,
                threshold: float = THRESHOLD) -> None:
    """Step 2 of the module doc."""
    rows = []
    for fold, left_out in FOLDS.items():
        kept = calibrator_mask(spectra, residuals, threshold, without=left_out)
        intervals = mask_intervals(kept, order_wave)
        changed = dataclasses.replace(profile, real={**profile.real,
                                                     "masked_wavelengths": intervals})
        model, history = train_run(changed, grid, out / fold,
                                   experiments.models_dir(profile) / f"{BASE}.pt")
        predictor = Predictor(REAL_VARIANT, model, "diagonal", None, None,
                              training_bounds(profile), profile=profile.name)
        table = read_raw(predictor, [apply_mask(i, intervals) for i in inputs], spectra)
        own = (np.asarray(history[-1]["val_mae"]) * label_span())[:3]
        print(f"  {fold}: {len(intervals)} intervals, {1 - kept.mean():.0%} of the pixels masked;"
              f" MAE on its own validation set {own[0]:.0f} K, {own[1]:.2f}, {own[2]:.2f}")
        rows.append(table[np.array([calibrator_of(s) == left_out for s in spectra])])
    combined = pd.concat(rows).loc[range(len(spectra))]
    print(summary_line("masked, one star out", combined))


def main(argv=None) -> None:
    from paper_lib.echelle.layout import order_wavelengths
    from paper_lib.synthetic.grid import load_grid

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--out", default=None, help="folder of the trained networks")
    parser.add_argument("--diagnosis-only", action="store_true", help="step 1 alone")
    parser.add_argument("--threshold", type=float, default=THRESHOLD,
                        help=f"the mask's threshold (default {THRESHOLD}; others train in "
                             "<out>/t<threshold>/)")
    parser.add_argument("--seed", type=int, default=None,
                        help="another training seed (its networks train in <out>/…seed<S>/)")
    args = parser.parse_args(argv)
    profile = get_profile(args.profile)
    if args.seed is not None:
        profile = dataclasses.replace(profile, seed=args.seed)
    read = benchmark_residuals()
    in_painting(read)
    if args.diagnosis_only:
        return
    out = Path(paths.cache_dir() / "mask_ablation" / profile.name if args.out is None else args.out)
    variant = ("" if args.threshold == THRESHOLD else f"t{args.threshold:g}") + (
        "" if args.seed is None else f"seed{args.seed}")
    out = out / variant if variant else out
    print(f"2. networks trained without the pixels a calibrator misses by more than "
          f"{args.threshold:g} (profile {profile.name}, seed {profile.seed}, folder {out}):")
    train_folds(profile, load_grid(profile), out, read.spectra, read.inputs, read.residuals,
                order_wavelengths(), args.threshold)


if __name__ == "__main__":
    main()

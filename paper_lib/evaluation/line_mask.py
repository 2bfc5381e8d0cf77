"""A line mask from well-known stars: the pixels where our synthesis misses them most.

The Payne's practice (Ting et al. 2019) for a synthesis whose lines are not all right: leave
out the pixels where the models miss well-known stars. For each **calibrator** spectrum (of
:data:`CALIBRATOR_STARS` in the benchmark set: the Sun's three, Arcturus) the residual real −
model is taken at the star's reference labels — the shipped emulator's image (its MLP alone:
:func:`make_line_mask`) with Teff, log g and [M/H] held, v sin i fitted
(:func:`residuals_at_reference`). A pixel is masked where any
calibrator spectrum of another star misses its model by more than ``threshold`` (normalised
flux), widened by :data:`WIDEN_PX` pixels each way for the line wings
(:func:`calibrator_mask`). The mask lives on the model input's pixels, i.e. in the rest frame,
and travels as wavelength intervals (:func:`mask_intervals`): what
:class:`~paper_lib.echelle.realism.Realism` ``masked_wavelengths`` hides in training and
:func:`apply_mask` hides in a real model input (filled with 1.0 and marked without data, as the
CCD gap).

Leave one star out: a calibrator star is judged only through a mask made without it
(``without=``); its numbers with the full mask are no test. ``benchmarks/fit_masks.py`` and
``benchmarks/mask_ablation.py`` measure what such masks do to the fit and to the networks.

**The shipped mask.** ``python -m paper_lib line-mask --profile cpu`` (:func:`make_line_mask`)
writes ``models/<profile>/line_mask.json``: the intervals of every fold of
:func:`~paper_lib.echelle.line_mask.fold_names` (``all``: from every calibrator;
``without_<star>``: without that one), the threshold, the calibrator spectra, the SHA-256 of
the emulator's MLP and the commit. :mod:`paper_lib.echelle.line_mask` reads it for training: a profile's
``line_mask`` names the profile whose file its ``_real`` variant trains with; the network keeps
the mask's pixels in its architecture record (``hidden_runs``), so every use of the weights
applies it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..echelle.line_mask import (CALIBRATOR_STARS, LINE_MASK_FILE, calibrator_of, fold_names,
                                  true_runs)

WIDEN_PX = 2  # a masked pixel's neighbours this far along the order are masked too
# |real − model| at the reference labels above which a pixel is masked: where in-painting the
# benchmark spectra (benchmarks/mask_ablation.py, step 1, all stars) removes most of the offset
THRESHOLD = 0.05
START_VSINI = 3.0  # km/s: where the v sin i fit at the reference labels starts


def residuals_at_reference(spectra, images, masks, vsini, render) -> np.ndarray:
    """Real image − model image (n, 8, 4096) of each spectrum at its reference labels
    (``spectrum.reference``: teff K, logg dex, mh dex; held), v sin i fitted from ``vsini``
    (n,) km/s; NaN where ``masks`` says the image holds no data. ``render``: an
    :class:`~paper_lib.predict.forward.EmulatorRenderer`."""
    from ..predict.fit import fit_batch
    from ..predict.known import KnownLabel

    out = []
    for k, spectrum in enumerate(spectra):
        reference = [spectrum.reference[name] for name in ("teff", "logg", "mh")]
        held = [KnownLabel(name, value, 1e-3)
                for name, value in zip(("teff", "logg", "mh"), reference)]
        fitted = fit_batch(images[k:k + 1], masks[k:k + 1], [reference + [float(vsini[k])]],
                           render, held)[0]
        model = render(np.array([fitted.labels]))[0]
        out.append(np.where(masks[k], images[k] - model, np.nan))
    return np.array(out)


def calibrator_mask(spectra, residuals, threshold: float, *, without: str | None = None,
                    calibrators=CALIBRATOR_STARS, widen_px: int = WIDEN_PX) -> np.ndarray:
    """Pixels kept (8, 4096; True = shown): those where no calibrator spectrum (other than of
    the star ``without``) misses its model by more than ``threshold``, each masked pixel
    widened by ``widen_px`` along its order. ``residuals``: (n, 8, 4096) of ``spectra``
    (:func:`residuals_at_reference`; NaN counts as no miss)."""
    from scipy.ndimage import binary_dilation

    use = [k for k, s in enumerate(spectra)
           if calibrator_of(s, calibrators) not in (None, without)]
    if not use:
        raise ValueError(f"no calibrator spectra ({', '.join(calibrators)}) other than "
                         f"{without!r} among the {len(spectra)} spectra")
    missed = (np.abs(np.nan_to_num(np.asarray(residuals)[use], nan=0.0)) > threshold).any(axis=0)
    if widen_px > 0:
        missed = np.stack([binary_dilation(order, iterations=widen_px) for order in missed])
    return ~missed


def mask_intervals(kept, order_wave) -> tuple:
    """Wavelength intervals ((lo, hi) Å, …) of the runs of masked pixels (``kept`` False,
    shape of ``order_wave`` [Å]), each reaching half a pixel beyond its end pixels, so that
    :func:`~paper_lib.echelle.realism.masked_pixels` gives the same pixels back."""
    intervals = []
    for order, wave in zip(np.asarray(kept, dtype=bool), np.asarray(order_wave, dtype=np.float64)):
        step = np.gradient(wave)
        for start, stop in true_runs(~order):
            intervals.append((float(wave[start] - step[start] / 2),
                              float(wave[stop - 1] + step[stop - 1] / 2)))
    return tuple(intervals)


def apply_mask(model_input, intervals):
    """``model_input`` (:class:`~paper_lib.observed.model_input.ModelInput`) with its pixels in
    ``intervals`` (rest frame, its ``order_wave``) filled with ``FILL_VALUE`` (1.0) and marked
    without data, as the CCD gap is (its ``gap_fraction`` stays the data's own)."""
    from ..echelle.realism import masked_pixels
    from ..observed.model_input import FILL_VALUE

    hidden = masked_pixels(model_input.order_wave, intervals)
    image = np.where(hidden, FILL_VALUE, model_input.image).astype(np.float32)
    return dataclasses.replace(model_input, mask=model_input.mask & ~hidden, image=image)


def make_line_mask(profile="cpu", spectra=None, threshold: float = THRESHOLD,
                   models_dir=None) -> dict:
    """The line-mask record of ``profile``'s shipped emulator (``models_dir``, default
    models/<profile>/) and the calibrator spectra among ``spectra`` (default: the benchmark
    set): residuals at the reference labels (v sin i fitted from :data:`START_VSINI`), then
    one mask per fold of :func:`fold_names`. Not written (:func:`write_line_mask`). The model
    is the emulator's MLP alone (:meth:`~paper_lib.models.emulator.SpectrumEmulator.network_only`):
    the mask was made with it before the emulator had its node table, and the networks that
    hide the mask were trained with that one; the record names it by
    ``emulator_network_sha256``. (At the calibrators' labels the two differ by ~3e-4 RMS, far
    below the threshold.)"""
    from ..echelle.layout import order_wavelengths
    from ..models.emulator import EMULATOR_FILE
    from ..predict.inputs import prepare
    from ..predict.rows import refinement_renderer
    from ..profiles import get_profile
    from ..provenance import git_commit
    from .benchmark_stars import benchmark_set

    profile = get_profile(profile)
    spectra = [s for s in (benchmark_set() if spectra is None else spectra) if calibrator_of(s)]
    inputs = [prepare(s.path, None, None, None, None) for s in spectra]
    render = refinement_renderer(None, profile, models_dir, network_only=True).render
    images, masks = np.stack([i.image for i in inputs]), np.stack([i.mask for i in inputs])
    residuals = residuals_at_reference(spectra, images, masks, [START_VSINI] * len(spectra),
                                       render)
    folds = {}
    for fold, left_out in fold_names().items():
        kept = calibrator_mask(spectra, residuals, threshold, without=left_out)
        folds[fold] = {"without": left_out, "masked_fraction": round(float(1 - kept.mean()), 4),
                       "intervals": [list(i) for i in mask_intervals(kept, order_wavelengths())]}
    return {"profile": profile.name, "threshold": threshold, "widen_px": WIDEN_PX,
            "calibrators": [{"star": s.star, "file": s.path.name, "instrument": s.instrument}
                            for s in spectra],
            "emulator": EMULATOR_FILE,
            "emulator_network_sha256": render.emulator.network_sha256(),
            "commit": git_commit(), "folds": folds}


def write_line_mask(record: dict, models_dir=None):
    """``record`` as ``models_dir``/line_mask.json (default models/<its profile>/; atomic)."""
    from pathlib import Path

    from .. import paths
    from ..fileio import atomic_write_json

    path = Path(models_dir or paths.models / record["profile"]) / LINE_MASK_FILE
    atomic_write_json(path, record)
    return path

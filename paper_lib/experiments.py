"""The paper's experiments as the notebooks run them: which data, which variants, in what order.

Glue between :mod:`paper_lib.echelle` (data), :mod:`paper_lib.training` and
:mod:`paper_lib.evaluation`, kept here so that notebooks 02–07 only narrate. Every function
takes the :class:`~paper_lib.profiles.Profile` that the notebook (or the command line) resolved
once. Variant names: ``<resnet|attention>_<diagonal|full>[_dae][_limited|_real]`` and ``dae`` (see
:data:`paper_lib.profiles.ALL_VARIANTS`).
"""

from __future__ import annotations

import json
from dataclasses import replace

from pathlib import Path

import numpy as np
import torch

from . import paths
from .echelle.continuum import normalise_orders, slant_ramp
from .echelle.generator import SpectrumGenerator
from .echelle.realism import Realism
from .echelle.testsets import make_test_set
from .evaluation import metrics
from .evaluation.attribution import Attribution, integrated_gradients
from .labels import VSINI_RANGE, label_span, unscale_labels
from .predict import predict
from .profiles import Profile
from .training.checkpoints import history_path, load_model, load_variant_file
from .training.variants import TrainResult, parse_variant, real_options, train_variant

VAL_SEED_OFFSET = 100  # validation sets: profile.seed + 100 (+1 for the limited range)
TEST_SEED_OFFSET = 1  # test sets: profile.seed + 1
OOD_SPECTRA = 1000  # test spectra per SNR for the OOD calibration (those of mae_vs_snr)


# ------------------------------------------------------------------------------ data

def data_settings(profile: Profile, *, limited: bool = False, real: bool = False) -> dict:
    """SNR and label region of the main experiments or of the paper's † rows; for a ``_real``
    variant also the profile's :class:`~paper_lib.echelle.realism.Realism` (its SNR range),
    and the profile's interpolation between grid nodes where it is not the linear one."""
    settings = ({"snr": profile.snr_limited, "box": profile.label_box,
                 "teff_range": profile.limited_teff} if limited else
                {"snr": profile.snr_train, "box": profile.label_box, "teff_range": None})
    if real and not limited:
        settings["realism"] = Realism(**real_options(profile))
    if profile.interpolation != "linear":  # left out when linear: the sets keep their keys
        settings["interpolation"] = profile.interpolation
    return settings


def training_source(grid, profile: Profile, *, limited: bool = False, real: bool = False
                    ) -> SpectrumGenerator:
    """The on-the-fly generator a variant trains on (fresh labels and noise every call)."""
    return SpectrumGenerator(grid, slant_max=profile.slant_max, seed=profile.seed,
                             compile=profile.compile_generator,
                             **data_settings(profile, limited=limited, real=real))


def validation_seed(profile: Profile, *, limited: bool = False, real: bool = False) -> int:
    """The seed of a variant's validation sets (its own for the † and _real data)."""
    return profile.seed + VAL_SEED_OFFSET + int(limited) + 2 * int(real)


def validation_batch(grid, profile: Profile, *, limited: bool = False, real: bool = False):
    """A fixed, seeded validation set (also used to recalibrate σ in notebook 05)."""
    seed = validation_seed(profile, limited=limited, real=real)
    return make_test_set(grid, n=profile.n_val, seed=seed, slant_max=profile.slant_max,
                         **data_settings(profile, limited=limited, real=real))


def test_batch(grid, profile: Profile, *, limited: bool = False, snr: float | None = None,
               n: int | None = None, **generator_kwargs):
    """The fixed, seeded test set (paper: 5667 spectra), optionally at another SNR (same labels,
    fresh noise) or only its first ``n`` labels' worth (a set of ``n`` spectra); further
    keywords go to the generator (e.g. ``pad_with_continuum=True`` for the reference grid)."""
    settings = data_settings(profile, limited=limited)
    if snr is not None:
        settings["snr"] = snr
    return make_test_set(grid, n=n or profile.n_test, seed=profile.seed + TEST_SEED_OFFSET,
                         slant_max=profile.slant_max, **settings, **generator_kwargs)


def measured_snr(batch) -> float:
    """SNR measured from a batch: 1 / std(noisy − clean) (both on the fitted continuum)."""
    return float(1.0 / (batch.noisy - batch.clean).std())


def observe_star(grid, labels, *, snr: float | None, slant_max: float = 0.05, seed: int = 0
                 ) -> np.ndarray:
    """8×4096 images of given stars (figures): (n, 8, 4096) numpy.

    ``labels`` (n, 4) physical (Teff K, log g, [M/H], v sin i km/s). With ``snr=None`` the image
    is noise-free and slanted but not normalised (what the pipeline would deliver without
    noise); with an SNR it is the normalised noisy model input, exactly as in training.
    """
    labels = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    generator = SpectrumGenerator(grid, snr=snr or 1.0, slant_max=slant_max, seed=seed)
    image = generator.render(grid.interpolate(labels[:, :3]), labels[:, 3],
                             generator.vmacro(labels))
    rng = np.random.default_rng(seed)
    if snr is None:
        slopes = rng.uniform(-slant_max, slant_max, size=image.shape[:2])
        ramp = torch.as_tensor(slant_ramp(slopes, image.shape[-1]), dtype=torch.float32)
        return (image * ramp).numpy()
    noisy, _ = generator.observe(image, rng)
    return noisy.numpy()


# ------------------------------------------------------------------------------ training

def variants_for(profile: Profile, network: str) -> list[str]:
    """The profile's variants of one network, in training order (diagonal before full, then
    _dae, then † and _real — each after the variant it starts from);
    ``network="dae"`` gives ``["dae"]``."""
    if network == "dae":
        return ["dae"]
    mine = [v for v in profile.variants if v.startswith(network + "_")]
    return sorted(mine, key=lambda v: (v.endswith(("_limited", "_real")), "_dae" in v,
                                       "_full" in v))


def models_dir(profile: Profile) -> Path:
    """``models/<profile>/``: where the notebooks keep the trained networks."""
    return paths.models / profile.name


def train_variants(variants, profile: Profile, grid, out_dir=None, *, progress: bool = True
                   ) -> dict[str, TrainResult]:
    """Train (resume, or load when finished) each variant; returns {variant: TrainResult}.

    The one training entry point of notebooks 02–04: each variant gets its data (the † variants
    their SNR and Teff range), its validation set and, for ``_dae`` variants, the DAE that
    notebook 02 trained into ``out_dir`` (default ``models/<profile>/``).
    """
    out_dir = Path(out_dir or models_dir(profile))
    results = {}
    for variant in variants:
        spec = parse_variant(variant)
        dae = None
        if spec.dae:
            dae = out_dir / "dae.pt"
            if not dae.exists():
                raise FileNotFoundError(f"{variant} needs the trained DAE {dae}: run notebook 02 first")
        results[variant] = train_variant(
            variant, profile, training_source(grid, profile, limited=spec.limited, real=spec.real),
            validation_batch(grid, profile, limited=spec.limited, real=spec.real), out_dir,
            dae=dae, progress=progress)
        if variant == "dae":
            ensure_ood_calibration(profile, grid, out_dir)
    return results


def train_line_mask_folds(profile: Profile, grid, out_dir=None, *, progress: bool = True
                          ) -> dict[str, TrainResult]:
    """The ``_real`` variant once more for each leave-one-out fold of the profile's line mask
    (:func:`~paper_lib.evaluation.line_mask.fold_names`): trained exactly as the variant, from
    the same base, but blind to the mask made without one calibrator star, in
    ``<out_dir>/line_mask_folds/<fold>/``. Those networks read the calibrator stars in the
    benchmark evaluation; {} when the profile has no mask or no ``_real`` variant."""
    from .echelle.line_mask import FOLDS_DIR, fold_names, line_mask_intervals
    from .profiles import REAL_VARIANT
    from .training.variants import base_variant

    out_dir = Path(out_dir or models_dir(profile))
    if not profile.line_mask or REAL_VARIANT not in profile.variants:
        return {}
    base = out_dir / f"{base_variant(parse_variant(REAL_VARIANT))}.pt"
    results = {}
    for fold, left_out in fold_names().items():
        if left_out is None:
            continue
        folded = replace(profile, real={**profile.real,
                                        "masked_wavelengths": line_mask_intervals(profile, fold)})
        results[fold] = train_variant(
            REAL_VARIANT, folded, training_source(grid, folded, real=True),
            validation_batch(grid, folded, real=True), out_dir / FOLDS_DIR / fold,
            init_from=base, progress=progress)
    return results


def ensure_ood_calibration(profile: Profile, grid, out_dir=None, *, n: int | None = None,
                           force: bool = False, source: str | None = None,
                           **generator_kwargs) -> Path:
    """``<out_dir>/ood_calibration.json`` for the DAE there, (re)made from the profile's test
    sets at each SNR of ``profile.snr_curve`` (the sets :func:`mae_vs_snr` uses) when it is
    missing, was made for another DAE, or ``force`` (see :mod:`paper_lib.observed.quality`).
    ``source`` names a grid other than the profile's; ``generator_kwargs`` go to the generator."""
    from .observed.quality import CALIBRATION_FILE, OODCalibration, calibrate_ood, write_ood_calibration

    out_dir = Path(out_dir or models_dir(profile))
    dae_path = out_dir / "dae.pt"
    if not force and OODCalibration.load(out_dir, dae_path) is not None:
        return out_dir / CALIBRATION_FILE
    batches = {snr: test_batch(grid, profile, snr=snr, n=n or OOD_SPECTRA,
                               **generator_kwargs).noisy.numpy()
               for snr in profile.snr_curve}
    size = len(next(iter(batches.values())))
    record = calibrate_ood(load_model(dae_path).eval(), dae_path, batches,
                           source=f"{source or 'grid of profile ' + repr(profile.name)}: test-set "
                                  f"labels of profile {profile.name!r} ({size} spectra per SNR, "
                                  f"seed {profile.seed + TEST_SEED_OFFSET})")
    return write_ood_calibration(out_dir, record)


def sigma_calibration_sets(profile: Profile, grid, variant: str, out_dir=None) -> dict:
    """{SNR: (validation, test)} predictions of ``variant`` for its σ calibration: its data
    (realism for ``_real``, the † range for ``_limited``) at each SNR of ``profile.snr_curve``;
    validation: the profile's ``n_val`` spectra (validation seed), test: up to OOD_SPECTRA
    (test seed). Each: {"true", "mean", "sigma" (N, 4) physical, "estimated_snr" (N,)}."""
    from .observed.quality import estimate_snr, filled_pixels_left_out

    spec = parse_variant(variant)
    model = load_variant(profile, variant, out_dir)
    settings = data_settings(profile, limited=spec.limited, real=spec.real)
    if "realism" in settings:  # the variant's realism at one SNR at a time
        settings["realism"] = replace(settings["realism"], snr_range=None)
    seeds = {"validation": validation_seed(profile, limited=spec.limited, real=spec.real),
             "test": profile.seed + TEST_SEED_OFFSET}
    sizes = {"validation": profile.n_val, "test": min(profile.n_test, OOD_SPECTRA)}
    sets = {}
    for snr in profile.snr_curve:
        pair = []
        for part in ("validation", "test"):
            batch = make_test_set(grid, n=sizes[part], seed=seeds[part], slant_max=profile.slant_max,
                                  **{**settings, "snr": float(snr)})
            out = _physical(model, batch)
            noisy = batch.noisy.numpy()
            out["estimated_snr"] = estimate_snr(noisy, filled_pixels_left_out(noisy))
            pair.append(out)
        sets[float(snr)] = tuple(pair)
    return sets


def ensure_sigma_calibration(profile: Profile, grid, variants=None, out_dir=None, *,
                             force: bool = False) -> dict:
    """{variant: record} of the σ calibration against SNR
    (:mod:`paper_lib.evaluation.sigma_calibration`) in ``<out_dir>/sigma_calibration.json``,
    made for each of ``variants`` (default: the ``_real`` variant, what ``predict`` uses)
    whose record is missing or was made for other weights, or all with ``force``."""
    from .evaluation.sigma_calibration import (calibrate_sigma, load_sigma_calibration,
                                               read_sigma_calibrations, write_sigma_calibration)
    from .profiles import REAL_VARIANT

    out_dir = Path(out_dir or models_dir(profile))
    variants = variants or [v for v in profile.variants if v == REAL_VARIANT]
    for variant in variants:
        weights = out_dir / f"{variant}.pt"
        if not force and load_sigma_calibration(out_dir, variant, weights) is not None:
            continue
        sets = sigma_calibration_sets(profile, grid, variant, out_dir)
        write_sigma_calibration(out_dir, calibrate_sigma(
            sets, variant=variant, weights_path=weights,
            source=f"grid of profile {profile.name!r}: validation (seeded) and test sets of "
                   f"{variant} at SNR {', '.join(f'{s:g}' for s in sets)}"))
    records = read_sigma_calibrations(out_dir)
    return {v: records[v] for v in variants if v in records}


def load_variant(profile: Profile, variant: str, out_dir=None):
    """A trained variant from ``models/<profile>/<variant>.pt`` (eval mode)."""
    return load_variant_file(out_dir or models_dir(profile), variant, profile.name)


def history_dict(history: list[dict]) -> dict:
    """Per-epoch lists {'train_loss': [...], 'val_loss': [...]} for plotting."""
    return {"train_loss": [h["train_loss"] for h in history],
            "val_loss": [h.get("val_loss") for h in history]}


def learning_curve(profile: Profile, variant: str, out_dir=None) -> dict:
    """What training bought, epoch by epoch, from a variant's history file: spectra seen,
    training minutes (cumulative) and the validation MAE in physical units (n_epochs, 4)."""
    path = history_path(Path(out_dir or models_dir(profile)) / f"{variant}.pt")
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: train {variant} first (notebooks 03–04)")
    record = json.loads(path.read_text())
    history, config = record["history"], record["config"]
    if not history or "val_mae" not in history[0]:
        raise ValueError(f"{path} holds no regression validation history")
    spectra = np.arange(1, len(history) + 1) * config["steps_per_epoch"] * config["batch_size"]
    minutes = np.cumsum([h["train_seconds"] for h in history]) / 60.0
    mae = np.array([h["val_mae"] for h in history]) * label_span()
    return {"variant": variant, "spectra": spectra.tolist(), "minutes": minutes.round(3).tolist(),
            "val_mae": mae.tolist()}


def summarise(results: dict) -> dict:
    """JSON-ready summary per variant: epochs, losses, training time and throughput."""
    summary = {}
    for variant, result in results.items():
        history = result.history
        checkpoint = Path(result.checkpoint).resolve()
        summary[variant] = {
            "checkpoint": str(checkpoint.relative_to(paths.root))
            if checkpoint.is_relative_to(paths.root) else str(result.checkpoint),
            "epochs": len(history),
            "final_train_loss": history[-1]["train_loss"] if history else None,
            "final_val_loss": history[-1].get("val_loss") if history else None,
            "train_seconds": float(np.sum([h.get("train_seconds", 0.0) for h in history])),
            "spectra_per_s": float(np.mean([h["spectra_per_s"] for h in history])) if history else None,
        }
    return summary


# ------------------------------------------------------------------------------ evaluation

def _physical(model, batch) -> dict:
    """Physical-unit predictions of ``model`` on a Batch: true, mean, sigma, cov (numpy)."""
    mean, sigma, cov = predict(model, batch.noisy)
    return {"true": unscale_labels(batch.labels.numpy()), "mean": mean, "sigma": sigma, "cov": cov}


def evaluate_variants(profile: Profile, grid, out_dir=None, variants=None) -> dict:
    """Test-set MAE, σ coverage and the σ recalibration (fitted on validation) per variant."""
    evaluated = {}
    for variant in variants or profile.variants:
        limited = parse_variant(variant).limited
        model = load_variant(profile, variant, out_dir)
        test = _physical(model, test_batch(grid, profile, limited=limited))
        val = _physical(model, validation_batch(grid, profile, limited=limited))
        evaluated[variant] = {
            "snr": data_settings(profile, limited=limited)["snr"], "test": test,
            "mae": metrics.mae(test["true"], test["mean"]),
            "coverage": metrics.coverage(test["true"], test["mean"], test["sigma"]),
            "recalibration": metrics.recalibration_report(
                val["true"], val["mean"], val["sigma"], test["true"], test["mean"], test["sigma"]),
        }
    return evaluated


def showcase_variant(evaluated: dict) -> str:
    """The variant the paper shows in Figs 3–4 (DAE attention, diagonal), or the closest one."""
    for name in ("attention_diagonal_dae", "attention_diagonal", "resnet_diagonal"):
        if name in evaluated:
            return name
    return next(iter(evaluated))


def mae_vs_snr(profile: Profile, grid, out_dir=None, *, n: int = OOD_SPECTRA, variants=None) -> list[dict]:
    """MAE per label at each SNR of ``profile.snr_curve`` for the SNR-20 diagonal variants."""
    variants = variants or [v for v in profile.variants
                            if not v.endswith("_limited") and "_full" not in v]
    rows = []
    for variant in variants:
        model = load_variant(profile, variant, out_dir)

        def at_snr(snr, model=model):
            out = _physical(model, test_batch(grid, profile, snr=snr, n=n))
            return out["true"], out["mean"]

        rows += metrics.mae_vs_snr(at_snr, profile.snr_curve, variant=variant)
    return rows


# ------------------------------------------------------------------------------ real spectra

def clamp_to_grid(grid, labels, box: dict | None = None) -> np.ndarray:
    """Labels (4,) moved into the grid's (or the box's) Teff/log g/[M/H] bounds and v sin i
    into its Table-1 range."""
    labels = np.asarray(labels, dtype=np.float64).copy()
    bounds = grid.bounds(box)
    labels[:3] = np.clip(labels[:3], bounds[:, 0], bounds[:, 1])
    labels[3] = np.clip(labels[3], *VSINI_RANGE)
    return labels


def synthetic_like(grid, labels, *, box: dict | None = None) -> np.ndarray:
    """Normalised, noise-free synthetic image (8, 4096) at ``labels`` (clamped into the grid)."""
    return synthetic_images(grid, clamp_to_grid(grid, labels, box)[None])[0]


def synthetic_images(grid, labels, *, macroturbulence: bool = True) -> np.ndarray:
    """Normalised, noise-free, unslanted images (n, 8, 4096) at ``labels`` (n, 4) physical: what
    a perfect observation of a synthetic star gives (the gap studies of notebook 06)."""
    labels = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    generator = SpectrumGenerator(grid, snr=1.0, seed=0, macroturbulence=macroturbulence)
    return normalise_orders(generator.render_labels(labels).numpy())


def synthetic_like_input(grid, model_input, labels) -> np.ndarray:
    """The noise-free synthetic image at ``labels`` (4, physical) with the pixels that
    ``model_input`` lacks filled with 1.0, as ``to_model_input`` fills them in the real image."""
    synthetic = synthetic_images(grid, np.asarray(labels, dtype=np.float64)[None])[0]
    return np.where(model_input.mask, synthetic, 1.0).astype(np.float32)


def gap_attribution(model, grid, model_input, labels) -> Attribution:
    """Integrated gradients of ``model`` from :func:`synthetic_like_input` at ``labels`` to the
    real ``model_input`` image: which pixels carry the synthetic gap into the network's answer."""
    return integrated_gradients(model, synthetic_like_input(grid, model_input, labels),
                                model_input.image)


def impose_gap(model_input, gap_mask) -> np.ndarray:
    """The image of ``model_input`` with the pixels of ``gap_mask`` (True = no data) set to 1.0."""
    return np.where(gap_mask, 1.0, model_input.image).astype(np.float32)


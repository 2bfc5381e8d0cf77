"""The paper's experiments as the notebooks run them: which data, which variants, in what order.

Glue between :mod:`dataset` and :mod:`training`, kept here so that notebooks 02–07 only narrate.
Variant names: ``<resnet|attention>_<diagonal|full>[_dae][_limited]`` and ``dae``
(see :data:`paper_lib.profiles.ALL_VARIANTS`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import dataset, paths, training
from .profiles import Profile, get_profile

VAL_SEED_OFFSET = 100  # validation sets: profile.seed + 100 (+1 for the limited range)
TEST_SEED_OFFSET = 1  # test sets: profile.seed + 1


def data_settings(profile: Profile, *, limited: bool = False) -> dict:
    """SNR and label region of the main experiments or of the paper's † rows."""
    if limited:
        return {"snr": profile.snr_limited, "box": profile.label_box, "teff_range": profile.limited_teff}
    return {"snr": profile.snr_train, "box": profile.label_box, "teff_range": None}


def training_source(grid, profile, *, limited: bool = False) -> dataset.SpectrumGenerator:
    """The on-the-fly generator a variant trains on (fresh labels and noise every call)."""
    profile = get_profile(profile)
    return dataset.SpectrumGenerator(grid, slant_max=profile.slant_max, seed=profile.seed,
                                     compile=profile.compile_generator,
                                     **data_settings(profile, limited=limited))


def validation_batch(grid, profile, *, limited: bool = False):
    """A fixed, seeded validation set (also used to recalibrate σ in notebook 05)."""
    profile = get_profile(profile)
    seed = profile.seed + VAL_SEED_OFFSET + int(limited)
    return dataset.make_test_set(grid, n=profile.n_val, seed=seed, slant_max=profile.slant_max,
                                 **data_settings(profile, limited=limited))


def test_batch(grid, profile, *, limited: bool = False, snr: float | None = None):
    """The fixed, seeded test set (paper: 5667 spectra), optionally at another SNR."""
    profile = get_profile(profile)
    settings = data_settings(profile, limited=limited)
    if snr is not None:
        settings["snr"] = snr
    return dataset.make_test_set(grid, n=profile.n_test, seed=profile.seed + TEST_SEED_OFFSET,
                                 slant_max=profile.slant_max, **settings)


def variants_for(profile, network: str) -> list[str]:
    """The profile's variants of one network, in training order (plain, then _dae, then †)."""
    profile = get_profile(profile)
    mine = [v for v in profile.variants if v.startswith(network + "_")]
    return sorted(mine, key=lambda v: (v.endswith("_limited"), "_dae" in v))


def models_dir(profile) -> Path:
    return paths.models / get_profile(profile).name


def train_variants(variants, profile, grid, out_dir=None, *, progress: bool = True) -> dict:
    """Train (resume, or load when finished) each variant; returns {variant: TrainResult}."""
    profile = get_profile(profile)
    out_dir = Path(out_dir or models_dir(profile))
    results = {}
    for variant in variants:
        spec = training.parse_variant(variant)
        dae = None
        if spec.dae:
            dae = out_dir / "dae.pt"
            if not dae.exists():
                raise FileNotFoundError(f"{variant} needs the trained DAE {dae}: run notebook 02 first")
        results[variant] = training.train_variant(
            variant, profile, training_source(grid, profile, limited=spec.limited),
            validation_batch(grid, profile, limited=spec.limited), out_dir, dae=dae,
            lr=profile.regressor_lr, progress=progress)
    return results


def load_variant(profile, variant: str, out_dir=None):
    """A trained variant from ``models/<profile>/<variant>.pt`` (eval mode)."""
    path = Path(out_dir or models_dir(profile)) / f"{variant}.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: train it with notebooks 02–04 "
                                f"(./run_all.sh --profile {get_profile(profile).name})")
    return training.load_model(path).eval()


def history_dict(history: list[dict]) -> dict:
    """Per-epoch lists {'train_loss': [...], 'val_loss': [...]} for plotting."""
    return {"train_loss": [h["train_loss"] for h in history],
            "val_loss": [h.get("val_loss") for h in history]}


def summarise(results: dict) -> dict:
    """JSON-ready summary per variant: epochs, losses, training time and throughput."""
    summary = {}
    for variant, result in results.items():
        history = result.history
        summary[variant] = {
            "checkpoint": str(Path(result.checkpoint).resolve().relative_to(paths.root))
            if Path(result.checkpoint).resolve().is_relative_to(paths.root) else str(result.checkpoint),
            "epochs": len(history),
            "final_train_loss": history[-1]["train_loss"] if history else None,
            "final_val_loss": history[-1].get("val_loss") if history else None,
            "train_seconds": float(np.sum([h.get("train_seconds", 0.0) for h in history])),
            "spectra_per_s": float(np.mean([h["spectra_per_s"] for h in history])) if history else None,
        }
    return summary


# ------------------------------------------------------------------------------ evaluation

def predict_batch(model, batch) -> dict:
    """Physical-unit predictions of ``model`` on a Batch: true, mean, sigma, cov (numpy)."""
    from . import evaluation
    from .grid import unscale_labels

    mean, sigma, cov = evaluation.predict(model, batch.noisy)
    return {"true": unscale_labels(batch.labels.numpy()), "mean": mean, "sigma": sigma,
            "cov": cov}


def evaluate_variants(profile, grid, out_dir=None, variants=None) -> dict:
    """Test-set MAE, σ coverage and the σ recalibration (fitted on validation) per variant."""
    from . import evaluation

    profile = get_profile(profile)
    evaluated = {}
    for variant in variants or profile.variants:
        limited = training.parse_variant(variant).limited
        model = load_variant(profile, variant, out_dir)
        test = predict_batch(model, test_batch(grid, profile, limited=limited))
        val = predict_batch(model, validation_batch(grid, profile, limited=limited))
        evaluated[variant] = {
            "snr": data_settings(profile, limited=limited)["snr"], "test": test,
            "mae": evaluation.mae(test["true"], test["mean"]),
            "coverage": evaluation.coverage(test["true"], test["mean"], test["sigma"]),
            "recalibration": evaluation.recalibration_report(
                val["true"], val["mean"], val["sigma"], test["true"], test["mean"], test["sigma"]),
        }
    return evaluated


def showcase_variant(evaluated: dict) -> str:
    """The variant the paper shows in Figs 3–4 (DAE attention, diagonal), or the closest one."""
    for name in ("attention_diagonal_dae", "attention_diagonal", "resnet_diagonal"):
        if name in evaluated:
            return name
    return next(iter(evaluated))


def mae_vs_snr(profile, grid, out_dir=None, *, n: int = 1000, variants=None) -> list[dict]:
    """MAE per label at each SNR of ``profile.snr_curve`` for the SNR-20 diagonal variants."""
    from . import evaluation

    profile = get_profile(profile)
    variants = variants or [v for v in profile.variants
                            if not v.endswith("_limited") and "_full" not in v]
    rows = []
    for variant in variants:
        model = load_variant(profile, variant, out_dir)

        def at_snr(snr, model=model):
            batch = dataset.make_test_set(grid, n=n, snr=snr, seed=profile.seed + TEST_SEED_OFFSET,
                                          box=profile.label_box, slant_max=profile.slant_max)
            out = predict_batch(model, batch)
            return out["true"], out["mean"]

        rows += evaluation.mae_vs_snr(at_snr, profile.snr_curve, variant=variant)
    return rows


# ------------------------------------------------------------------------------ single stars

def observe_star(grid, labels, *, snr: float | None, slant_max: float = 0.05, seed: int = 0
                 ) -> np.ndarray:
    """8×4096 images of given stars (figures): (n, 8, 4096) numpy.

    ``labels`` (n, 4) physical (Teff K, log g, [M/H], v sin i km/s). With ``snr=None`` the image
    is noise-free and slanted but not normalised (what the pipeline would deliver without
    noise); with an SNR it is the normalised noisy model input, exactly as in training.
    """
    labels = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    generator = dataset.SpectrumGenerator(grid, snr=snr or 1.0, slant_max=slant_max, seed=seed)
    image = generator.render(grid.interpolate(labels[:, :3]), labels[:, 3])
    rng = np.random.default_rng(seed)
    if snr is None:
        from .echelle import slant_ramp

        slopes = rng.uniform(-slant_max, slant_max, size=image.shape[:2])
        ramp = torch.as_tensor(slant_ramp(slopes, image.shape[-1]), dtype=torch.float32)
        return (image * ramp).numpy()
    noisy, _ = generator.observe(image, rng)
    return noisy.numpy()


def measured_snr(batch) -> float:
    """SNR measured from a batch: 1 / std(noisy − clean) (both on the fitted continuum)."""
    return float(1.0 / (batch.noisy - batch.clean).std())


# ------------------------------------------------------------------------------ real spectra

SUN_REFERENCE = {"teff": 5772.0, "logg": 4.438, "mh": 0.0, "vsini": 2.0}  # IAU 2015 B3; v sin i ≈ 2


def predict_spectra(files, model, template, *, progress: bool = False) -> list[dict]:
    """Read real spectra, bring them to the model input and predict; one dict per file.

    Each dict: path, kind, rv_kms, gap_fraction, mean (4,), sigma (4,), correlation (4, 4)
    in physical units, and the ModelInput itself (``input``).
    """
    from tqdm.auto import tqdm

    from . import evaluation, harpsn

    out = []
    for path in tqdm(list(files), desc="predict", unit="file", disable=not progress):
        spectrum = harpsn.read_spectrum(path)
        inp = harpsn.to_model_input(spectrum, template=template)
        mean, sigma, cov = evaluation.predict(model, torch.as_tensor(inp.image[None]))
        corr = cov[0] / np.outer(sigma[0], sigma[0])
        out.append({"path": str(path), "kind": inp.kind, "rv_kms": inp.rv_kms,
                    "gap_fraction": inp.gap_fraction, "mean": mean[0], "sigma": sigma[0],
                    "correlation": corr, "input": inp})
    return out


def predict_image(model, image) -> tuple[np.ndarray, np.ndarray]:
    """(mean (4,), sigma (4,)) physical for one 8×4096 image."""
    from . import evaluation

    mean, sigma, _ = evaluation.predict(model, torch.as_tensor(np.asarray(image, np.float32)[None]))
    return mean[0], sigma[0]


def clamp_to_grid(grid, labels, box: dict | None = None) -> np.ndarray:
    """Labels (4,) moved into the grid's (or the box's) Teff/log g/[M/H] bounds and v sin i ≥ 0."""
    labels = np.asarray(labels, dtype=np.float64).copy()
    bounds = grid.bounds(box)
    labels[:3] = np.clip(labels[:3], bounds[:, 0], bounds[:, 1])
    labels[3] = np.clip(labels[3], 0.0, 30.0)
    return labels


def synthetic_like(grid, labels, *, box: dict | None = None) -> np.ndarray:
    """Normalised, noise-free synthetic image (8, 4096) at ``labels`` (clamped into the grid)."""
    from .echelle import normalise_orders

    clean = observe_star(grid, clamp_to_grid(grid, labels, box)[None], snr=None, slant_max=0.0)
    return normalise_orders(clean)[0]


def impose_gap(model_input, gap_mask) -> np.ndarray:
    """The image of ``model_input`` with the pixels of ``gap_mask`` (True = no data) set to 1.0."""
    return np.where(gap_mask, 1.0, model_input.image).astype(np.float32)

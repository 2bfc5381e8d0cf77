"""A trained regressor loaded with what its answers on real spectra need."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..profiles import REAL_VARIANT

DEFAULT_MODEL = REAL_VARIANT  # the variant `predict` uses unless told otherwise: made for real spectra
DEFAULT_PROFILE = "cpu"  # whose committed weights (models/<profile>/)


@dataclass
class Predictor:
    """A trained regressor with what its answers need: the profile's DAE and OOD calibration
    (for the out-of-distribution score), the label box it was trained on, the systematic
    model of the physics variants (``systematics.json`` beside the weights; None if absent),
    the calibration of its σ against SNR (``sigma_calibration.json``; None if absent or
    made for other weights: then σ_stat is the network's own) and the calibration of its
    labels against the benchmark stars (``label_calibration.json``; None if absent or made
    for other weights: then ``predict`` reports the raw answer)."""

    name: str
    model: torch.nn.Module
    covariance: str
    dae: torch.nn.Module | None
    calibration: object  # paper_lib.observed.quality.OODCalibration or None
    bounds: np.ndarray  # (4, 2) physical label range of the training data
    systematics: object = None  # paper_lib.evaluation.systematics.SystematicModel or None
    sigma_calibration: object = None  # evaluation.sigma_calibration.SigmaCalibration or None
    label_calibration: object = None  # evaluation.label_calibration.LabelCalibration or None

    @classmethod
    def load(cls, model: str = DEFAULT_MODEL, profile=DEFAULT_PROFILE, models_dir=None
             ) -> "Predictor":
        """The variant ``model`` of ``profile`` from ``models_dir`` (default models/<profile>/)."""
        from .. import paths
        from ..evaluation.label_calibration import load_label_calibration
        from ..evaluation.sigma_calibration import load_sigma_calibration
        from ..evaluation.systematics import load_systematics
        from ..observed.quality import OODCalibration
        from ..profiles import get_profile
        from ..training.checkpoints import load_model, load_variant_file
        from ..training.variants import parse_variant
        from .flags import training_bounds

        profile = get_profile(profile)
        variant = parse_variant(model)
        if variant.network == "dae":
            raise ValueError("'dae' is the denoising auto-encoder: it returns spectra, not labels; "
                             f"choose a regressor, e.g. {DEFAULT_MODEL}")
        folder = Path(models_dir or paths.models / profile.name)  # experiments.models_dir
        regressor = load_variant_file(folder, model, profile.name)
        dae_path = folder / "dae.pt"
        dae = load_model(dae_path).eval() if dae_path.exists() else None
        calibration = OODCalibration.load(folder, dae_path) if dae is not None else None
        return cls(model, regressor, variant.covariance, dae, calibration,
                   training_bounds(profile, limited=variant.limited),
                   load_systematics(folder, model),
                   load_sigma_calibration(folder, model, folder / f"{model}.pt"),
                   load_label_calibration(folder, model, folder / f"{model}.pt"))

"""A trained regressor loaded with what its answers on real spectra need."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
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
    model of the physics variants (``systematics.json`` beside the weights, made for these
    weights; None if absent, made for others or unusable: then ``systematics_problem`` says
    why and every row is flagged ``sigma_sys_missing``), the calibration of its σ against
    SNR (``sigma_calibration.json``; None if absent or made for other weights: then σ_stat is
    the network's own) and the calibration of its labels against the benchmark stars
    (``label_calibration.json``: {method: calibration} for the network's answers and the
    emulator fit's; a method without one, or with one made for other weights or another
    emulator, gets the raw answer). ``profile``: the name of the profile the weights were trained
    with."""

    name: str
    model: torch.nn.Module
    covariance: str
    dae: torch.nn.Module | None
    calibration: object  # paper_lib.observed.quality.OODCalibration or None
    bounds: np.ndarray  # (4, 2) physical label range of the training data
    systematics: object = None  # paper_lib.evaluation.systematics.SystematicModel or None
    sigma_calibration: object = None  # evaluation.sigma_calibration.SigmaCalibration or None
    profile: str = DEFAULT_PROFILE
    systematics_problem: str | None = None
    label_calibrations: dict = field(default_factory=dict)  # {method: LabelCalibration}

    @classmethod
    def load(cls, model: str = DEFAULT_MODEL, profile=None, models_dir=None) -> "Predictor":
        """The variant ``model`` from ``models_dir`` (default models/<profile>/, ``profile``
        default :data:`DEFAULT_PROFILE`). With ``models_dir`` the profile is the one its
        weights were trained with (:func:`stored_profile`); a ``profile`` that contradicts
        it is a ValueError."""
        from ..evaluation.label_calibration import load_label_calibrations
        from ..evaluation.sigma_calibration import load_sigma_calibration
        from ..evaluation.systematics import read_systematics
        from ..models.emulator import EMULATOR_FILE
        from ..observed.quality import OODCalibration
        from ..training.checkpoints import load_model, load_variant_file
        from ..training.variants import parse_variant
        from .flags import training_bounds

        variant = parse_variant(model)
        if variant.network == "dae":
            raise ValueError("'dae' is the denoising auto-encoder: it returns spectra, not labels; "
                             f"choose a regressor, e.g. {DEFAULT_MODEL}")
        folder, profile = models_folder(model, profile, models_dir)
        regressor = load_variant_file(folder, model, profile.name)
        check_regressor(regressor, folder / f"{model}.pt")
        dae_path = folder / "dae.pt"
        dae = load_model(dae_path).eval() if dae_path.exists() else None
        calibration = OODCalibration.load(folder, dae_path) if dae is not None else None
        systematics, problem = read_systematics(folder, model, folder / f"{model}.pt")
        if problem:
            warnings.warn(f"{problem}: sigma_sys is unknown (NaN) and every row is flagged "
                          f"sigma_sys_missing; python -m paper_lib systematics --profile "
                          f"{profile.name} makes it")
        return cls(model, regressor, variant.covariance, dae, calibration,
                   training_bounds(profile, limited=variant.limited), systematics,
                   load_sigma_calibration(folder, model, folder / f"{model}.pt"),
                   profile.name, problem,
                   load_label_calibrations(folder, model, folder / f"{model}.pt",
                                           folder / EMULATOR_FILE))


def models_folder(model: str, profile=None, models_dir=None):
    """(folder, Profile) of the weights of ``model``: ``models_dir`` with the profile its
    weights were trained with, or models/<profile>/. ValueError when ``profile`` contradicts
    the stored weights, or when neither says which profile they belong to."""
    from .. import paths
    from ..profiles import get_profile

    if models_dir is None:
        profile = get_profile(profile or DEFAULT_PROFILE)
        return Path(paths.models / profile.name), profile  # experiments.models_dir
    folder = Path(models_dir)
    stored = stored_profile(folder, model)
    if profile is not None and stored is not None and get_profile(profile).name != stored:
        raise ValueError(f"the weights in {folder} were trained with profile {stored!r} (their "
                         f"network and training settings), not {get_profile(profile).name!r}: "
                         f"drop the profile or give {stored!r}")
    if profile is None and stored is None:
        raise ValueError(f"cannot tell which profile the weights in {folder} were trained with "
                         "(their settings match none): give the profile (--profile)")
    return folder, get_profile(profile or stored)


def stored_profile(folder, model: str) -> str | None:
    """The profile whose network and training settings (architecture, steps per epoch, batch
    size, seed) the stored ``<model>`` in ``folder`` was trained with, read from its
    ``.history.json`` (else its checkpoint); None if none or several match or nothing is
    stored."""
    import json

    from ..profiles import PROFILES
    from ..training.checkpoints import load_checkpoint
    from ..training.variants import network_settings, parse_variant

    history = Path(folder) / f"{model}.history.json"
    try:
        record = (json.loads(history.read_text()) if history.exists()
                  else load_checkpoint(Path(folder) / f"{model}.pt"))
        arch, config = record["arch"], record["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    kwargs = (arch.get("regressor") or arch).get("kwargs", {})
    spec = parse_variant(model)
    found = [name for name, profile in PROFILES.items()
             if all(_plain(kwargs.get(k)) == _plain(v)
                    for k, v in network_settings(spec, profile).items())
             and all(config.get(k) == getattr(profile, k)
                     for k in ("steps_per_epoch", "batch_size", "seed"))]
    return found[0] if len(found) == 1 else None


def _plain(value):
    """Tuples as lists (what JSON gives back), for comparing settings with a stored record."""
    return list(value) if isinstance(value, (tuple, list)) else value


def check_regressor(model: torch.nn.Module, path: Path) -> None:
    """ValueError unless ``model`` (loaded from ``path``) is a regressor: a DAE's weights
    under a regressor's name give spectra, not labels."""
    from ..models import describe

    kind = describe(model).get("kind")
    if kind not in ("resnet", "attention", "denoised"):
        raise ValueError(f"{path} holds a {kind!r} network, not a regressor (resnet, attention): "
                         "were a DAE's weights copied there? Train the variant, or give "
                         "another --model or --models-dir")

"""The paper's variants: which network, covariance, DAE and data each one trains with.

Variant names: ``<resnet|attention>_<diagonal|full>[_dae][_limited|_real]`` and ``dae`` (see
:data:`paper_lib.profiles.ALL_VARIANTS`; ``_real``: the model made for real spectra, trained with
:class:`~paper_lib.echelle.realism.Realism`). :func:`train_variant` builds the model a profile
asks for, picks the optimiser settings (:func:`variant_config`: the paper's, or the profile's
schedule and per-variant budget), fine-tunes ``_dae`` variants behind the frozen DAE, starts
other derived variants from their base where the profile says so (:func:`base_variant`), and
hands over to :func:`~paper_lib.training.loop.fit`.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from ..models import DenoisedRegressor, build_model, describe, unwrap
from ..profiles import Profile
from .checkpoints import check_arch, load_model
from .config import TrainConfig
from .loop import fit

# The model made for real spectra trains without dropout: with dropout the σ head learns the
# error of the thinned network seen in training, not of the network in use (the paper's §4.1
# notes the overestimate; measured on the cpu resnet_diagonal near the Sun, SNR 20: MAE 141 K
# with dropout on vs 38 K in eval mode, σ 227 K), so `predict`'s σ would be several times too wide.
REAL_MODEL_OVERRIDES = {"dropout": 0.0}

VARIANT_PATTERN = re.compile(r"^(resnet|attention)_(diagonal|full)(_dae)?(_limited|_real)?$")


class Variant(NamedTuple):
    """A parsed variant name ``<network>_<covariance>[_dae][_limited|_real]`` (or ``dae``)."""

    name: str
    network: str  # "resnet", "attention" or "dae"
    covariance: str | None
    dae: bool  # regressor behind the frozen DAE
    limited: bool  # trained on the limited T_eff range (paper's † rows)
    real: bool = False  # trained for real spectra (SNR range, CCD gap, RV and continuum errors)

    @property
    def base(self) -> str:
        """The same regressor without the DAE, e.g. ``resnet_full_dae`` → ``resnet_full``."""
        return self.name.replace("_dae", "")


def parse_variant(name: str) -> Variant:
    """``"attention_full_dae"`` → Variant(network="attention", covariance="full", dae=True, …)."""
    if name == "dae":
        return Variant(name, "dae", None, False, False)
    match = VARIANT_PATTERN.match(name)
    if match is None:
        raise ValueError(f"unknown variant {name!r}; expected 'dae' or "
                         "<resnet|attention>_<diagonal|full>[_dae][_limited|_real]")
    network, covariance, dae, suffix = match.groups()
    return Variant(name, network, covariance, dae is not None, suffix == "_limited",
                   suffix == "_real")


def base_variant(spec: Variant) -> str | None:
    """The variant whose trained weights a derived variant can start from (profiles with
    ``init_from_base``): ``_limited`` and ``_real`` → the same network without the suffix,
    ``_full`` → ``_diagonal`` (all weights but the Gaussian head's last layer); plain diagonal
    regressors and the DAE → None. (``_dae`` variants always fine-tune their base.)"""
    if spec.network == "dae" or spec.dae:
        return None
    if spec.limited or spec.real:
        return spec.name.replace("_limited", "").replace("_real", "")
    if spec.covariance == "full":
        return spec.name.replace("_full", "_diagonal")
    return None


class TrainResult(NamedTuple):
    model: nn.Module  # trained, eval mode
    history: list  # one dict per epoch, see fit()
    checkpoint: Path


def variant_config(variant: Variant, profile: Profile, *, lr: float | None = None, finetune: bool = False) -> TrainConfig:
    """The TrainConfig of a variant under a profile: paper §4 optimisers (Adam for regressors,
    AdamW for the DAE) at ``profile.regressor_lr`` / ``profile.dae_lr`` unless ``lr`` is given,
    the profile's lr schedule, and its epochs: ``profile.variant_epochs[name]`` if set, else
    ``dae_epochs``, ``finetune_epochs`` (a variant started from a trained base) or ``epochs``."""
    common = {"steps_per_epoch": profile.steps_per_epoch, "batch_size": profile.batch_size,
              "lr_decay_fraction": profile.lr_decay_fraction, "seed": profile.seed,
              "lr_schedule": profile.lr_schedule, "warmup_fraction": profile.warmup_fraction}
    default = (profile.dae_epochs if variant.network == "dae"
               else profile.finetune_epochs if finetune else profile.epochs)
    epochs = profile.variant_epochs.get(variant.name, default)
    if variant.network == "dae":
        return TrainConfig(epochs=epochs, lr=lr or profile.dae_lr, optimizer="adamw",
                           weight_decay=0.01, task="denoising", **common)
    return TrainConfig(epochs=epochs, lr=lr or profile.regressor_lr, optimizer="adam",
                       task="regression", **common)


def _load_dae(dae) -> nn.Module:
    if isinstance(dae, (str, Path)):
        return load_model(dae, kind="dae")
    if dae is None or describe(dae)["kind"] != "dae":
        raise ValueError("a '_dae' variant needs dae= a trained DenoisingAutoencoder or the path of its checkpoint")
    return dae


def _init_from_base(regressor: nn.Module, base: Path) -> None:
    """Copy the weights of a trained regressor checkpoint (same architecture) into ``regressor``."""
    trained = load_model(base)
    check_arch(describe(regressor), describe(trained), base)
    regressor.load_state_dict(trained.state_dict())


def _transfer_weights(regressor: nn.Module, base: Path) -> int:
    """Copy every tensor of a trained checkpoint whose name and shape match into ``regressor``
    (same network and sizes; a full-covariance head keeps its own last layer). Returns how many
    tensors were copied; ValueError if the networks differ."""
    trained = load_model(base)
    if describe(trained)["kind"] != describe(regressor)["kind"]:
        raise ValueError(f"{base} holds a {describe(trained)['kind']}, not a {describe(regressor)['kind']}")
    own = regressor.state_dict()
    matching = {k: v for k, v in trained.state_dict().items() if k in own and own[k].shape == v.shape}
    if len(matching) < len(own) // 2:
        raise ValueError(f"{base}: only {len(matching)} of {len(own)} tensors fit {describe(regressor)}")
    regressor.load_state_dict(matching, strict=False)
    return len(matching)


def train_variant(
    variant: str,
    profile: Profile,
    source,
    val_batch,
    out_dir: str | Path,
    *,
    dae: nn.Module | str | Path | None = None,
    init_from: str | Path | None = None,
    lr: float | None = None,
    until_epoch: int | None = None,
    progress: bool = True,
    num_threads: int | None = None,
) -> TrainResult:
    """Train (or resume, or just load) one variant of the paper; checkpoint ``out_dir/<variant>.pt``.

    variant: 'dae' or ``<resnet|attention>_<diagonal|full>[_dae][_limited|_real]`` (profiles.ALL_VARIANTS).
    source / val_batch: training source and fixed validation Batch; for ``_limited`` variants
    the caller passes a source restricted to ``profile.limited_teff`` at ``profile.snr_limited``.
    dae: for ``_dae`` variants, the trained DAE (module or checkpoint path); it is frozen.
    init_from: for ``_dae`` variants, the checkpoint of the regressor to fine-tune behind the DAE
    for ``profile.finetune_epochs``; default ``out_dir/<variant without _dae>.pt`` if it exists,
    else the regressor is trained from scratch for ``profile.epochs`` (with a warning); for
    variants that start from their base (``init_from_base``), that base's checkpoint (default
    ``out_dir/<base>.pt``).
    lr: override the profile's learning rate (``regressor_lr`` or ``dae_lr``; paper 1e-4 / 3e-4).
    Model sizes come from ``profile.resnet`` / ``profile.attention`` / ``profile.dae``.
    """
    spec = parse_variant(variant)
    out_dir = Path(out_dir)
    checkpoint = out_dir / f"{variant}.pt"
    torch.manual_seed(profile.seed)  # same initial weights on every run and every rank
    model, finetune = _variant_model(spec, profile, out_dir, dae, init_from)
    config = variant_config(spec, profile, lr=lr, finetune=finetune)
    history = fit(model, source, val_batch, config, checkpoint, variant=variant,
                  until_epoch=until_epoch, progress=progress, num_threads=num_threads)
    return TrainResult(unwrap(model).eval(), history, checkpoint)


def network_settings(spec: Variant, profile: Profile) -> dict:
    """Constructor settings of a variant's regressor: the profile's (``profile.resnet`` or
    ``profile.attention``), with :data:`REAL_MODEL_OVERRIDES` for a ``_real`` variant where the
    network has that setting, and its line mask's pixels (``hidden_runs``) where it has one."""
    from ..echelle.line_mask import pixel_runs

    settings = dict(getattr(profile, spec.network))
    if spec.real:
        settings.update({k: v for k, v in REAL_MODEL_OVERRIDES.items() if k in settings})
        runs = pixel_runs(real_options(profile)["masked_wavelengths"])
        if runs and spec.network != "resnet":
            raise ValueError(f"{spec.name}: only the resnet hides a line mask's pixels")
        if runs:
            settings["hidden_runs"] = runs
    return settings


def real_options(profile: Profile) -> dict:
    """The :class:`~paper_lib.echelle.realism.Realism` options of a ``_real`` variant:
    ``profile.real``, with the profile's line mask as ``masked_wavelengths`` unless it names
    its own (:func:`~paper_lib.evaluation.line_mask.line_mask_intervals`)."""
    from ..echelle.line_mask import line_mask_intervals

    options = dict(profile.real)
    if "masked_wavelengths" not in options:
        options["masked_wavelengths"] = line_mask_intervals(profile)
    return options


def _variant_model(spec: Variant, profile: Profile, out_dir: Path, dae, init_from) -> tuple[nn.Module, bool]:
    """The untrained model of a variant (sizes from the profile) and whether it is fine-tuned:
    a ``_dae`` variant starts from its trained base regressor, behind the frozen DAE."""
    if spec.network == "dae":
        return build_model("dae", **profile.dae), False
    model = build_model(spec.network, covariance=spec.covariance, **network_settings(spec, profile))
    if not spec.dae:
        base = base_variant(spec) if profile.init_from_base else None
        if base is None:
            return model, False
        path = Path(init_from) if init_from is not None else out_dir / f"{base}.pt"
        if not path.exists():
            raise FileNotFoundError(f"{spec.name} starts from {base}, which is not trained yet "
                                    f"({path}); train {base} first")
        _transfer_weights(model, path)
        return model, True
    base = Path(init_from) if init_from is not None else out_dir / f"{spec.base}.pt"
    finetune = base.exists()
    if finetune:
        _init_from_base(model, base)
    elif init_from is not None:
        raise FileNotFoundError(f"init_from checkpoint {base} does not exist")
    else:
        warnings.warn(f"{base} not found: training {spec.name} from scratch for {profile.epochs} epochs", stacklevel=3)
    return DenoisedRegressor(_load_dae(dae), model), finetune

"""The three networks and how to build them from a name or a stored architecture.

* ``resnet``    – :class:`ResNet`, 5 residual blocks + 3 FC layers → Gaussian
* ``attention`` – :class:`AttentionNet`, 11 conv layers + 3 attention blocks → Gaussian
* ``dae``       – :class:`DenoisingAutoencoder`, noisy → clean spectra
* ``denoised``  – :class:`DenoisedRegressor`, a frozen DAE in front of a regressor (built from
  an architecture record only; use the class directly to combine trained parts)

All regressors end in :class:`~paper_lib.models.gaussian.GaussianHead`, which returns a
:class:`~paper_lib.models.gaussian.GaussianOutput` (mean and Cholesky factor, scaled labels).

Every model carries ``model.arch = {"kind", "covariance", "kwargs"}`` (for ``denoised``:
``{"kind", "covariance", "dae", "regressor"}``) — a JSON-compatible record that checkpoints
store and :func:`build_from_arch` turns back into an untrained model of the same shape.

Each model file ends in a shape demo: ``python paper_lib/models/attention.py``.
"""

from __future__ import annotations

import copy

from torch import nn

from paper_lib.models.attention import AttentionNet
from paper_lib.models.dae import DenoisedRegressor, DenoisingAutoencoder
from paper_lib.models.gaussian import COVARIANCES, GaussianOutput
from paper_lib.models.resnet import ResNet

REGRESSORS = {"resnet": ResNet, "attention": AttentionNet}
KINDS = ("resnet", "attention", "dae")

__all__ = [
    "KINDS",
    "AttentionNet",
    "DenoisedRegressor",
    "DenoisingAutoencoder",
    "GaussianOutput",
    "ResNet",
    "build_from_arch",
    "build_model",
    "describe",
    "unwrap",
]


def build_model(kind: str, *, covariance: str = "diagonal", **kwargs) -> nn.Module:
    """A new model: kind in {'resnet', 'attention', 'dae'}; kwargs go to its constructor
    (e.g. ``profile.resnet``). ``covariance`` ('diagonal' or 'full') applies to the regressors;
    the DAE takes no covariance (pass the default or None)."""
    if kind == "dae":
        if covariance not in (None, "diagonal"):
            raise ValueError(f"the DAE has no covariance; got covariance={covariance!r}")
        return DenoisingAutoencoder(**kwargs)
    if kind not in REGRESSORS:
        raise ValueError(f"unknown model kind {kind!r}; valid kinds are: {', '.join(KINDS)}")
    if covariance not in COVARIANCES:
        raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
    return REGRESSORS[kind](covariance=covariance, **kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel / DataParallel wrapper (or the model)."""
    return model.module if hasattr(model, "module") and not hasattr(model, "arch") else model


def describe(model: nn.Module) -> dict:
    """A deep copy of the model's architecture record (see the module docstring)."""
    model = unwrap(model)
    if not hasattr(model, "arch"):
        raise ValueError(f"{type(model).__name__} is not a paper_lib model (it has no .arch record)")
    return copy.deepcopy(model.arch)


def build_from_arch(arch: dict) -> nn.Module:
    """An untrained model with the architecture ``arch`` (as returned by :func:`describe`)."""
    try:
        if arch["kind"] == "denoised":
            return DenoisedRegressor(build_from_arch(arch["dae"]), build_from_arch(arch["regressor"]))
        return build_model(arch["kind"], covariance=arch["covariance"], **arch["kwargs"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"invalid architecture record {arch!r}: {err}") from err

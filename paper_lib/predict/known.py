"""What a user already knows about a star, and the network's answer conditioned on it.

A spectroscopist often knows one label better than a spectrum gives it: log g from a Gaia
parallax or asteroseismology, Teff from photometry. ``predict --fix logg=4.44±0.05`` (API:
``fix=["logg=4.44±0.05"]`` or ``{"logg": (4.44, 0.05)}``) treats such a value as a Gaussian
measurement and combines it with the network's Gaussian answer, whose covariance is the
network's own (statistical) plus the systematic one of the physics variants
(:mod:`paper_lib.evaluation.systematics`). Their correlations, i.e. the Teff–log g–[M/H]
direction along which the synthetic physics moves answers, carry the known label into the
others: the closed-form product of two Gaussians (:func:`condition`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..labels import LABEL_NAMES, LABEL_UNIT

FIXABLE = ("teff", "logg", "mh", "vsini")
_PATTERN = re.compile(r"^\s*([a-z_]+)\s*=\s*([-+]?[0-9.eE+-]+?)\s*(?:(?:±|\+-|\+/-)\s*"
                      r"([0-9.eE+-]+))?\s*$")
DEFAULT_SIGMA = {"teff": 50.0, "logg": 0.05, "mh": 0.05, "vsini": 0.5}  # when none is given


@dataclass(frozen=True)
class KnownLabel:
    """A label known from elsewhere: ``value`` ± ``sigma`` in the label's unit (K, dex, km/s)."""

    name: str
    value: float
    sigma: float

    def __str__(self) -> str:
        return f"{self.name}={self.value:g}±{self.sigma:g}"


def parse_known(text: str, *, option: str = "--fix") -> KnownLabel:
    """``"logg=4.44±0.05"`` (also ``+-`` or ``+/-``; without σ the default of
    :data:`DEFAULT_SIGMA`) → :class:`KnownLabel`; ValueError naming what is wrong."""
    match = _PATTERN.match(str(text).replace(" ", ""))
    if match is None:
        raise ValueError(f"{option} {text!r}: expected LABEL=VALUE±SIGMA, e.g. logg=4.44±0.05 "
                         f"(labels: {', '.join(FIXABLE)})")
    name, value, sigma = match.groups()
    if name not in FIXABLE:
        raise ValueError(f"{option} {text!r}: unknown label {name!r}; use one of "
                         f"{', '.join(FIXABLE)}")
    try:
        value = float(value)
        sigma = DEFAULT_SIGMA[name] if sigma is None else float(sigma)
    except ValueError:
        raise ValueError(f"{option} {text!r}: value and σ must be numbers") from None
    if not (np.isfinite(value) and np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"{option} {text!r}: the value must be finite and σ positive")
    return KnownLabel(name, value, sigma)


def known_labels(fix, bounds=None, *, option: str = "--fix") -> list[KnownLabel]:
    """Known labels from strings, KnownLabel objects or a {name: (value, σ)} dict; each label
    at most once and, if ``bounds`` (4, 2) is given, inside it (the network's training range)."""
    if fix is None:
        return []
    if isinstance(fix, (str, KnownLabel)):
        fix = [fix]
    if isinstance(fix, dict):
        fix = [f"{k}={v[0]}±{v[1]}" if np.ndim(v) else f"{k}={v}" for k, v in fix.items()]
    known = [f if isinstance(f, KnownLabel) else parse_known(f, option=option) for f in fix]
    names = [k.name for k in known]
    if len(set(names)) != len(names):
        raise ValueError(f"{option}: each label at most once, got {', '.join(names)}")
    for k in known:
        if bounds is not None:
            lo, hi = bounds[LABEL_NAMES.index(k.name)]
            if not lo <= k.value <= hi:
                raise ValueError(f"{option} {k}: {k.name} = {k.value:g} {LABEL_UNIT[k.name]} is "
                                 f"outside the range the network was trained on "
                                 f"[{lo:g}, {hi:g}]")
    return known


def condition(mean, cov, known: list[KnownLabel]) -> tuple[np.ndarray, np.ndarray]:
    """The Gaussian (``mean`` (4,), ``cov`` (4, 4)) multiplied by independent Gaussian
    measurements of some labels: the posterior mean and covariance (closed form,
    μ' = μ + Σ Hᵀ (H Σ Hᵀ + R)⁻¹ (y − H μ), Σ' = Σ − Σ Hᵀ (H Σ Hᵀ + R)⁻¹ H Σ)."""
    mean = np.asarray(mean, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    if not known:
        return mean.copy(), cov.copy()
    index = [LABEL_NAMES.index(k.name) for k in known]
    y = np.array([k.value for k in known])
    r = np.diag([k.sigma ** 2 for k in known])
    gain = cov[:, index] @ np.linalg.inv(cov[np.ix_(index, index)] + r)
    posterior_mean = mean + gain @ (y - mean[index])
    posterior_cov = cov - gain @ cov[index, :]
    return posterior_mean, 0.5 * (posterior_cov + posterior_cov.T)

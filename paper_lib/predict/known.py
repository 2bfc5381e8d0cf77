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

from ..labels import LABEL_MAX, LABEL_MIN, LABEL_NAMES, LABEL_UNIT

FIXABLE = ("teff", "logg", "mh", "vsini")
_PATTERN = re.compile(r"^\s*([^=]+?)\s*=\s*([-+]?[0-9.eE+-]+?)\s*(?:(?:±|\+-|\+/-)\s*"
                      r"([0-9.eE+-]+))?\s*$")
# other spellings of the labels (compared in lower case without spaces): as papers write them
ALIASES = {"t_eff": "teff", "log_g": "logg", "[m/h]": "mh", "m/h": "mh", "[fe/h]": "mh",
           "feh": "mh", "v_sin_i": "vsini", "vsin(i)": "vsini"}
MINUS_SIGNS = "\u2212\u2013\u2012"  # Unicode minus, en dash, figure dash: read as "-"
MAX_SIGMA_RANGES = 10.0  # a σ above this × the label's Table-1 range carries no information
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
    plain = str(text).replace(" ", "").translate({ord(c): "-" for c in MINUS_SIGNS})
    match = _PATTERN.match(plain)
    if match is None:
        raise ValueError(f"{option} {text!r}: expected LABEL=VALUE±SIGMA, e.g. logg=4.44±0.05 "
                         f"(labels: {', '.join(FIXABLE)}; σ after ±, +- or +/-)")
    name, value, sigma = match.groups()
    name = ALIASES.get(name.lower(), name.lower())
    if name not in FIXABLE:
        raise ValueError(f"{option} {text!r}: unknown label {match.group(1)!r}; use one of "
                         f"{', '.join(FIXABLE)}")
    try:
        value = float(value)
        sigma = DEFAULT_SIGMA[name] if sigma is None else float(sigma)
    except ValueError:
        raise ValueError(f"{option} {text!r}: value and σ must be numbers") from None
    if not (np.isfinite(value) and np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"{option} {text!r}: the value must be finite and σ positive")
    i = LABEL_NAMES.index(name)
    widest = MAX_SIGMA_RANGES * (LABEL_MAX[i] - LABEL_MIN[i])
    if sigma > widest:
        raise ValueError(f"{option} {text!r}: σ = {sigma:g} {LABEL_UNIT[name]} is larger than "
                         f"{widest:g} ({MAX_SIGMA_RANGES:g} × the label's range) and says "
                         f"nothing: leave {name} out instead")
    return KnownLabel(name, value, sigma)


def known_labels(fix, bounds=None, *, option: str = "--fix") -> list[KnownLabel]:
    """Known labels from strings, KnownLabel objects or a {name: (value, σ)} dict; each label
    at most once and, if ``bounds`` (4, 2) is given, inside it (the network's training range)."""
    if fix is None:
        return []
    if isinstance(fix, (str, KnownLabel)):
        fix = [fix]
    if isinstance(fix, dict):
        fix = [_from_pair(k, v, option) for k, v in fix.items()]
    if not isinstance(fix, (list, tuple)):
        raise ValueError(f"{option}: give 'LABEL=VALUE±SIGMA' strings (a list of them) or a "
                         f"{{label: (value, σ)}} dict, not {type(fix).__name__} {fix!r}")
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


def _from_pair(name, value, option: str) -> str:
    """``{name: value}`` or ``{name: (value, σ)}`` as ``"name=value±σ"``; ValueError else."""
    if np.ndim(value) == 0:
        return f"{name}={value}"
    if np.ndim(value) == 1 and len(value) == 2:
        return f"{name}={value[0]}±{value[1]}"
    raise ValueError(f"{option} {{{name!r}: {value!r}}}: give a value or (value, σ)")


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

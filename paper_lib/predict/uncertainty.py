"""The σ that ``predict`` reports: the network's own plus the systematic one of the physics.

* **statistical** (``<label>_sigma_stat``): the network's Gaussian — its error on our synthetic
  spectra, scaled by the factor for the spectrum's estimated SNR where the model has a σ
  calibration (:mod:`paper_lib.evaluation.sigma_calibration`, ``sigma_calibration.json``);
* **systematic** (``<label>_sigma_sys``): how far the answer moves when the synthesis physics
  is swapped for other published choices (:mod:`paper_lib.evaluation.systematics`, stored in
  ``models/<profile>/systematics.json``) — the part a real star adds;
* **calibration** (``<label>_sigma_cal``, only where a label calibration against benchmark
  stars is applied, :mod:`paper_lib.evaluation.label_calibration`): what that calibration does
  not know on a star it was not fitted on;
* **total** (``<label>_sigma``): all added as covariances, what every consumer should use.

Without a usable systematic model (``systematics.json`` absent, without an entry for the
model, made for other weights or holding non-finite numbers) ``<label>_sigma_sys`` is NaN, the
total holds the statistical part only (too small on real stars: the Sun ±18 K instead of
±87 K) and the row is flagged ``sigma_sys_missing``; never a silent 0.

Known labels (``--fix``) condition the total Gaussian (:func:`paper_lib.predict.known.condition`);
the posterior variance is then divided between the two parts in the proportion they had
before. ``--refine`` replaces the statistical part by the least-squares fit's covariance and
conditions the systematic part on the known labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..labels import LABEL_NAMES
from .known import KnownLabel, condition


@dataclass
class Answer:
    """One star's answer: ``mean`` (4,), ``cov`` (4, 4) total, and the σ (4,) of its parts."""

    mean: np.ndarray
    cov: np.ndarray
    sigma_stat: np.ndarray
    sigma_sys: np.ndarray
    sigma_cal: np.ndarray | None = None  # (4,) the label calibration's σ; None: not calibrated

    @property
    def sigma(self) -> np.ndarray:
        return np.sqrt(np.clip(np.diag(self.cov), 0.0, None))


def systematic_covariance(systematics, mean) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4, 4) systematic covariance at the answers ``mean`` (N, 4), and (N,) whether it is
    known: zeros and False without a model or where its covariance is not finite (the answer
    then holds the statistical part only and is flagged ``sigma_sys_missing``)."""
    mean = np.atleast_2d(mean)
    if systematics is None:
        return np.zeros((len(mean), mean.shape[1], mean.shape[1])), np.zeros(len(mean), bool)
    cov = systematics.covariance(mean)
    known = np.all(np.isfinite(cov), axis=(1, 2))
    return np.where(known[:, None, None], cov, 0.0), known


def combine(mean, cov_stat, cov_sys, known: list[KnownLabel] = (), sigma_cal=None) -> Answer:
    """The answer of one star from the network's ``mean`` (4,) and covariance ``cov_stat``
    (4, 4), the systematic ``cov_sys`` (4, 4) and, for a calibrated answer, the calibration's
    ``sigma_cal`` (4,), conditioned on ``known`` labels (each part keeps its share)."""
    cov_cal = np.diag(np.square(sigma_cal)) if sigma_cal is not None else np.zeros_like(cov_sys)
    parts = np.stack([np.diag(cov_stat), np.diag(cov_sys), np.diag(cov_cal)])
    mean, cov = condition(mean, cov_stat + cov_sys + cov_cal, list(known))
    total = parts.sum(axis=0)
    share = np.divide(parts, total, out=np.tile([[1.0], [0.0], [0.0]], (1, len(total))),
                      where=total > 0)
    sigma = np.sqrt(np.clip(np.diag(cov), 0.0, None) * share)
    return Answer(mean, cov, sigma[0], sigma[1], sigma[2] if sigma_cal is not None else None)


def refined_answer(refined, cov_sys, known: list[KnownLabel] = ()) -> Answer:
    """The answer of a least-squares refinement: its labels, the fit's covariance as the
    statistical part and ``cov_sys`` conditioned on the ``known`` labels as the systematic."""
    _, sys_posterior = condition(np.zeros(len(cov_sys)), cov_sys, list(known))
    fit = np.array(refined.cov, dtype=np.float64)
    for k in known:  # a held label's σ is in the fit's covariance already
        i = LABEL_NAMES.index(k.name)
        sys_posterior[i, :] = sys_posterior[:, i] = 0.0
    cov = fit + sys_posterior
    return Answer(np.asarray(refined.labels, dtype=np.float64), cov,
                  np.sqrt(np.clip(np.diag(fit), 0.0, None)),
                  np.sqrt(np.clip(np.diag(sys_posterior), 0.0, None)))

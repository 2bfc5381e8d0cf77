"""The systematic σ of a prediction: how far a network's answer moves when only the physics does.

For every node of a set spanning FGK dwarfs and giants and the grid's cool and hot edges
(:func:`systematic_nodes`), the network reads the noise-free image of the grid's spectrum and of
each physics variant's spectrum (:mod:`paper_lib.synthetic.variants`) at the same labels and
v sin i; the difference is the variant's *shift* δ (Teff K, log g dex, [M/H] dex, v sin i km/s),
measured against the spectra that differ from the variant's by its one ingredient only (the
grid's, or for the radiative-transfer code the Turbospectrum spectra with the same damping:
:func:`variant_shifts`).
Each variant is treated as one independent 1σ alternative, so the systematic covariance at a
node is Σ_variants δ δᵀ, and between nodes it is a Gaussian-kernel average over the nodes
(:class:`SystematicModel`): a smooth, positive semi-definite function of (Teff, log g, [M/H])
whose correlations carry the Teff–log g–[M/H] direction along which the physics moves answers.

Nothing here uses an observed spectrum: the shifts come from synthetic spectra only. The result
is stored beside the weights (``models/<profile>/systematics.json``, :func:`write_systematics`)
and read by ``predict`` (:func:`load_systematics`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_bytes, file_sha256
from ..labels import LABEL_NAMES, N_LABELS

SYSTEMATICS_FILE = "systematics.json"
RENDER_VSINI_KMS = (2.0, 10.0)  # v sin i [km/s] at which every node is read
# kernel length scales of the smoothing between nodes (Teff K, log g dex, [M/H] dex)
KERNEL_SCALES = (500.0, 1.0, 0.5)
SHIFT_DECIMALS = 5  # stored shifts: 1e-5 K, dex, km/s (far below any σ)
_FULL_TEFF = (4000.0, 4500.0, 5000.0, 5500.0, 5750.0, 6000.0, 6500.0, 7000.0)
_FULL_LOGG = (2.0, 4.0, 4.5)
_FULL_MH = (-1.0, -0.5, 0.0)
_EDGES = ((3750.0, 4.5, 0.0), (3750.0, 4.5, -0.5), (8000.0, 4.0, 0.0), (8000.0, 4.0, -0.5),
          (9000.0, 4.0, 0.0), (9000.0, 4.0, -0.5), (6000.0, 4.5, 0.5), (5000.0, 4.5, 0.5))


_SMOKE = ((5500.0, 4.5, 0.0), (5750.0, 4.5, 0.0), (6000.0, 4.0, -0.5), (4000.0, 1.0, -2.0))


def systematic_nodes(grid_nodes: str) -> list[tuple[float, float, float]]:
    """Nodes (Teff K, log g dex, [M/H] dex) at which the physics variants are measured: the
    four smoke-grid nodes for ``"smoke"`` (three near the Sun, one cool metal-poor giant); else FGK dwarfs and giants (8 Teff × 3 log g × 3
    [M/H]) plus cool, hot and metal-rich edges (80 nodes)."""
    if grid_nodes == "smoke":
        return list(_SMOKE)
    return ([(t, g, m) for t in _FULL_TEFF for g in _FULL_LOGG for m in _FULL_MH]
            + list(_EDGES))


@dataclass
class SystematicModel:
    """Per-variant answer shifts at nodes and the kernel that spreads them between nodes.

    ``nodes`` (M, 4): the labels of each read image (Teff K, log g dex, [M/H] dex, v sin i
    km/s; a node appears once per rendered v sin i); ``shifts`` {variant: (M, 4)} in K, dex,
    dex, km/s (NaN where a variant has no spectrum, e.g. MARCS above 8000 K); ``scales`` the
    kernel's length scales over (Teff, log g, [M/H]).
    """

    nodes: np.ndarray
    shifts: dict
    scales: tuple = KERNEL_SCALES
    meta: dict | None = None

    def covariance(self, labels) -> np.ndarray:
        """Systematic covariance (N, 4, 4) [K, dex, dex, km/s]² at ``labels`` (N, ≥3) physical:
        Σ over variants of the kernel-weighted mean of δ δᵀ over the nodes that variant has
        (where a variant has no spectrum, e.g. MARCS above 8000 K, its nearest nodes count; a
        variant measured at one node only, the ⟨3D⟩ Sun, counts the same at every label)."""
        points = np.atleast_2d(np.asarray(labels, dtype=np.float64))[:, :3]
        distance = (points[:, None, :] - self.nodes[None, :, :3]) / np.asarray(self.scales)
        kernel = np.exp(-0.5 * np.sum(distance ** 2, axis=-1))  # (N, M)
        total = np.zeros((len(points), N_LABELS, N_LABELS))
        for shift in self.shifts.values():
            have = np.all(np.isfinite(shift), axis=1)
            if not have.any():
                continue
            weights = kernel[:, have]
            norm = weights.sum(axis=1, keepdims=True)
            outer = np.einsum("mi,mj->mij", shift[have], shift[have]).reshape(have.sum(), -1)
            mean = np.divide(weights @ outer, norm, out=np.zeros((len(points), outer.shape[1])),
                             where=norm > 0)
            total += mean.reshape(-1, N_LABELS, N_LABELS)
        return total

    def sigma(self, labels) -> np.ndarray:
        """Systematic σ (N, 4) [K, dex, dex, km/s] at ``labels``."""
        return np.sqrt(np.einsum("nii->ni", self.covariance(labels)))

    def to_dict(self) -> dict:
        return {"labels": list(LABEL_NAMES), "nodes": self.nodes.tolist(),
                "scales": list(self.scales), "meta": self.meta or {},
                "shifts": {k: np.where(np.isfinite(v), np.round(v, SHIFT_DECIMALS), None).tolist()
                           for k, v in self.shifts.items()}}

    @classmethod
    def from_dict(cls, record: dict) -> "SystematicModel":
        if list(record.get("labels", [])) != list(LABEL_NAMES):
            raise ValueError(f"systematics record has labels {record.get('labels')}, "
                             f"expected {list(LABEL_NAMES)}")
        shifts = {k: np.array(v, dtype=np.float64).reshape(-1, N_LABELS)
                  for k, v in record["shifts"].items()}
        return cls(np.array(record["nodes"], dtype=np.float64).reshape(-1, N_LABELS), shifts,
                   tuple(record["scales"]), record.get("meta"))

    def problem(self) -> str | None:
        """What makes the model unusable, or None: non-finite nodes or scales, no variant
        with a finite shift, or a shift finite in some labels only (a node a variant lacks is
        NaN in all four; a variant with no node at all adds nothing)."""
        scales = np.asarray(self.scales, dtype=np.float64)
        if not (np.all(np.isfinite(self.nodes)) and np.all(np.isfinite(scales))
                and np.all(scales > 0)):
            return "non-finite nodes or kernel scales"
        if not any(np.isfinite(shift).all(axis=1).any() for shift in self.shifts.values()):
            return "no physics variant with a finite shift"
        for name, shift in self.shifts.items():
            finite = np.isfinite(shift)
            if np.any(finite.any(axis=1) & ~finite.all(axis=1)):
                return f"variant {name!r} has shifts that are NaN or inf in some labels only"
        return None


def variant_shifts(answers: dict[str, np.ndarray], versus: dict[str, str]) -> dict:
    """{variant: its answers minus those on the spectra it is measured against} (n, 4) each.

    ``answers`` {"grid" or variant name: (n, 4) physical means at the same labels};
    ``versus`` {variant name: "grid" or the name of the variant that differs from it by one
    ingredient only} (:attr:`~paper_lib.synthetic.variants.PhysicsVariant.versus`), so that
    e.g. the radiative-transfer code's shift holds no damping difference. NaN where either
    answer is missing.
    """
    return {name: np.asarray(answers[name]) - np.asarray(answers[base])
            for name, base in versus.items()}


def systematics_path(models_dir) -> Path:
    return Path(models_dir) / SYSTEMATICS_FILE


def weights_stamp(models_dir, model: str) -> dict:
    """{"weights", "weights_sha256"} of ``models_dir/<model>.pt`` (the SHA-256 None if the
    file is absent: such an entry is never used by ``predict``)."""
    weights = Path(models_dir) / f"{model}.pt"
    return {"weights": weights.name,
            "weights_sha256": file_sha256(weights) if weights.exists() else None}


def write_systematics(models_dir, per_model: dict[str, SystematicModel], meta: dict) -> Path:
    """Write {model name: SystematicModel} and the run's ``meta`` atomically to
    ``models_dir/systematics.json``, each entry with the SHA-256 of the weights beside it
    (:func:`weights_stamp`), like ``sigma_calibration.json`` and ``ood_calibration.json``."""
    models = {k: {**v.to_dict(), **weights_stamp(models_dir, k)} for k, v in per_model.items()}
    return write_systematics_record(models_dir, {"meta": meta, "models": models})


def write_systematics_record(models_dir, record: dict) -> Path:
    """Write a whole systematics record (``{"meta", "models"}``) atomically."""
    path = systematics_path(models_dir)
    atomic_write_bytes(path, json.dumps(record, indent=1).encode())
    return path


def read_systematics_record(models_dir) -> dict | None:
    """The record of ``models_dir/systematics.json`` (None if absent); ValueError naming the
    file and the command that remakes it if it is not a readable record."""
    path = systematics_path(models_dir)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        if not isinstance(record.get("models"), dict):
            raise ValueError("no 'models' mapping")
    except (ValueError, AttributeError) as error:
        raise ValueError(f"{path}: not a readable systematics file ({error}); remake it with "
                         f"python -m paper_lib systematics --profile <profile>") from None
    return record


def read_systematics(models_dir, model: str, weights_path=None
                     ) -> tuple[SystematicModel | None, str | None]:
    """(the systematic model of network ``model``, None) or (None, why it cannot be used):
    the file is absent, holds no entry for ``model``, was made for other weights than
    ``weights_path`` (when given; compared by SHA-256) or holds non-finite numbers
    (:meth:`SystematicModel.problem`). A malformed file raises ValueError naming it."""
    path = systematics_path(models_dir)
    record = read_systematics_record(models_dir)
    if record is None:
        return None, f"{path} not found"
    entry = record["models"].get(model)
    if entry is None:
        return None, f"{path} holds no entry for {model}"
    if weights_path is not None and "weights_sha256" not in entry:
        return None, (f"{path} records no SHA-256 of the weights it was made for (an older "
                      "file; python -m paper_lib systematics --stamp-weights adds it)")
    if weights_path is not None and entry.get("weights_sha256") != file_sha256(weights_path):
        return None, (f"{path} was made for other weights than {weights_path} (SHA-256 "
                      f"{str(entry.get('weights_sha256'))[:12]}… recorded)")
    try:
        systematic = SystematicModel.from_dict(entry)
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a readable systematics file ({error}); remake it with "
                         f"python -m paper_lib systematics --profile <profile>") from error
    problem = systematic.problem()
    return (None, f"{path}, entry {model}: {problem}") if problem else (systematic, None)


def load_systematics(models_dir, model: str, weights_path=None) -> SystematicModel | None:
    """The systematic model of network ``model`` from ``models_dir``, or None if
    :func:`read_systematics` finds none it can use (absent, no entry, other weights than
    ``weights_path`` when given, non-finite numbers). A malformed file raises ValueError."""
    return read_systematics(models_dir, model, weights_path)[0]

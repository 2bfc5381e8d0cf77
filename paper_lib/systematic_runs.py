"""The systematic σ, run: physics-variant spectra at the nodes, each network's answer shifts,
``models/<profile>/systematics.json`` — what notebook 06 and ``python -m paper_lib systematics``
call (the glue beside :mod:`paper_lib.experiments`; the pieces live in
:mod:`paper_lib.synthetic.variants` and :mod:`paper_lib.evaluation.systematics`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import paths
from .echelle.continuum import normalise_orders
from .echelle.generator import SpectrumGenerator
from .experiments import load_variant, models_dir
from .predict import predict
from .profiles import Profile
from .training.variants import VARIANT_PATTERN


def node_images(grid, fluxes, labels, vmacro=None) -> np.ndarray:
    """Normalised, noise-free images (n, 8, 4096) of spectra ``fluxes`` (n, n_wave) on the
    grid's wavelengths at ``labels`` (n, 4) physical; ``vmacro`` (n,) ζ [km/s], default the
    generator's relation (Doyle et al. 2014)."""
    generator = SpectrumGenerator(grid, snr=1.0, seed=0)
    labels = np.asarray(labels, dtype=np.float64)
    vmacro = generator.vmacro(labels) if vmacro is None else np.asarray(vmacro)
    images = generator.render(np.asarray(fluxes, dtype=np.float32), labels[:, 3],
                              torch.from_numpy(vmacro.astype(np.float32)))
    return normalise_orders(images.numpy())


SOLAR_MODEL_TITLES = {"grid": "ATLAS9 1D (grid)", "sun_marcs1d": "MARCS 1D",
                      "sun_mean3d": "CO5BOLD <3D>"}


def solar_model_images(grid, vsini: float = 2.0, *, progress: bool = False) -> dict:
    """{title: noise-free normalised image (8, 4096)} of the Sun at
    :data:`~paper_lib.synthetic.atmospheres.SOLAR_MODEL_NODE` and ``vsini`` [km/s] from three
    model atmospheres: the grid's (ATLAS9, interpolated in ``grid``), the 1D MARCS model and the
    ⟨3D⟩ CO5BOLD model of the Sun (the ``sun_marcs1d`` / ``sun_mean3d`` variants' node files,
    synthesised if missing: ≈ 8 s each). Titles: :data:`SOLAR_MODEL_TITLES`."""
    from .experiments import synthetic_images
    from .synthetic.atmospheres import SOLAR_MODEL_NODE
    from .synthetic.variants import build_variant_nodes, get_variant

    labels = np.array([[*SOLAR_MODEL_NODE, vsini]])
    images = {SOLAR_MODEL_TITLES["grid"]: synthetic_images(grid, labels)[0]}
    for name in ("sun_marcs1d", "sun_mean3d"):
        flux = build_variant_nodes(get_variant(name), [SOLAR_MODEL_NODE],
                                   progress=progress)[SOLAR_MODEL_NODE]
        images[SOLAR_MODEL_TITLES[name]] = node_images(grid, flux[None], labels)[0]
    return images


def _placed(rows, images) -> np.ndarray:
    """Images (len(rows), 8, 4096): ``images`` where the boolean ``rows`` are True, NaN elsewhere."""
    out = np.full((len(rows),) + images.shape[1:], np.nan, images.dtype)
    out[rows] = images
    return out


def _variant_sets(grid, nodes, *, workers: int, progress: bool) -> tuple[np.ndarray, dict]:
    """Labels (n, 4) of every (node, v sin i) — the grid's ``nodes``, then the Sun's labels for
    the variants with a model of the Sun only — and {variant or "grid": images (n, 8, 4096),
    NaN images where a variant (or the grid) lacks the node}."""
    from .evaluation.systematics import RENDER_VSINI_KMS
    from .synthetic.atmospheres import SOLAR_MODEL_NODE
    from .synthetic.variants import VARIANTS, build_variant_nodes, vmacro_vf05_kms

    nodes = [tuple(float(v) for v in n) for n in nodes]
    extra = [SOLAR_MODEL_NODE] if any(v.solar_only for v in VARIANTS) else []
    labels = np.array([(*n, v) for n in nodes + extra for v in RENDER_VSINI_KMS])
    on_grid = np.arange(len(labels)) < len(nodes) * len(RENDER_VSINI_KMS)
    base = np.repeat(np.stack([grid.node_flux(*n) for n in nodes]), len(RENDER_VSINI_KMS), 0)
    sets = {"grid": _placed(on_grid, node_images(grid, base, labels[on_grid]))}
    for variant in VARIANTS:
        if not variant.needs_synthesis:  # macroturbulence: the grid's spectra, another ζ
            sets[variant.name] = _placed(on_grid, node_images(
                grid, base, labels[on_grid], vmacro_vf05_kms(labels[on_grid, 0])))
            continue
        found = build_variant_nodes(variant, nodes + extra, workers=workers, progress=progress)
        have = np.array([tuple(n) in found for n in labels[:, :3].tolist()])
        images = np.full_like(sets["grid"], np.nan)
        if have.any():
            flux = np.stack([found[tuple(n)] for n in labels[have, :3].tolist()])
            images[have] = node_images(grid, flux, labels[have])
        sets[variant.name] = images
    return labels, sets


def measure_systematics(profile: Profile, grid, model_names, out_dir=None, *, workers: int = 2,
                        progress: bool = True) -> dict:
    """{model name: SystematicModel}: each network's answer shifts between every physics
    variant's spectra and those it is measured against (the grid's, or another variant's:
    ``PhysicsVariant.versus``) at :func:`~paper_lib.evaluation.systematics.systematic_nodes`."""
    from .evaluation.systematics import SystematicModel, systematic_nodes, variant_shifts
    from .synthetic.variants import TERMS

    versus = {v.name: v.versus for v in TERMS}
    nodes = [n for n in systematic_nodes(profile.grid_nodes) if grid.has_node(*n)]
    labels, sets = _variant_sets(grid, nodes, workers=workers, progress=progress)
    result = {}
    for name in model_names:
        model = load_variant(profile, name, out_dir)

        def read(images, model=model):
            out = np.full((len(images), 4), np.nan)
            ok = np.all(np.isfinite(images), axis=(1, 2))
            if ok.any():
                out[ok] = predict(model, torch.from_numpy(images[ok]))[0]
            return out

        answers = {k: read(v) for k, v in sets.items()}
        result[name] = SystematicModel(labels, variant_shifts(answers, versus))
    return result


def systematics_grid(profile: Profile, *, workers: int = 2, progress: bool = True):
    """The grid's own spectra at the systematic nodes of ``profile`` as a small Grid, built
    (resumably) into the same node files that a full grid build uses."""
    from .synthetic.atmospheres import atmosphere_catalogue
    from .synthetic.build import build_grid
    from .synthetic.grid import Grid
    from .synthetic.turbospectrum import physics_id
    from .evaluation.systematics import systematic_nodes

    catalogue = atmosphere_catalogue()
    nodes = [n for n in systematic_nodes(profile.grid_nodes) if n in catalogue]
    out = paths.cache_dir() / "grids" / f"systematic_nodes_{profile.grid_nodes}_{physics_id()}.fits"
    out.parent.mkdir(parents=True, exist_ok=True)
    build_grid(nodes, out, workers=workers, progress=progress)
    return Grid.from_fits(out)


def regressor_names(folder) -> list[str]:
    """The variants whose weights lie in ``folder`` (``<variant>.pt``), sorted: not the DAE,
    not the spectrum emulator nor any other file."""
    return sorted(p.stem for p in Path(folder).glob("*.pt") if VARIANT_PATTERN.match(p.stem))


def run_systematics(profile: Profile, model_names=None, out_dir=None, *, workers: int = 2,
                    progress: bool = True) -> Path:
    """Measure every regressor's systematic shifts (:func:`measure_systematics`) on the nodes of
    :func:`systematics_grid` and write ``models/<profile>/systematics.json`` with provenance."""
    from .evaluation.systematics import KERNEL_SCALES, write_systematics
    from .provenance import provenance
    from .synthetic.sme import require_pysme
    from .synthetic.variants import VARIANTS, variant_physics_id

    if any(v.code == "sme" for v in VARIANTS):
        require_pysme()  # before an hour of other syntheses, not after
    folder = Path(out_dir or models_dir(profile))
    names = model_names or regressor_names(folder)
    grid = systematics_grid(profile, workers=workers, progress=progress)
    result = measure_systematics(profile, grid, names, folder, workers=workers, progress=progress)
    meta = {"variants": {v.name: {"changes": v.changes, "versus": v.versus, "term": v.term,
                                  "physics_id": variant_physics_id(v)} for v in VARIANTS},
            "kernel_scales": list(KERNEL_SCALES), "n_nodes": len(grid.labels),
            "provenance": provenance(profile)}
    return write_systematics(folder, result, meta)


def stamp_systematics_weights(out_dir) -> tuple[Path, list[str]]:
    """Migration (``python -m paper_lib systematics --stamp-weights``): add the weights'
    SHA-256 to the entries of a ``systematics.json`` written before it recorded them, taken
    from the weights **as they were at the commit its provenance names** (``git show``), so
    that the stamp says which weights the shifts were measured with; weights changed since
    then no longer match and ``predict`` flags ``sigma_sys_missing``. Re-runnable: entries
    already stamped stay as they are. ValueError if the record names no clean commit or git
    cannot give the weights of it (then remake the file: ``python -m paper_lib systematics``).
    Returns (the file, the names stamped now)."""
    import hashlib
    import subprocess

    from .evaluation.systematics import (read_systematics_record, systematics_path,
                                         write_systematics_record)

    folder = Path(out_dir).resolve()
    record = read_systematics_record(folder)
    if record is None:
        raise ValueError(f"{systematics_path(folder)} not found: make it with "
                         "python -m paper_lib systematics --profile <profile>")
    made = record.get("meta", {}).get("provenance", {})
    todo = [name for name, entry in record["models"].items() if "weights_sha256" not in entry]
    if todo and (not made.get("commit") or made.get("dirty") is not False):
        raise ValueError(f"{systematics_path(folder)} names no clean commit it was made at, so "
                         "its weights cannot be identified: remake it with python -m paper_lib "
                         "systematics --profile <profile>")
    if todo and not folder.is_relative_to(paths.root):
        raise ValueError(f"{folder} is outside the repository: git cannot give its weights at "
                         "a commit; remake the file with python -m paper_lib systematics")
    for name in todo:
        where = f"{made['commit']}:{(folder / f'{name}.pt').relative_to(paths.root)}"
        shown = subprocess.run(["git", "show", where], cwd=paths.root, capture_output=True)
        if shown.returncode != 0:
            raise ValueError(f"git cannot show {where} ({shown.stderr.decode().strip()}): "
                             "remake the file with python -m paper_lib systematics")
        record["models"][name].update(weights=f"{name}.pt",
                                      weights_sha256=hashlib.sha256(shown.stdout).hexdigest())
    return write_systematics_record(folder, record), todo

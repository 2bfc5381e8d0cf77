"""Absolute paths used everywhere, so notebooks never depend on the working directory.

Environment variables:

``PAPER_LIB_CACHE``
    folder for large rebuildable artefacts (the synthetic grid, test sets); default
    ``~/.cache/paper_lib``.
``PAPER_LIB_SHARED_DATA``
    folder holding the real input files (HARPS-N calibration, solar spectra, reference grid);
    default: ``../shared/data`` beside the repository, if present, else ``<cache>/data``.
"""

from __future__ import annotations

import os
from pathlib import Path

root = Path(__file__).resolve().parent.parent
package = Path(__file__).resolve().parent
package_data = package / "data"
notebooks = root / "notebooks"
figures = root / "figures"
results = root / "results"
models = root / "models"
benchmarks = root / "benchmarks"


def cache_dir() -> Path:
    """Folder for large, rebuildable artefacts (created on demand)."""
    path = Path(os.environ.get("PAPER_LIB_CACHE", Path.home() / ".cache" / "paper_lib"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared_data_dir() -> Path:
    """Folder with the real input files (may not exist; see :func:`shared_file`)."""
    if "PAPER_LIB_SHARED_DATA" in os.environ:
        return Path(os.environ["PAPER_LIB_SHARED_DATA"])
    beside_repo = root.parent / "shared" / "data"
    if beside_repo.is_dir():
        return beside_repo
    return cache_dir() / "data"


SOURCES = {
    "harpsn/HARPN_WAVE_MATRIX_A.fits": "GitHub pegasilab/yarara, folder Material/ (commit 5baf2e5a)",
    "harpsn/HARPN_BLAZE_A.fits": "GitHub pegasilab/yarara, folder Material/ (commit 5baf2e5a)",
    "sun/Sun_HARPS_Ganymede_s1d.fits": "GitHub MariaTsantaki/FASMA-synthesis, FASMA/spectra/Sun_HARPS.fits",
    "sun/UVES_Sun-1_cleaned_norm.txt": "GitHub TSFitPy-developers/TSFitPy, input_files/sample_spectrum/",
    "linelists/mgh_exomol.asc.gz": ("GitHub Roman-UCSD/BasicATLAS, data/linelists/mgh_exomol.asc.gz "
                                    "(commit fd0e3673): ExoMol MgH, Owens et al. 2022"),
    "linelists/VALD3_sun_masterlist_4948_9000_no_molecules.txt": (
        "GitHub RGiribaldi/Master-line-list-for-spectral-synthesis-with-Turbospectrum, "
        "SUN_MASTERLIST_2000_9000/ (commit f4890b37)"),
    "reference_grid/reference_grid.fits": "built by the project maintainers (see DESIGN notes); optional",
}


def shared_file(relative: str) -> Path:
    """Path of a real input file, e.g. ``shared_file("sun/Sun_HARPS_Ganymede_s1d.fits")``.

    Raises FileNotFoundError saying where to put the file and where to obtain it.
    """
    path = shared_data_dir() / relative
    if not path.exists():
        source = SOURCES.get(relative, "see docs/running.md, section 'Data'")
        raise FileNotFoundError(
            f"{relative} not found at {path}. Put it under {shared_data_dir()} "
            f"(or set PAPER_LIB_SHARED_DATA to the folder that holds it). Source: {source}."
        )
    return path

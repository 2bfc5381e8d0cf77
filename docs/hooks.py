"""MkDocs hooks: bring the committed ``cpu`` run into the site without copying it into ``docs/``.

* the executed notebooks of ``results/cpu/executed/`` become ``notebooks/NN_name.ipynb`` pages
  (rendered by mkdocs-jupyter from their stored outputs, never re-executed); the notebooks save
  their figures to ``figures/cpu/`` instead of displaying them, so each figure a cell wrote
  (``figures / "name.png"`` in its source) is shown under that cell, read from the same run's
  file — a cell whose figure file is missing fails the build;
* ``figures/cpu/*.png`` are served as ``figures/cpu/…``, so a page in ``docs/`` links a figure
  with the same path as README does (and the strict build checks that link).

The patched notebooks are written to a temporary folder that lives for one build.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import tempfile
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
PROFILE = "cpu"  # the committed run the site shows
EXECUTED = ROOT / "results" / PROFILE / "executed"
FIGURES = ROOT / "figures" / PROFILE
FIGURE_IN_SOURCE = re.compile(r'figures\s*/\s*f?"([^"]+\.png)"')
_staging = tempfile.TemporaryDirectory(prefix="paper_lib_docs_")


def figure_files(source: str) -> list[Path]:
    """The PNG files of ``figures/cpu/`` that a cell's source writes (f-string fields as globs)."""
    found = []
    for name in FIGURE_IN_SOURCE.findall(source):
        pattern = re.sub(r"\{[^}]*\}", "*", name)
        matches = sorted(FIGURES.glob(pattern))
        if not matches:
            raise PluginError(f"a notebook cell writes figures/{PROFILE}/{name}, which is not "
                              f"committed: run ./run_all.sh --profile {PROFILE} first")
        found += matches
    return found


def with_figures(notebook: dict) -> dict:
    """The notebook with each saved figure appended, as a PNG output, to the cell that saved it."""
    notebook = copy.deepcopy(notebook)
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        for path in figure_files("".join(cell["source"])):
            cell.setdefault("outputs", []).append({
                "output_type": "display_data", "metadata": {},
                "data": {"image/png": base64.b64encode(path.read_bytes()).decode("ascii"),
                         "text/plain": [f"figures/{PROFILE}/{path.name}"]}})
    return notebook


def _file(src_uri: str, src_dir: Path, config) -> File:
    return File(src_uri, src_dir=str(src_dir), dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"])


@event_priority(100)  # before mkdocs-jupyter turns .ipynb files into pages
def on_files(files, config):
    """Add the executed notebooks (with their figures) and the run's figures to the site."""
    notebooks = sorted(EXECUTED.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise PluginError(f"no executed notebooks in {EXECUTED.relative_to(ROOT)}")
    staging = Path(_staging.name)
    for path in notebooks:
        target = staging / "notebooks" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(with_figures(json.loads(path.read_text())), indent=1))
        files.append(_file(f"notebooks/{path.name}", staging, config))
    for path in sorted(FIGURES.glob("*.png")):
        files.append(_file(f"figures/{PROFILE}/{path.name}", ROOT, config))
    return files

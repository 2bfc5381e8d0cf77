"""Run the notebooks in order with papermill (what ``./run_all.sh`` calls).

The Jupytext ``.py`` files are the source: each is converted in memory and executed, so an
edited ``.py`` never runs against a stale ``.ipynb``. Executed notebooks are written to
``results/<profile>/executed/``. After each notebook the pipeline checks that it wrote its
results file (papermill can succeed while a notebook wrote nothing).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from . import paths
from .profiles import Profile
from .provenance import results_path

NOTEBOOKS = (
    "01_data_generation",
    "02_train_dae",
    "03_train_resnet",
    "04_train_attention",
    "05_results_tables",
    "06_harpsn_sun",
    "07_attention_maps",
    "09_benchmark_stars",
)


def kernel_config():
    """The kernel's transport: local sockets (IPC) where the OS has them. Over TCP, the default,
    every kernel warns that it runs without encryption, which nobody running the notebooks here
    can act on; IPC is what that warning itself recommends."""
    from traitlets.config import Config

    return Config({"KernelManager": {"transport": "ipc" if os.name == "posix" else "tcp"}})


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook and the cell."""


def load_notebook(name: str):
    """The notebook ``name`` read from its Jupytext ``.py`` source, with a python3 kernel."""
    import jupytext

    notebook = jupytext.read(paths.notebooks / f"{name}.py")
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    return notebook


def _failed_cell(notebook_path: Path) -> str:
    import nbformat

    notebook = nbformat.read(notebook_path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                return (f"cell {index} (execution count {cell.get('execution_count')}, "
                        f"starting {first_line!r}): {output.get('ename')}: {output.get('evalue')}")
    return "unknown cell"


def run_notebook(name: str, profile: Profile, out_dir: Path, parameters: dict | None = None) -> Path:
    """Execute one notebook with papermill; raises NotebookFailed naming the failing cell."""
    import nbformat
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    source = out_dir / f".{name}.input.ipynb"
    nbformat.write(load_notebook(name), source)
    output = out_dir / f"{name}.ipynb"
    started = time.time()
    try:
        papermill.execute_notebook(str(source), str(output), parameters={"profile": profile.name,
                                   **(parameters or {})}, cwd=str(paths.notebooks),
                                   kernel_name="python3", progress_bar=False,
                                   config=kernel_config())
    except papermill.PapermillExecutionError as error:
        raise NotebookFailed(f"notebook {name} failed in {_failed_cell(output)}; executed copy: "
                             f"{output}") from error
    finally:
        source.unlink(missing_ok=True)
    result = results_path(profile, name)
    if not result.exists() or result.stat().st_mtime < started:
        raise NotebookFailed(f"notebook {name} ran but did not write {result}")
    return output


def strip_injected_parameters(executed: Path, target: Path) -> None:
    """Save an executed smoke notebook as the committed twin (without papermill's injected cell)."""
    import nbformat

    notebook = nbformat.read(executed, as_version=4)
    notebook.cells = [c for c in notebook.cells
                      if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    for cell in notebook.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    notebook.metadata.pop("papermill", None)
    nbformat.write(notebook, target)


def run_all(profile: Profile, *, start: str | None = None, only=None,
            update_notebooks: bool = False) -> list[Path]:
    """Run the notebooks in order (from ``start``), stopping at the first failure."""
    names = list(only or NOTEBOOKS)
    if start:
        matches = [n for n in names if n.startswith(start)]
        if not matches:
            raise ValueError(f"--from {start!r} matches no notebook; choose from {', '.join(names)}")
        names = names[names.index(matches[0]):]
    if update_notebooks and profile.name != "smoke":
        raise ValueError("--update-notebooks stores smoke outputs only (nbval compares against them)")
    out_dir = paths.results / profile.name / "executed"
    done = []
    for name in names:
        print(f"[{time.strftime('%H:%M:%S')}] running {name} (profile {profile.name})", flush=True)
        executed = run_notebook(name, profile, out_dir)
        if update_notebooks:
            strip_injected_parameters(executed, paths.notebooks / f"{name}.ipynb")
        done.append(executed)
    print(f"all {len(done)} notebooks ran; executed copies in {out_dir}")
    return done

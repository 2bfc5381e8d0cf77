"""Provenance of every number: which commit, profile, machine and how long.

Each notebook ends with :func:`write_results`, which stores its numbers in
``results/<profile>/<notebook>.json`` next to a provenance record.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import time
from pathlib import Path

from . import paths
from .fileio import atomic_write_json
from .profiles import Profile


# What a run writes: changes there do not make the code that produced a number "dirty".
OUTPUT_PATHSPECS = (":(exclude)results", ":(exclude)figures", ":(exclude)models",
                    ":(exclude)notebooks/*.ipynb")


def git_commit() -> dict:
    """{'commit': sha or 'unknown', 'dirty': bool} of the repository.

    ``dirty`` is True when tracked source files differ from the commit; the run's own outputs
    (results/, figures/, models/, the notebooks' .ipynb twins) are left out, so rerunning a
    committed profile over its committed outputs stays clean.
    """
    def git(*args):
        return subprocess.run(["git", *args], cwd=paths.root, capture_output=True, text=True,
                              timeout=10)
    try:
        head = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                     *OUTPUT_PATHSPECS)
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": "unknown", "dirty": None}
    if head.returncode != 0:
        return {"commit": "unknown", "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict:
    """Host name, CPU, core count, GPU (if any) and library versions."""
    record = {"hostname": platform.node(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
              "python": platform.python_version(), "platform": platform.platform()}
    try:
        import torch

        record["torch"] = torch.__version__
        record["torch_threads"] = torch.get_num_threads()
        record["gpu"] = (torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    except ImportError:
        record["torch"] = None
        record["gpu"] = None
    return record


def provenance(profile: Profile, *, started: float | None = None) -> dict:
    """The provenance record: profile name, its seed, commit, hardware, date and wall time (s)."""
    record = {"profile": profile.name, "seed": profile.seed, **git_commit(), "hardware": hardware(),
              "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if started is not None:
        record["wall_time_s"] = round(time.time() - started, 2)
    return record


def results_path(profile: Profile, notebook: str) -> Path:
    """``results/<profile>/<notebook>.json``."""
    return paths.results / profile.name / f"{notebook}.json"


def write_results(profile: Profile, notebook: str, numbers: dict, *,
                  started: float | None = None) -> Path:
    """Write ``numbers`` with provenance to ``results/<profile>/<notebook>.json`` (atomic)."""
    path = results_path(profile, notebook)
    atomic_write_json(path, {"notebook": notebook,
                             "provenance": provenance(profile, started=started),
                             "results": numbers})
    return path


def read_results(profile: Profile, notebook: str) -> dict:
    """The ``results`` part of a notebook's JSON; clear error if that notebook has not run."""
    import json

    path = results_path(profile, notebook)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run notebook {notebook} with profile "
                                f"{profile.name!r} first (./run_all.sh --profile {profile.name})")
    return json.loads(path.read_text())["results"]

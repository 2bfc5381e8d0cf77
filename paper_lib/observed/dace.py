"""Public HARPS-N solar-telescope spectra from the DACE archive (optional ``dace-query``)."""

from __future__ import annotations

import tarfile
from pathlib import Path

from .. import paths

def _extract_archives(folder: Path) -> None:
    """Unpack (and delete) the .tar/.tar.gz archives DACE leaves in ``folder``."""
    for archive in list(folder.glob("*.tar*")) + list(folder.glob("*.tgz")):
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(folder, filter="data")
            else:  # Python < 3.12 without the safety filter: refuse unsafe member names
                unsafe = [m.name for m in tar.getmembers()
                          if m.name.startswith("/") or ".." in Path(m.name).parts]
                if unsafe:
                    raise RuntimeError(f"{archive}: refusing unsafe paths {unsafe[:3]}")
                tar.extractall(folder)
        archive.unlink()


def fetch_dace_sun(date_night: str = "2016-01-03", *, file_type: str = "s1d",
                   max_files: int = 1) -> list[Path]:
    """Download HARPS-N solar-telescope spectra of one night from DACE; return their paths.

    Uses the optional ``dace-query`` package (``pip install "paper_lib[dace]"``). Files are
    cached under ``paths.cache_dir()/dace/<date_night>_<file_type>/`` and reused on later
    calls, so only the first call needs the network. ``file_type`` is ``"s1d"`` (merged,
    blaze-corrected, solar rest frame) or ``"s2d"`` (orders, blaze-corrected, barycentric);
    both are read by :func:`read_spectrum`. ``max_files`` limits the download (a night holds
    ~100 five-minute exposures).
    """
    if file_type not in ("s1d", "s2d"):
        raise ValueError(f"file_type must be 's1d' or 's2d', got {file_type!r}")
    folder = paths.cache_dir() / "dace" / f"{date_night}_{file_type}"
    cached = sorted(folder.rglob("*.fits"))
    if len(cached) >= max_files:
        return cached[:max_files]
    try:
        from dace_query.sun import Sun
    except ImportError as error:
        raise ImportError('fetch_dace_sun needs the optional package dace-query: '
                          'pip install "paper_lib[dace]"') from error
    folder.mkdir(parents=True, exist_ok=True)
    try:
        found = Sun.query_database(limit=max_files,
                                   filters={"date_night": {"contains": [date_night]}})
        roots = [str(root) for root in list(found["file_rootpath"])[:max_files]]
        if roots:
            Sun.download(file_type, filters={"file_rootpath": {"contains": roots}},
                         output_directory=str(folder))
    except OSError as error:  # requests' ConnectionError and urllib's URLError are OSErrors
        raise ConnectionError(f"Could not reach the DACE archive (dace.unige.ch) to download "
                              f"HARPS-N solar spectra; check your network connection ({error}).") from None
    if not roots:
        raise FileNotFoundError(f"DACE lists no HARPS-N solar spectra for the night {date_night}")
    _extract_archives(folder)
    files = sorted(folder.rglob("*.fits"))
    if not files:
        raise FileNotFoundError(f"DACE returned no FITS files for the night {date_night} "
                                f"(looked in {folder})")
    return files[:max_files]

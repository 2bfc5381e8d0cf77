"""Atomic file writes: a temporary file in the target folder, then ``os.replace``.

An interrupted run therefore leaves either the old file or the new one, never half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path, suffix: str = ".tmp"):
    """Yield a temporary path next to ``path``; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results should be readable like any file
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, default=str) + "\n").encode())


def file_sha256(path) -> str:
    """Hex SHA-256 of a file's bytes (what the calibrations beside the weights are tied to)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_variant_records(path, what: str, remake: str) -> dict:
    """{variant: record} of a JSON file of per-variant records beside the weights ({} without
    the file); ValueError naming the file, ``what`` it should hold and the command that
    ``remake``-s it if it cannot be read or is not such a mapping."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: unreadable {what} ({error}); remake it with {remake}") from None
    if not isinstance(records, dict):
        raise ValueError(f"{path}: a {what} file maps variant names to records; remake it with "
                         f"{remake}")
    return records


def write_variant_record(path, record: dict, key: str | None = None) -> Path:
    """Add (or replace) ``record`` under ``key`` (default its ``variant``) in the JSON file
    ``path`` (atomic)."""
    path = Path(path)
    records = read_variant_records(path, "record", "the command that made it")
    records[key or record["variant"]] = record
    atomic_write_json(path, dict(sorted(records.items())))
    return path

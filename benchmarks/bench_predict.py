"""Benchmark of `predict` on real spectra: files per second for a batch, and one file's wall time.

The real HARPS s1d files of ../shared/data (the Sun via Ganymede, Gl 581) are copied into a
temporary folder until there are 200 (``--quick``: 40), then

* start-up: loading the weights, DAE and calibration (:meth:`paper_lib.predict.Predictor.load`);
* the batch: :func:`paper_lib.predict.predict_rows` on the folder (worker processes read and
  prepare the files, batched inference in this one), in files per second after start-up, with where the time goes
  (reading, model input, networks) measured on the same files one by one;
* one file from a fresh process, imports included: ``python -m paper_lib predict FILE``.

Issue 14's goal: ≥ 30 files/s after start-up on 2 cores, ≤ 4 s for one file. Prints figures and
ends with ``ratio: <files/s> / 30``.

    python benchmarks/bench_predict.py [--quick] [--threads 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from paper_lib import paths
from paper_lib.observed.model_input import to_model_input
from paper_lib.observed.read import read_spectrum
from paper_lib.predict import DEFAULT_MODEL, DEFAULT_PROFILE, Predictor, predict_rows

S1D_FILES = ("sun/Sun_HARPS_Ganymede_s1d.fits", "harps_e2ds/HARPS.2010-09-18T23:42:36.178_s1d_A.fits")
GOAL_FILES_PER_S = 30.0


def replicate(folder: Path, n: int) -> list[Path]:
    """``n`` copies of the real s1d files in ``folder`` (round robin)."""
    sources = [paths.shared_file(name) for name in S1D_FILES]
    out = []
    for i in range(n):
        source = sources[i % len(sources)]
        target = folder / f"{i:04d}_{source.name}"
        shutil.copyfile(source, target)
        out.append(target)
    return out


def stage_times(predictor: Predictor, files: list[Path]) -> dict:
    """Seconds per file spent reading, making the model input, and in the networks."""
    read = prepare = 0.0
    inputs = []
    for path in files:
        t0 = time.perf_counter()
        spectrum = read_spectrum(path)
        t1 = time.perf_counter()
        inputs.append(to_model_input(spectrum))
        read, prepare = read + t1 - t0, prepare + time.perf_counter() - t1
    from paper_lib.predict.rows import label_rows

    t0 = time.perf_counter()
    label_rows(predictor, inputs, 64)
    networks = time.perf_counter() - t0
    n = len(files)
    return {"read": read / n, "model input": prepare / n, "networks + flags": networks / n}


def one_file_wall(path: Path, *options: str) -> float:
    """Wall time [s] of ``python -m paper_lib predict path [options]`` in a fresh process."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "paper_lib", "predict", str(path), *options],
                          capture_output=True, text=True, cwd=paths.root)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return wall


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 files instead of 200")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="processes preparing files (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n = 40 if args.quick else 200
    with tempfile.TemporaryDirectory() as tmp:
        files = replicate(Path(tmp), n)
        t0 = time.perf_counter()
        predictor = Predictor.load(DEFAULT_MODEL, DEFAULT_PROFILE)
        startup = time.perf_counter() - t0
        predict_rows(files[:2], predictor, workers=args.workers, progress=False)  # warm-up
        t0 = time.perf_counter()
        rows = predict_rows([tmp], predictor, workers=args.workers, progress=False)
        batch = time.perf_counter() - t0
        failed = sum(r["error"] is not None for r in rows)
        stages = stage_times(predictor, files[:20])
        wall = one_file_wall(files[0])
    rate = len(rows) / batch
    print(f"model {DEFAULT_PROFILE}/{DEFAULT_MODEL}; torch {torch.__version__}, {args.threads} "
          f"torch threads, {args.workers} preparing processes")
    print(f"start-up (weights, DAE, calibration): {startup:.2f} s")
    print(f"batch: {len(rows)} real s1d files ({failed} failed) in {batch:.2f} s → "
          f"{rate:.1f} files/s after start-up")
    print("per file, one by one: " + ", ".join(f"{k} {1000 * v:.1f} ms" for k, v in stages.items()))
    print(f"one file, fresh process, imports included: {wall:.2f} s "
          f"(python -m paper_lib predict {S1D_FILES[0].split('/')[-1]})")
    print(f"ratio: {rate / GOAL_FILES_PER_S:.2f} (files/s over the goal of {GOAL_FILES_PER_S:g})")


if __name__ == "__main__":
    main()

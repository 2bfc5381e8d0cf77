"""Benchmark of `predict --refine` on the emulator: files per second for a batch, one file's wall time.

The real HARPS s1d files of ../shared/data are copied until there are 200 (``--quick``: 40), as in
``bench_predict.py``; then

* start-up: the weights, DAE, calibration and the emulator (its basis Fourier-transformed once);
* the batch: :func:`paper_lib.predict.predict_rows` with ``refine=True`` (no grid: the emulator),
  in files per second after start-up, with the fit's own share and its mean number of renders;
* one file from a fresh process, imports included: ``python -m paper_lib predict FILE --refine``.

Issue 32's goal: ≥ 20 files/s after start-up on 2 cores, ≤ 4 s for one file, no grid needed.
``--emulator FILE`` fits another emulator file (e.g. one trained on the reference grid): the
profile's network files are copied beside it into a temporary models folder.

    python benchmarks/bench_fit.py [--quick] [--emulator FILE] [--threads 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from bench_predict import S1D_FILES, one_file_wall, replicate

from paper_lib import paths
from paper_lib.predict import DEFAULT_MODEL, DEFAULT_PROFILE, Predictor, predict_rows

GOAL_FILES_PER_S = 20.0
NETWORK_FILES = (f"{DEFAULT_MODEL}.pt", "dae.pt", "ood_calibration.json", "systematics.json",
                 "sigma_calibration.json")


def models_folder(emulator: str | None, folder: Path) -> Path:
    """``models/<profile>/`` or, for another ``emulator`` file, a copy of the profile's network
    files beside it in ``folder``."""
    shipped = paths.models / DEFAULT_PROFILE
    if emulator is None:
        return shipped
    for name in NETWORK_FILES:
        if (shipped / name).exists():
            shutil.copy(shipped / name, folder / name)
    shutil.copy(emulator, folder / "emulator.pt")
    return folder


def main(argv=None) -> None:
    from paper_lib.predict.rows import refinement_renderer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 files instead of 200")
    parser.add_argument("--emulator", default=None, help="an emulator file (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="processes preparing files (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n = 40 if args.quick else 200
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as spare:
        models = models_folder(args.emulator, Path(spare))
        files = replicate(Path(tmp), n)
        t0 = time.perf_counter()
        predictor = Predictor.load(DEFAULT_MODEL, DEFAULT_PROFILE, models)
        fitter = refinement_renderer(None, DEFAULT_PROFILE, models)
        startup = time.perf_counter() - t0
        fitted = fitter.fit
        spent = {"fit": 0.0}

        def timed_fit(*fit_args, **fit_options):
            t = time.perf_counter()
            try:
                return fitted(*fit_args, **fit_options)
            finally:
                spent["fit"] += time.perf_counter() - t

        fitter.fit = timed_fit
        predict_rows(files[:2], predictor, workers=args.workers, progress=False, refine=fitter)
        spent["fit"], renders = 0.0, fitter.render.renders
        t0 = time.perf_counter()
        rows = predict_rows([tmp], predictor, workers=args.workers, progress=False, refine=fitter)
        batch = time.perf_counter() - t0
        renders = (fitter.render.renders - renders) / len(rows)
        failed = sum(r["error"] is not None for r in rows)
        methods = sorted({r["method"] for r in rows if r["error"] is None})
        rate = len(rows) / batch
        print(f"model {DEFAULT_PROFILE}/{DEFAULT_MODEL}; emulator {args.emulator or models / 'emulator.pt'}; "
              f"torch {torch.__version__}, {args.threads} torch threads, {args.workers} preparing processes")
        print(f"start-up (weights, DAE, calibration, emulator): {startup:.2f} s")
        print(f"batch: {len(rows)} real s1d files ({failed} failed; method {', '.join(methods)}) in "
              f"{batch:.2f} s → {rate:.1f} files/s after start-up; the fit {1000 * spent['fit'] / len(rows):.0f} "
              f"ms a file, {renders:.0f} images rendered a file", flush=True)
        wall = one_file_wall(files[0], "--refine", "--models-dir", str(models))
    print(f"one file, fresh process, imports included: {wall:.2f} s "
          f"(python -m paper_lib predict {S1D_FILES[0].split('/')[-1]} --refine)")
    print(f"ratio: {rate / GOAL_FILES_PER_S:.2f} (files/s over the goal of {GOAL_FILES_PER_S:g})")


if __name__ == "__main__":
    main()

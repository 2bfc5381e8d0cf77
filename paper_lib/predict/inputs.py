"""What `predict` is given → prepared network inputs: files, folders, globs and in-memory
spectra expanded, read and brought onto the training pixels in worker processes
(:class:`~paper_lib.synthetic.pool.ProcessPool`, threads for small batches), one error per bad
file; a worker that dies costs at most its own file (prepared again, or that row's error)."""

from __future__ import annotations

import glob
import re
from pathlib import Path

import numpy as np

# companion calibration frames that a folder of DRS products holds beside the spectra
CALIBRATION_FILE_NAMES = re.compile(r"_(wave|blaze)_[AB]\.|WAVE_MATRIX|_BLAZE_", re.IGNORECASE)
# from this many inputs on, `predict` prepares them in processes (threads below: no start-up)
PROCESS_MIN_ITEMS = 16
# how an error names what the user can pass (paper_lib.observed.spectrum.FIXES): the keyword
# arguments of predict_rows / paper_lib.predict
PREDICT_OPTIONS = {"rv": "rv=<km/s>", "wave": "wave_path=<file>", "blaze": "blaze_path=<file>",
                   "fix": "fix="}


def expand_inputs(items) -> list:
    """Files, folders (their spectrum files, sorted, without the DRS wave and blaze frames) and
    glob patterns → a flat list of inputs; Spectrum objects pass through. A pattern that
    matches nothing stays, to fail on its own."""
    from ..observed.read import FITS_SUFFIXES, TEXT_SUFFIXES
    from ..observed.spectrum import Spectrum

    if isinstance(items, (str, Path, Spectrum)):
        items = [items]
    out = []
    for item in items:
        if isinstance(item, Spectrum):
            out.append(item)
        elif Path(item).is_dir():
            out += sorted(p for p in Path(item).iterdir() if p.is_file()
                          and p.name.lower().endswith(FITS_SUFFIXES + TEXT_SUFFIXES)
                          and not CALIBRATION_FILE_NAMES.search(p.name))
        elif not Path(item).exists() and glob.has_magic(str(item)):
            out += sorted(Path(p) for p in glob.glob(str(item))) or [Path(item)]
        else:
            out.append(Path(item))
    return out


def per_input(value, items: list, what: str) -> list:
    """A scalar (or a path), a sequence (one per input) or a {path or name: value} dict → one
    per input."""
    if value is None or np.isscalar(value) or isinstance(value, Path):
        return [value] * len(items)
    if isinstance(value, dict):
        names = [input_name(i) for i in items]
        return [value.get(n, value.get(Path(n).name)) for n in names]
    value = list(value)
    if len(value) != len(items):
        raise ValueError(f"{what} has {len(value)} values for {len(items)} spectra")
    return value


def input_name(item) -> str:
    """The file of an input, for messages and the table's ``file`` column."""
    if hasattr(item, "path"):
        return str(item.path) if item.path is not None else "<spectrum in memory>"
    return str(item)


def prepare(item, rv, wave_path, blaze_path, vacuum):
    """ModelInput of one input (a path or a Spectrum); raises on a bad file. ``rv`` [km/s] or
    None; ``wave_path``/``blaze_path``: an e2ds frame's wave and blaze files, or None."""
    from ..observed.model_input import to_model_input
    from ..observed.read import read_spectrum
    from ..observed.spectrum import Spectrum

    spectrum = item if isinstance(item, Spectrum) else read_spectrum(
        item, wave_path=wave_path, blaze_path=blaze_path, vacuum=vacuum)
    return to_model_input(spectrum, rv_kms=None if rv is None else float(rv))


def error_text(error: Exception, options: dict) -> str:
    """The message of a failed input, naming its fix with ``options`` (see PREDICT_OPTIONS)."""
    from ..observed.spectrum import SpectrumFileError

    return error.text(options) if isinstance(error, SpectrumFileError) else str(error)


def prepare_one(item, extra, vacuum):
    """:func:`prepare` of one input, or the exception that says why it failed (a
    SpectrumFileError or a plain ValueError/OSError/RuntimeError with the same text, so that
    it also crosses from a worker process)."""
    from ..observed.spectrum import SpectrumFileError

    try:
        return prepare(item, *extra, vacuum)
    except SpectrumFileError as error:
        return error
    except (ValueError, OSError) as error:  # a bad file: its message names it
        return (ValueError if isinstance(error, ValueError) else OSError)(str(error))
    except Exception as error:  # anything else still fails this file alone, named
        return RuntimeError(f"{input_name(item)}: {type(error).__name__}: {error}")


def _uses_processes(workers: int, n_items: int) -> bool:
    """Processes for ``workers`` ≥ 2 and at least PROCESS_MIN_ITEMS inputs where the OS can
    fork (Linux): the preparation is Python and numpy on small arrays, which threads cannot
    run in parallel (the GIL); else threads (no start-up cost, and macOS or Windows)."""
    import sys

    return workers >= 2 and n_items >= PROCESS_MIN_ITEMS and sys.platform.startswith("linux")


def lost_file_error(item, error: Exception) -> Exception:
    """The row error of an input whose preparing processes died (killed, out of memory)."""
    return RuntimeError(f"{input_name(item)}: not predicted: {error}")


def _prepared_in_processes(jobs: list, items: list, workers: int, bar):
    """Prepared inputs in order, from forked worker processes (:class:`~paper_lib.synthetic.
    pool.ProcessPool`: a worker that dies costs at most its own file, prepared again by
    another or reported as that input's error)."""
    import multiprocessing

    from ..synthetic.pool import ProcessPool

    with ProcessPool(prepare_one, jobs, workers, context=multiprocessing.get_context("fork"),
                     torch_threads=1, on_result=lambda _: bar.update()) as pool:
        for item, (ok, value) in zip(items, pool.in_order()):
            yield value if ok else lost_file_error(item, value)


def _prepared_in_threads(jobs: list, workers: int, bar):
    """Prepared inputs in order, from threads (small batches; no start-up cost)."""
    from concurrent.futures import ThreadPoolExecutor

    
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    finished = False
    try:
        futures = [pool.submit(prepare_one, *job) for job in jobs]
        for future in futures:
            future.add_done_callback(lambda _: bar.update())
        for future in futures:
            yield future.result()
        finished = True
    finally:
        pool.shutdown(wait=finished, cancel_futures=True)


def prepared_chunks(items, per_item: list, vacuum, workers: int, progress: bool, size: int):
    """Yield lists of ``size`` prepared inputs (a ModelInput or the exception), in order, while
    ``workers`` processes (threads for small batches; :func:`_uses_processes`) go on
    preparing the next ones (reading and resampling overlap the networks).
    ``per_item``: one (rv, wave_path, blaze_path) per item. Ctrl-C or a consumer that stops
    early stops the workers at once."""
    from itertools import islice

    from tqdm.auto import tqdm

    jobs = [(item, extra, vacuum) for item, extra in zip(items, per_item)]
    with tqdm(total=len(items), desc="predict", unit="file", disable=not progress) as bar:
        prepared = (_prepared_in_processes(jobs, items, workers, bar)
                    if _uses_processes(workers, len(items)) else
                    _prepared_in_threads(jobs, workers, bar))
        try:
            while chunk := list(islice(prepared, size)):
                yield chunk
        finally:
            prepared.close()  # interrupted or stopped early: the workers end now

"""The process pool that `predict` and `synth` share (issue 29): results in order, errors with
their worker's traceback, and no hang when a worker dies (even while it sends a 2 MB result) or
when Ctrl-C comes; predict's inputs prepared in processes give the rows of threads.

Runs that could hang are bounded: a SIGALRM here, or a subprocess killed after its bound
(``benchmarks/pool_faults.py``, whose trials these tests run a few times; the benchmark runs
50 of each)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import signal
import time

import numpy as np
import pytest

from paper_lib import paths
from paper_lib.synthetic.pool import ProcessPool, RemoteTraceback, WorkerLost, run_pool

from .conftest import shared_or_skip

HANG_S = 60  # s: a test that takes this long has hung


@contextlib.contextmanager
def hard_timeout(seconds: float):
    """TimeoutError in this (the main) thread after ``seconds``: a hang fails the test."""
    def expire(signum, frame):
        raise TimeoutError(f"hung: still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def faults():
    """The module ``benchmarks/pool_faults.py`` (its trials)."""
    spec = importlib.util.spec_from_file_location("pool_faults",
                                                  paths.root / "benchmarks" / "pool_faults.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# the pool itself ---------------------------------------------------------------------------

def _square(x):
    time.sleep(0.002)
    return x * x


def _fails_at_three(x):
    if x == 3:
        raise ValueError("three is not allowed")
    time.sleep(0.05)
    return x


def _dies_at_three(x):
    if x == 3:
        os._exit(9)  # as if killed: every worker that takes job 3 dies
    return x


def test_results_in_order_and_as_they_come():
    jobs = [(i,) for i in range(60)]
    with hard_timeout(HANG_S):
        with ProcessPool(_square, jobs, 2) as pool:
            assert list(pool.in_order()) == [(True, i * i) for i in range(60)]
        with ProcessPool(_square, jobs, 3) as pool:
            arrived = list(pool.in_completion_order())
    assert sorted(job for job, _, _ in arrived) == list(range(60))
    assert all(ok and value == job * job for job, ok, value in arrived)
    import multiprocessing

    assert multiprocessing.active_children() == []  # no worker left behind


def test_an_error_stops_the_queue_with_its_worker_traceback():
    done = []
    with hard_timeout(HANG_S), pytest.raises(ValueError, match="three is not allowed") as error:
        run_pool(_fails_at_three, [(i,) for i in range(40)], 2, done.append)
    assert isinstance(error.value.__cause__, RemoteTraceback)
    assert "_fails_at_three" in str(error.value.__cause__)
    assert 3 not in done and len(done) < 39  # the queue stopped: later jobs never ran


def test_a_job_that_kills_each_worker_fails_alone():
    with hard_timeout(HANG_S):
        with ProcessPool(_dies_at_three, [(i,) for i in range(12)], 2) as pool:
            outcomes = list(pool.in_order())
    assert [value for ok, value in outcomes if ok] == [i for i in range(12) if i != 3]
    ok, error = outcomes[3]
    assert not ok and isinstance(error, WorkerLost) and "exit code 9" in str(error)
    with hard_timeout(HANG_S), pytest.raises(WorkerLost, match=r"_dies_at_three\(3,\): .*"
                                                                 "each of the 2 times"):
        run_pool(_dies_at_three, [(i,) for i in range(12)], 2, lambda _: None)


def test_a_worker_killed_while_sending_2_mb_costs_nothing():
    module, rng = faults(), random.Random(29)
    trials = [module.synthetic_trial("pool", 1.0, rng) for _ in range(3)]
    assert all(t["ended"] and t["complete"] for t in trials if not t["missed"]), trials


# predict's inputs: folders, processes, a dying worker, Ctrl-C ----------------------------

def _batch(tmp_path, n):
    """``n`` copies of the real HARPS Sun and one file that is not a spectrum."""
    import shutil

    sun = shared_or_skip("sun/Sun_HARPS_Ganymede_s1d.fits")
    files = [tmp_path / f"{i:02d}_sun_s1d.fits" for i in range(n)]
    for path in files:
        shutil.copyfile(sun, path)
    bad = tmp_path / "99_broken_s1d.fits"
    bad.write_bytes(b"SIMPLE  =  not a FITS file")
    return files + [bad]


def _rows(files, mode, monkeypatch):
    import paper_lib.predict.inputs as inputs
    from paper_lib.predict import predict_rows

    monkeypatch.setattr(inputs, "PROCESS_MIN_ITEMS", 10**9 if mode == "threads" else 2)
    with hard_timeout(HANG_S):
        return predict_rows(files, workers=2, progress=False)


def test_compressed_text_spectra_are_found_in_folders(tmp_path):
    import gzip

    from paper_lib.predict import expand_inputs

    sun = shared_or_skip("sun/UVES_Sun-1_cleaned_norm.txt").read_bytes()
    for name in ("a.txt.gz", "b.csv.gz", "c.dat.gz", "d.txt"):
        (tmp_path / name).write_bytes(gzip.compress(sun) if name.endswith(".gz") else sun)
    (tmp_path / "e.tar.gz").write_bytes(b"not a spectrum")
    assert [p.name for p in expand_inputs(tmp_path)] == ["a.txt.gz", "b.csv.gz", "c.dat.gz",
                                                         "d.txt"]
    from paper_lib.observed.read import read_spectrum

    assert np.array_equal(read_spectrum(tmp_path / "a.txt.gz").flux,
                          read_spectrum(tmp_path / "d.txt").flux)


def test_processes_give_the_rows_of_threads(tmp_path, monkeypatch):
    import multiprocessing

    files = _batch(tmp_path, 5)
    threads, processes = (_rows(files, mode, monkeypatch) for mode in ("threads", "processes"))
    assert [r["file"] for r in processes] == [str(f) for f in files]
    assert processes[-1]["error"] == threads[-1]["error"] is not None
    assert "broken_s1d" in processes[-1]["error"]
    for a, b in zip(threads[:-1], processes[:-1]):
        assert a["error"] is b["error"] is None
        assert a["teff"] == b["teff"] and a["logg_sigma"] == b["logg_sigma"]
        assert a["rv_kms"] == b["rv_kms"]
    assert multiprocessing.active_children() == []  # no worker left behind


@pytest.mark.parametrize("deaths", ["once", "always"])
def test_a_worker_that_dies_costs_at_most_its_file(tmp_path, monkeypatch, deaths):
    import paper_lib.predict.inputs as inputs

    files = _batch(tmp_path, 4)
    parent, real_prepare, marker = os.getpid(), inputs.prepare, tmp_path / "died"

    def dying(item, *args):
        if os.getpid() != parent and "02_" in str(item) and (deaths == "always"
                                                            or not marker.exists()):
            marker.touch()
            os._exit(3)  # a worker killed mid-file (out of memory, say)
        return real_prepare(item, *args)

    monkeypatch.setattr(inputs, "prepare", dying)  # forked workers inherit the patch
    rows = _rows(files, "processes", monkeypatch)
    assert marker.exists()
    lost = [2] if deaths == "always" else []
    assert [i for i, r in enumerate(rows[:-1]) if r["error"] is not None] == lost
    if lost:  # reported in its row, named, with why
        assert rows[2]["error"].startswith(str(files[2])) and "died" in rows[2]["error"]
    assert len({round(r["teff"], 6) for i, r in enumerate(rows[:-1]) if i not in lost}) == 1


def test_kill_9_of_a_worker_mid_batch_loses_no_row(tmp_path):
    shared_or_skip("sun/Sun_HARPS_Ganymede_s1d.fits")
    module, rng = faults(), random.Random(29)
    folder = module.sun_folder(tmp_path / "batch", 40)
    trials = [module.kill_trial(folder, tmp_path / "out.csv", 40, 0.8, rng) for _ in range(3)]
    assert not any(t["missed"] for t in trials), "the kill should land mid-batch"
    # ended_late: within 300 s, so that a busy CI machine cannot fail it; a hang still does
    assert all(t["ended_late"] and t["complete"] for t in trials), trials


def test_ctrl_c_at_random_moments_exits_within_5_s(tmp_path):
    shared_or_skip("sun/Sun_HARPS_Ganymede_s1d.fits")
    module, rng = faults(), random.Random(29)
    folder = module.sun_folder(tmp_path / "batch", 60)
    hits = []  # trials whose Ctrl-C came before the batch ended (a fast machine ends it early)
    for _ in range(10):
        trial = module.interrupt_trial(folder, tmp_path / "out.csv", 3.0, rng)
        hits += [] if trial.get("missed") else [trial]
        if len(hits) == 3:
            break
    assert hits, "no Ctrl-C landed before the batch ended"
    assert all(t["ended"] and t["nothing_left"] for t in hits), hits


def test_ctrl_c_stops_predict_and_its_workers(tmp_path):
    import subprocess
    import sys

    files = _batch(tmp_path, 60)
    # a background job starts with SIGINT ignored; the child restores Python's handler
    code = ("import signal, runpy, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            f"sys.argv = ['paper_lib', 'predict', {str(tmp_path)!r}, '--output', "
            f"{str(tmp_path / 'out.csv')!r}]; runpy.run_module('paper_lib', run_name='__main__')")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=paths.root, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    children_file = f"/proc/{proc.pid}/task/{proc.pid}/children"
    deadline, workers = time.time() + 60, []
    while time.time() < deadline and proc.poll() is None and len(workers) < 2:
        time.sleep(0.05)
        workers = open(children_file).read().split() if os.path.exists(children_file) else []
    assert len(workers) == 2, "predict did not start its two worker processes"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
    assert proc.returncode == 130 and "predict interrupted" in err and "Traceback" not in err
    time.sleep(0.5)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)
    assert not (tmp_path / "out.csv").exists() and len(files) == 61


def test_ctrl_c_while_the_models_load_exits_130(monkeypatch, capsys):
    from paper_lib import cli
    from paper_lib.predict import Predictor

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Predictor, "load", interrupted)
    assert cli.main(["predict", "sun.fits"]) == 130
    assert "interrupted" in capsys.readouterr().err

"""Fault injection into the process pool that `predict` and `synth` share (issue 29): workers
killed at random moments, Ctrl-C at random moments; prints how many runs ended as they must.

Modes (each run is a fresh process, started in its own session and watched from here):

* ``kill``: ``python -m paper_lib predict FOLDER --output OUT.csv --workers 2`` on ``--files``
  symlinks of the real HARPS Sun; once its workers run, one of them (chosen at random) gets
  ``kill -9`` at a random moment within an undisturbed run's duration. Counts: runs that ended
  within 60 s of the kill (and, for a busy machine, within 300 s: slow, not hung); runs with
  ≥ files − 1 rows predicted and every other row's error written (the lost files reported).
* ``interrupt``: the same batch, SIGINT to the process group (a terminal's Ctrl-C) at a random
  moment from start to an undisturbed run's end. Counts: runs that exited within 5 s, runs
  that left no process behind, and runs that exited with code 130 (0 when the batch was done
  first) and no traceback (a Ctrl-C while Python still imports shows Python's own).
* ``synthetic``: two workers returning 2 MB results (DESIGN.md, "Real stars and pools"), one
  killed at a random moment: runs that ended within 60 s with every result. ``--executor
  futures`` runs the same with ``concurrent.futures.ProcessPoolExecutor`` for comparison.

Processes that hang are killed after the bound (they and their workers only).

    python benchmarks/pool_faults.py [--runs 50] [--files 300] [--modes kill,interrupt,synthetic]
                                     [--executor pool|futures] [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from paper_lib import paths

SUN = "sun/Sun_HARPS_Ganymede_s1d.fits"
KILL_BOUND_S = 60.0  # s: a run must end this soon after one of its workers was killed
LATE_BOUND_S = 300.0  # s: one that did not is watched this long in all (slow, or hung?)
INTERRUPT_BOUND_S = 5.0  # s: a run must exit this soon after Ctrl-C
SYNTHETIC_JOBS = 60  # 2 MB results each
# a background job starts with SIGINT ignored; the child restores Python's handler (a terminal)
PREDICT_CODE = ("import signal, runpy, sys; "
                "signal.signal(signal.SIGINT, signal.default_int_handler); "
                "sys.argv = ['paper_lib', 'predict'] + sys.argv[1:]; "
                "runpy.run_module('paper_lib', run_name='__main__')")
SYNTHETIC_CODE = f"""
import sys, time
import numpy as np
def big(i):
    time.sleep(0.02)
    return i, np.full(262_144, float(i))  # 2 MiB
if sys.argv[1] == "pool":
    from paper_lib.synthetic.pool import run_pool
    got = []
    run_pool(big, [(i,) for i in range({SYNTHETIC_JOBS})], 2, lambda result: got.append(result[0]))
else:
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(2) as pool:
        got = [result[0] for result in pool.map(big, range({SYNTHETIC_JOBS}))]
print(len(set(got)))
"""


def sun_folder(folder: Path, n: int) -> Path:
    """``folder`` with ``n`` symlinks to the real HARPS Sun (s1d)."""
    sun = paths.shared_file(SUN)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i:04d}_sun_s1d.fits").symlink_to(sun)
    return folder


def children(pid: int) -> set[int]:
    """The child processes of every thread of ``pid``."""
    out = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return out


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def process_state(pid: int) -> str:
    """What a process that has not ended is doing: each thread's state and kernel wait, CPU
    ticks, and its children's."""
    def stat(path: Path) -> str:
        try:
            fields = (path / "stat").read_text().rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])
            return f"{fields[0]} cpu {ticks} {(path / 'wchan').read_text()}"
        except OSError:
            return "gone"

    threads = [stat(task) for task in sorted(Path(f"/proc/{pid}/task").glob("*"))]
    kids = [f"{c}: {stat(Path(f'/proc/{c}'))}" for c in sorted(children(pid))]
    return f"threads {threads}; children {kids}"


class Run:
    """One watched process in its own session: the worker pids it ever had, its end."""

    def __init__(self, argv: list[str]):
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, cwd=paths.root, start_new_session=True, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.workers: set[int] = set()

    def watch(self, seconds: float, until=lambda run: False) -> bool:
        """Poll for ``seconds`` (recording workers) or until the process ends or ``until``;
        True if it has ended."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.proc.poll() is None and not until(self):
            self.workers |= children(self.proc.pid)
            time.sleep(0.02)
        return self.proc.poll() is not None

    def end(self) -> tuple[str, str]:
        """Kill what is left of it (its session and its workers); its output."""
        for kill, pid in [(os.killpg, self.proc.pid)] + [(os.kill, w) for w in self.workers]:
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return self.proc.communicate(timeout=30)


def predict_run(folder: Path, out: Path) -> Run:
    return Run([sys.executable, "-c", PREDICT_CODE, str(folder), "--output", str(out),
                "--workers", "2"])


def undisturbed(run: Run) -> tuple[float, float, float]:
    """Seconds [s] of an undisturbed ``run``: from its start to its second worker, from there
    to its workers' end, and from there to its own end."""
    run.watch(600, until=lambda r: len(r.workers) >= 2)
    workers_at = time.monotonic()
    run.watch(600, until=lambda r: not any(alive(w) for w in children(r.proc.pid)))
    workers_gone = time.monotonic()
    run.watch(600)
    _, err = run.end()
    if run.proc.returncode != 0:
        raise RuntimeError(f"the undisturbed run failed: {err[-2000:]}")
    now = time.monotonic()
    return workers_at - run.started, workers_gone - workers_at, now - workers_gone


def rows_of(out: Path) -> tuple[int, int, int]:
    """(rows, rows predicted, rows with an error) of a predict CSV; zeros if none."""
    if not out.exists():
        return 0, 0, 0
    with open(out) as handle:
        rows = list(csv.DictReader(handle))
    failed = sum(bool(row.get("error")) for row in rows)
    return len(rows), len(rows) - failed, failed


def kill_a_worker(run, start_s: float, window_s: float, rng) -> bool:
    """Wait (at most ``start_s``) for ``run``'s two workers, then a random moment within
    ``window_s`` [s], and ``kill -9`` one of its live children; False (the run ended) if the
    fault came too late to land."""
    run.watch(start_s, until=lambda r: len(r.workers) >= 2)
    run.watch(rng.uniform(0, window_s))
    victims = sorted(w for w in children(run.proc.pid) if alive(w))
    if run.proc.poll() is not None or not victims:
        run.end()
        return False
    os.kill(rng.choice(victims), signal.SIGKILL)
    return True


def kill_trial(folder: Path, out: Path, n_files: int, window_s: float, rng) -> dict:
    """One predict run with a random worker ``kill -9``-ed at a random moment."""
    run = predict_run(folder, out)
    if not kill_a_worker(run, 120, window_s, rng):
        return {"missed": True}
    killed_at = time.monotonic()
    ended = run.watch(KILL_BOUND_S)
    state = "" if ended else process_state(run.proc.pid)
    ended_late = ended or run.watch(LATE_BOUND_S - KILL_BOUND_S)  # slow (a busy machine) or hung
    seconds = time.monotonic() - killed_at
    _, err = run.end()
    rows, good, failed = rows_of(out)
    out.unlink(missing_ok=True)
    return {"missed": False, "ended": ended, "ended_late": ended_late, "seconds": seconds,
            "rows": rows, "good": good,
            "complete": rows == n_files and good >= n_files - 1,
            "state": state, "stderr": "" if ended else err[-800:]}


def interrupt_trial(folder: Path, out: Path, window_s: float, rng) -> dict:
    """One predict run with Ctrl-C (SIGINT to its process group) at a random moment."""
    run = predict_run(folder, out)
    if run.watch(rng.uniform(0, window_s)):  # from start-up (model loading) to the batch's end
        run.end()  # it finished before the Ctrl-C: nothing to measure
        out.unlink(missing_ok=True)
        return {"missed": True}
    try:
        os.killpg(run.proc.pid, signal.SIGINT)
    except ProcessLookupError:  # it ended between the check and the signal
        run.end()
        out.unlink(missing_ok=True)
        return {"missed": True}
    sent = time.monotonic()
    ended = run.watch(INTERRUPT_BOUND_S)
    seconds = time.monotonic() - sent
    code = run.proc.poll()
    time.sleep(0.5)
    left = sorted(w for w in run.workers | children(run.proc.pid) if alive(w))
    _, err = run.end()
    out.unlink(missing_ok=True)
    clean = "Traceback" not in err and code in (0, 130)
    return {"ended": ended, "seconds": seconds, "code": code, "nothing_left": not left,
            "clean": clean, "left": left, "stderr": "" if clean else err[-600:]}


def synthetic_run(executor: str) -> Run:
    return Run([sys.executable, "-c", SYNTHETIC_CODE, executor])


def synthetic_trial(executor: str, window_s: float, rng) -> dict:
    """2 workers returning 2 MB results, one killed at a random moment within ``window_s``
    [s] of their start."""
    run = synthetic_run(executor)
    if not kill_a_worker(run, 60, window_s, rng):
        return {"missed": True}
    ended = run.watch(KILL_BOUND_S)
    out, _ = run.end()
    return {"missed": False, "ended": ended,
            "complete": ended and out.strip() == str(SYNTHETIC_JOBS)}


def logged(trial: dict) -> dict:
    """``trial``, also written as one line to stderr (a long run's progress)."""
    print(f"  trial: {trial}", file=sys.stderr, flush=True)
    return trial


def report(name: str, trials: list[dict], keys: dict) -> None:
    """One line of counts (``keys``: label → field), and each failed trial on stderr."""
    done = [t for t in trials if not t.get("missed")]
    for trial in done:
        if not all(trial[k] for k in keys.values()):
            print(f"  failed: {trial}", file=sys.stderr, flush=True)
    counts = ", ".join(f"{label} {sum(bool(t[k]) for t in done)}/{len(done)}"
                       for label, k in keys.items())
    missed = len(trials) - len(done)
    print(f"{name}: {counts}" + (f" ({missed} runs ended before the fault)" if missed else ""),
          flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="runs of each mode (default 50)")
    parser.add_argument("--files", type=int, default=300, help="files of a predict batch")
    parser.add_argument("--modes", default="kill,interrupt,synthetic")
    parser.add_argument("--executor", choices=("pool", "futures"), default="pool",
                        help="synthetic mode: paper_lib's pool or ProcessPoolExecutor")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng, modes = random.Random(args.seed), args.modes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = sun_folder(Path(tmp) / "batch", args.files), Path(tmp) / "out.csv"
        if {"kill", "interrupt"} & set(modes):
            start, working, rest = undisturbed(predict_run(folder, out))
            print(f"{args.files}-file predict batch, undisturbed: workers start after "
                  f"{start:.1f} s, work {working:.1f} s, the run ends {rest:.1f} s later",
                  flush=True)
        if "kill" in modes:
            trials = [logged(kill_trial(folder, out, args.files, working, rng))
                      for _ in range(args.runs)]
            slowest = max((t["seconds"] for t in trials if not t.get("missed")), default=0)
            report(f"kill -9 of a worker ({args.runs} runs)", trials,
                   {f"ended within {KILL_BOUND_S:g} s": "ended",
                    f"within {LATE_BOUND_S:g} s": "ended_late",
                    f"≥{args.files - 1} rows predicted, the rest reported": "complete"})
            print(f"  slowest end after the kill: {slowest:.1f} s", flush=True)
        if "interrupt" in modes:
            trials = [logged(interrupt_trial(folder, out, start + working + rest, rng))
                      for _ in range(args.runs)]
            report(f"Ctrl-C ({args.runs} runs)", trials,
                   {f"exited within {INTERRUPT_BOUND_S:g} s": "ended",
                    "left no process behind": "nothing_left",
                    "exit code 130 (0: done first) without a traceback": "clean"})
            print(f"  slowest exit: {max((t['seconds'] for t in trials if not t.get('missed')), default=0):.2f} s", flush=True)
    if "synthetic" in modes:
        _, window, _ = undisturbed(synthetic_run(args.executor))
        trials = [logged(synthetic_trial(args.executor, window, rng))
                  for _ in range(args.runs)]
        report(f"synthetic, {args.executor}, 2 MB results ({args.runs} runs)", trials,
               {f"ended within {KILL_BOUND_S:g} s": "ended", "every result": "complete"})


if __name__ == "__main__":
    main()

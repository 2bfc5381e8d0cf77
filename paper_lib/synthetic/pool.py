"""The local process pool of a grid build: workers that die with their parent, and a build that
stops at once on Ctrl-C.

``concurrent.futures.ProcessPoolExecutor`` alone gets both wrong: on Ctrl-C its ``with`` block
waits for every queued node, and after ``kill -9`` of the parent its idle workers wait forever.
Here every worker

* leads its own process group (:func:`_start_worker`), so that its Turbospectrum children
  (``csh`` → ``babsma_lu``/``bsyn_lu``) can be ended with it, and a terminal's Ctrl-C reaches
  only the parent, which then decides;
* watches its parent (:func:`_watch_parent`): when the parent is gone, however it died, the
  worker kills its own process group within :data:`PARENT_POLL_S`.

On Ctrl-C (SIGINT to the process or its group) :func:`run_pool` cancels the queued nodes, kills
the workers' process groups and re-raises ``KeyboardInterrupt``; node files already written stay
(they are written atomically, so there is never half a file).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

PARENT_POLL_S = 0.5  # s: how often a worker checks that its parent still lives
MANAGER_JOIN_S = 5.0  # s: at most this long for the pool's manager thread after Ctrl-C


def _watch_parent(parent_pid: int) -> None:
    """Worker thread: kill this worker's process group (itself and Turbospectrum) once the
    parent has gone (the worker is then re-parented, so ``getppid`` changes)."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _start_worker(parent_pid: int, torch_threads: int | None = None) -> None:
    """Initializer of each pool worker: own process group, parent watchdog; ``torch_threads``
    sets torch's threads (1 in forked workers: torch must not use the parent's OpenMP pool)."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # see sigint_held
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                     name="paper_lib-parent-watch").start()
    if torch_threads is not None:
        import torch

        torch.set_num_threads(torch_threads)


@contextlib.contextmanager
def sigint_held():
    """SIGINT held back (blocked) in this thread while the pool starts its workers: a Ctrl-C
    that came between a fork and the worker's initializer would print a worker traceback. The
    workers unblock it once they ignore it; here it arrives when the block ends."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def default_workers(workers: int | None) -> int:
    """``workers``, or every core when it is None or 0."""
    return workers or os.cpu_count() or 1


def worker_pool(workers: int, mp_context=None, torch_threads: int | None = None
                ) -> ProcessPoolExecutor:
    """A ProcessPoolExecutor whose workers die with their parent and ignore Ctrl-C (stop it
    with :func:`stop_pool`)."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp_context,
                               initializer=_start_worker, initargs=(os.getpid(), torch_threads))


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop ``pool`` now: queued jobs cancelled, workers (and their process groups) killed,
    the executor's manager thread given MANAGER_JOIN_S to notice."""
    # the executor cancels what is queued itself (cancelling futures here as well raced with
    # its management thread, which then printed an InvalidStateError traceback)
    workers_alive = list(getattr(pool, "_processes", None) or {})  # shutdown forgets them
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    _kill_groups(workers_alive)
    # let the executor's management thread see its dead workers and close its wake-up pipe
    # now: left running, it closed that pipe while the interpreter's exit hook was writing
    # to it (CPython 3.11 race), which printed an "OSError: Bad file descriptor" traceback
    if manager is not None:
        manager.join(timeout=MANAGER_JOIN_S)


def _kill_groups(pids) -> None:
    """SIGKILL the process group of every worker pid (the worker and its Turbospectrum runs)."""
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def run_pool(task, jobs, workers: int, on_done) -> None:
    """Run ``task(*job)`` for every job on ``workers`` processes; ``on_done(result)`` in this
    process as each finishes (in completion order).

    Ctrl-C: queued jobs are cancelled, running ones killed, ``KeyboardInterrupt`` re-raised
    within a second. Another error in a job: queued jobs are cancelled, running ones finish
    (their results are passed to ``on_done``), then the error is raised.
    """
    pool = worker_pool(workers)
    futures, delivered = [], set()
    try:
        with sigint_held():
            futures = [pool.submit(task, *job) for job in jobs]
        for future in as_completed(futures):
            on_done(future.result())
            delivered.add(future)
    except KeyboardInterrupt:
        stop_pool(pool)
        raise
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        for future in futures:
            if future not in delivered and not future.cancelled() and future.exception() is None:
                on_done(future.result())
        raise
    pool.shutdown(wait=True)

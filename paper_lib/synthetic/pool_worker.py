"""What runs in a worker process of :class:`~paper_lib.synthetic.pool.ProcessPool`: its own
process group, Ctrl-C ignored, a watchdog on the parent, then one job at a time from its task
pipe, each answered on its result pipe."""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback

PARENT_POLL_S = 0.5  # s: how often a worker checks that its parent still lives


def _watch_parent(parent_pid: int) -> None:
    """Worker thread: kill this worker's process group (itself and Turbospectrum) once the
    parent has gone (the worker is then re-parented, so ``getppid`` changes)."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os.killpg(os.getpgid(0), signal.SIGKILL)


def worker_main(task, tasks, results, parent_pid: int, torch_threads, inherited) -> None:
    """A worker: own process group, Ctrl-C ignored (the parent decides), parent watchdog, the
    other workers' pipe ends that fork copied closed; then ``task(*args)`` for each
    ``(job, args)`` read from ``tasks``, answered on ``results`` as (job, ok, value), until
    ``None`` or EOF. ``torch_threads``: torch's threads (1 in forked workers)."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # see pool.sigint_held
    for connection in inherited:
        connection.close()
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                     name="paper_lib-parent-watch").start()
    if torch_threads is not None:
        import torch

        torch.set_num_threads(torch_threads)
    while True:
        try:
            message = tasks.recv()
        except EOFError:
            return
        if message is None:
            return
        job, args = message
        try:
            results.send(_outcome(task, job, args))
        except Exception as error:  # a result that cannot be pickled (nothing was written)
            results.send((job, False, (RuntimeError(
                f"the result could not be sent back: {type(error).__name__}: {error}"), "")))


def _outcome(task, job: int, args: tuple) -> tuple:
    """(job, True, result) or (job, False, (error, its traceback as text)), picklable."""
    import pickle

    try:
        return job, True, task(*args)
    except Exception as raised:
        error, text = raised, "".join(traceback.format_exception(raised))
    try:
        pickle.dumps(error)
    except Exception:
        error = RuntimeError(f"{type(error).__name__}: {error}")
    return job, False, (error, text)

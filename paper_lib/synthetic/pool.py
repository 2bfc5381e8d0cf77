"""The local process pool of `synth` (grid nodes) and `predict` (preparing files): workers that
die with their parent, a Ctrl-C that stops everything at once, and no way to hang when a worker
dies, however it dies.

``concurrent.futures.ProcessPoolExecutor`` (and loky) share one result queue behind a lock: a
worker ``kill -9``-ed while it writes a result dies holding that lock, the other workers block
on it, the executor's manager thread blocks in ``recv``, and at interpreter exit its exit hook
joins that thread forever (measured: 8 hangs in 15 runs; DESIGN.md, "Real stars and pools").
:class:`ProcessPool` shares nothing between workers:

* each worker has **its own task pipe and its own result pipe** and holds one task at a time;
  the parent keeps no copy of a worker's write end, so a worker that dies, even mid-message,
  gives ``EOFError`` or a ready ``sentinel`` in :func:`multiprocessing.connection.wait`, never
  a blocked read. Its task is **sent again** to another worker (at most :data:`TASK_TRIES`
  times in all; then that job alone fails with :class:`WorkerLost`), and a replacement worker
  is started (at most :data:`RESTARTS_PER_WORKER` per worker of the pool);
* one daemon dispatcher thread in the parent sends tasks and collects results; it waits on the
  pipes, the sentinels and a wake-up pipe, so :meth:`ProcessPool.kill` ends it at once, and
  nothing joins it (or anything else) without a time limit;
* every worker leads its own process group (:mod:`~paper_lib.synthetic.pool_worker`), so
  that its Turbospectrum children (``csh`` → ``babsma_lu``/``bsyn_lu``) are killed with it,
  and a terminal's Ctrl-C reaches only the parent, which decides; a watchdog thread in each
  worker kills its group within ``pool_worker.PARENT_POLL_S`` once the parent is gone,
  however the parent died.

:func:`run_pool` (the grid builds) delivers results in completion order; ``predict`` reads them
in job order (:meth:`ProcessPool.in_order`). Ctrl-C (SIGINT to the process or its group):
the workers' process groups are killed and ``KeyboardInterrupt`` re-raised, well within a
second; node files already written stay (written atomically, never half a file).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from .pool_worker import worker_main

TASK_TRIES = 2  # a job whose worker died is sent again until it was sent this often
RESTARTS_PER_WORKER = 2  # replacement workers started, at most, per worker of the pool
DISPATCHER_JOIN_S = 2.0  # s: at most this long for the dispatcher thread on close or kill
WORKER_EXIT_S = 2.0  # s: at most this long for idle workers to exit before they are killed
POLL_S = 0.5  # s: the consumer's wait between checks that the dispatcher still runs


class WorkerLost(RuntimeError):
    """A job whose worker process died (killed, out of memory) each time it was sent."""


class RemoteTraceback(Exception):
    """The traceback of an error raised in a worker (the ``__cause__`` of that error)."""

    def __str__(self):
        return self.args[0]


# the parent side ---------------------------------------------------------------------------

@contextlib.contextmanager
def sigint_held():
    """SIGINT held back (blocked) in this thread while it starts workers: a Ctrl-C that came
    between a fork and the worker's first lines would print a worker traceback. The workers
    unblock it once they ignore it; here it arrives when the block ends."""
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


@dataclass(eq=False)
class _Worker:
    """One worker process and the parent's ends of its two pipes; ``job``: the job it holds."""

    process: multiprocessing.process.BaseProcess
    tasks: Connection
    results: Connection
    job: int | None = None

    def close(self) -> None:
        self.tasks.close()
        self.results.close()


class ProcessPool:
    """``task(*args)`` for every ``args`` of ``jobs`` on ``workers`` processes (see the module
    docstring); started at once. Read the outcomes with :meth:`in_completion_order` or
    :meth:`in_order`; leave it with :meth:`close` (after the last outcome) or :meth:`kill`
    (at once), or use it as a context manager (an exception, Ctrl-C included, kills it).
    ``on_result(job)`` is called in the dispatcher thread as each job ends (progress bars).
    ``context``: a multiprocessing context (default: the platform's); ``torch_threads``: torch's
    threads in each worker."""

    def __init__(self, task, jobs, workers: int, *, context=None, torch_threads=None,
                 on_result=None):
        self._task, self._jobs = task, [tuple(args) for args in jobs]
        self._context = context or multiprocessing.get_context()
        self._torch_threads, self._on_result = torch_threads, on_result
        self._pending = deque(range(len(self._jobs)))
        self._tries = [0] * len(self._jobs)
        self._outcomes: queue.SimpleQueue = queue.SimpleQueue()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()  # guards _workers against kill() during a restart
        self._killed = self._draining = False
        self._restarts_left = RESTARTS_PER_WORKER * workers
        self._wake_read, self._wake_write = os.pipe()
        self._remaining = len(self._jobs)  # outcomes not yet handed out
        if workers < 1:
            raise ValueError(f"a process pool needs at least one worker, not {workers}")
        with sigint_held():  # forked in this (the main) thread: listed as its children
            for _ in range(min(workers, len(self._jobs))):
                self._start_worker()
        self._dispatcher = threading.Thread(target=self._dispatch, daemon=True,
                                            name="paper_lib-pool-dispatcher")
        self._dispatcher.start()

    # starting workers (main thread at first, dispatcher thread for replacements)
    def _start_worker(self) -> None:
        tasks_read, tasks_write = self._context.Pipe(duplex=False)
        results_read, results_write = self._context.Pipe(duplex=False)
        inherited = [c for w in self._workers for c in (w.tasks, w.results)]
        if self._context.get_start_method() != "fork":
            inherited = []  # a spawned worker inherits nothing
        process = self._context.Process(
            target=worker_main, daemon=True, name="paper_lib-pool-worker",
            args=(self._task, tasks_read, results_write, os.getpid(), self._torch_threads,
                  inherited))
        with self._lock:
            if self._killed:
                for end in (tasks_read, tasks_write, results_read, results_write):
                    end.close()
                return
            process.start()
            with contextlib.suppress(OSError):
                os.setpgid(process.pid, process.pid)  # also here: no window before kill()
            self._workers.append(_Worker(process, tasks_write, results_read))
        tasks_read.close()  # the parent keeps no copy of the worker's ends: EOF when it dies
        results_write.close()

    # the dispatcher thread
    def _dispatch(self) -> None:
        """Send pending jobs to idle workers, collect outcomes, replace dead workers; until
        every job has an outcome, or the pool is killed. Its own crash is an outcome too."""
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # for the main thread
        try:
            while not self._killed:
                self._feed_idle_workers()
                if not self._busy():
                    break
                self._collect(wait(self._waitables()))
            if not self._killed:
                self._outcomes.put(None)  # the end
        except BaseException as error:  # noqa: BLE001 — handed to the consumer
            if not self._killed:
                self._outcomes.put((-1, False, (error, "".join(traceback.format_exception(error)))))

    def _busy(self) -> bool:
        in_flight = any(w.job is not None for w in self._workers)
        return in_flight or (bool(self._pending) and not self._draining)

    def _waitables(self) -> list:
        return ([w.results for w in self._workers] + [w.process.sentinel for w in self._workers]
                + [self._wake_read])

    def _feed_idle_workers(self) -> None:
        for worker in list(self._workers):
            if worker.job is None and self._pending and not self._draining:
                job = self._pending.popleft()
                worker.job, self._tries[job] = job, self._tries[job] + 1
                try:
                    worker.tasks.send((job, self._jobs[job]))
                except OSError:  # it died: its sentinel says so next
                    pass
        if not self._workers and self._pending:
            self._fail_pending("no worker process is left (each one died)")

    def _collect(self, ready: list) -> None:
        if self._wake_read in ready:
            os.read(self._wake_read, 64)
        for worker in list(self._workers):
            if worker.results in ready or worker.process.sentinel in ready:
                self._read_results(worker)

    def _read_results(self, worker: _Worker) -> None:
        """The outcome of ``worker``'s job, or, when it died (EOF, also mid-message), its job
        sent again or failed, and a replacement started."""
        try:
            while worker.results.poll():
                job, ok, value = worker.results.recv()
                worker.job = None
                self._deliver(job, ok, value)
            if worker.process.is_alive():  # `sentinel` and `is_alive` agree: it has exited
                return
        except (EOFError, OSError):
            pass
        self._bury(worker)

    def _bury(self, worker: _Worker) -> None:
        """A dead worker: its Turbospectrum runs killed, its process reaped, its job again."""
        with self._lock:
            _kill_group(worker.process.pid)  # before the reaping: the pid is still ours
            worker.process.join(timeout=WORKER_EXIT_S)
            worker.close()
            self._workers.remove(worker)
        job = worker.job
        if job is not None:
            if self._tries[job] < TASK_TRIES:
                self._pending.appendleft(job)
            else:
                code = worker.process.exitcode
                self._deliver(job, False, (WorkerLost(
                    f"the worker process died (exit code {code}: killed? out of memory?) "
                    f"each of the {TASK_TRIES} times this job was sent"), ""))
        if self._restarts_left > 0 and (self._pending and not self._draining):
            self._restarts_left -= 1
            with sigint_held():
                self._start_worker()

    def _fail_pending(self, why: str) -> None:
        while self._pending:
            self._deliver(self._pending.popleft(), False, (WorkerLost(why), ""))

    def _deliver(self, job: int, ok: bool, value) -> None:
        self._outcomes.put((job, ok, value))
        if self._on_result is not None:
            self._on_result(job)

    # the consumer's side (main thread)
    def in_completion_order(self):
        """Yield (job index, ok, result or error) as jobs end; an error raised in a worker
        comes with its traceback as ``__cause__``; a :class:`WorkerLost` for a job whose
        workers died. Ends after the last job (or the last running one after :meth:`drain`)."""
        while self._remaining:
            try:
                outcome = self._outcomes.get(timeout=POLL_S)
            except queue.Empty:
                if not self._dispatcher.is_alive():
                    raise RuntimeError("the process pool's dispatcher stopped") from None
                continue
            if outcome is None:
                return
            job, ok, value = outcome
            if not ok:
                error, text = value
                if text:
                    error.__cause__ = RemoteTraceback(text)
                if job < 0:
                    raise error
                value = error
            self._remaining -= 1
            yield job, ok, value

    def in_order(self):
        """Yield (ok, result or error) in the order of the jobs (see in_completion_order)."""
        early, next_job = {}, 0
        for job, ok, value in self.in_completion_order():
            early[job] = ok, value
            while next_job in early:
                yield early.pop(next_job)
                next_job += 1

    def drain(self) -> None:
        """Send no further job; the running ones still end (and are yielded)."""
        self._draining = True
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # closed: nothing left to wake
            os.write(self._wake_write, b"x")

    def kill(self) -> None:
        """Stop now: every worker's process group killed, the dispatcher ended."""
        with self._lock:
            self._killed = True
            workers = list(self._workers)
            for worker in workers:
                if worker.process.exitcode is None:  # not reaped: the pid is still ours
                    _kill_group(worker.process.pid)
        self._wake()
        self._dispatcher.join(timeout=DISPATCHER_JOIN_S)
        for worker in workers:
            worker.process.join(timeout=WORKER_EXIT_S)
        self._close_pipes()

    def close(self) -> None:
        """After the last outcome: idle workers told to exit, killed if they do not."""
        self._draining = True
        self._wake()
        self._dispatcher.join(timeout=DISPATCHER_JOIN_S)
        if self._dispatcher.is_alive():
            return self.kill()
        for worker in self._workers:
            with contextlib.suppress(OSError):  # already gone: killed below
                worker.tasks.send(None)
        deadline = time.monotonic() + WORKER_EXIT_S
        for worker in self._workers:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        self.kill()  # whatever did not exit; and closes the pipes

    def _close_pipes(self) -> None:
        for worker in self._workers:
            worker.close()
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_read = self._wake_write = -1

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        self.close() if kind is None else self.kill()


def _kill_group(pid: int) -> None:
    """SIGKILL the process group of worker ``pid`` (the worker and its Turbospectrum runs), and
    the worker itself should it not lead its group yet."""
    for kill, target in ((os.killpg, pid), (os.kill, pid)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(target, signal.SIGKILL)


def run_pool(task, jobs, workers: int, on_done) -> None:
    """Run ``task(*job)`` for every job on ``workers`` processes; ``on_done(result)`` in this
    process as each finishes (in completion order).

    Ctrl-C: running jobs killed with their workers, queued ones dropped, ``KeyboardInterrupt``
    re-raised at once. An error in a job (or a job lost with its workers, :class:`WorkerLost`):
    no further job is started, running ones finish (their results go to ``on_done``), then
    the first error is raised.
    """
    failure, jobs = None, list(jobs)
    with ProcessPool(task, jobs, workers) as pool:
        for job, ok, value in pool.in_completion_order():
            if ok:
                on_done(value)
            elif failure is None:
                failure = value
                if isinstance(value, WorkerLost):  # name the job: the node of a grid build
                    failure = WorkerLost(f"{task.__name__}{tuple(jobs[job])}: {value}")
                pool.drain()
    if failure is not None:
        raise failure

"""Local executors: in this process (debugging) and a pool of spawned worker processes (the default).

The pool is a small loop over ``multiprocessing`` primitives rather than ``concurrent.futures``: when a
worker of a ``concurrent.futures`` pool dies, the whole pool breaks and every pending job fails with
``BrokenProcessPool``, so the job that killed it cannot be told from its innocent neighbours. Here each worker
runs one job at a time over its own pipe, and the driver waits on the pipes *and* the process sentinels:
a death is charged to exactly the job that worker was running, which is requeued (bounded by ``retries``)
on a fresh worker, while the other workers keep going.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import shutil
import signal
import traceback
from collections import deque
from collections.abc import Iterator
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from toolkit.executors.base import Envelope, Executor, ExecutorError, Item, cpu_count, remote_failure, run_job


class InProcessExecutor(Executor):
    """Runs jobs one after another in this process: no pickling, real tracebacks, breakpoints work.

    ``workers`` and ``threads_per_worker`` are accepted and ignored (this process keeps its own thread
    settings); a job that kills the process kills the caller, so ``retries`` cannot apply.
    """

    name = "inprocess"

    def _run(self, items: list[Item]) -> Iterator[tuple[int, Envelope]]:
        for it in items:
            yield it.index, run_job(it.job, self.tmp / "work" / it.safe)


class ProcessPoolExecutor(Executor):
    """``workers`` spawned processes (default: one per core), each pinned to ``threads_per_worker`` threads
    (default: cores // workers, at least 1) so that workers never oversubscribe the cores."""

    name = "process"

    def __init__(self, workers: int | None = None, threads_per_worker: int | None = None, **options: Any):
        super().__init__(workers, threads_per_worker, **options)
        cores = cpu_count()
        self.workers = self.workers or cores
        self.threads_per_worker = self.threads_per_worker or max(1, cores // self.workers)

    def _run(self, items: list[Item]) -> Iterator[tuple[int, Envelope]]:
        # spawn, not fork: forking a process that already runs TF/torch thread pools can deadlock.
        ctx = mp.get_context("spawn")
        queue: deque[Item] = deque(items)
        deaths: dict[int, list[int | None]] = {}
        workers = [_Worker(ctx, self.threads_per_worker) for _ in range(min(self.workers, len(items)))]
        busy: dict[_Worker, tuple[Item, Path]] = {}
        clean, idle_deaths = False, 0
        try:
            while queue or busy:
                # Replace workers that died while idle (bounded: a worker that cannot even start is fatal).
                for w in [w for w in workers if w not in busy and not w.proc.is_alive()]:
                    idle_deaths += 1
                    if idle_deaths > 2 * len(workers) + self.retries:
                        raise ExecutorError(f"worker processes keep dying before running a job (last exit code "
                                            f"{w.exitcode()}); check that {items[0].job.fn} imports in a fresh process")
                    workers.remove(w)
                    w.stop(graceful=False)
                    if queue:
                        workers.append(_Worker(ctx, self.threads_per_worker))
                for w in workers:
                    if w not in busy and queue:
                        it = queue.popleft()
                        scratch = self.tmp / "work" / f"{it.safe}-{len(deaths.get(it.index, ()))}"
                        if w.submit(it, scratch):
                            busy[w] = (it, scratch)
                        else:
                            queue.appendleft(it)  # the worker died while idle: charge nobody
                if not busy:
                    continue  # every submission found its worker dead: replaced above, then resubmitted
                handles: dict[Any, _Worker] = {}
                for w in busy:
                    handles[w.conn] = w
                    handles[w.proc.sentinel] = w
                for w in {handles[h] for h in wait(list(handles))}:
                    it, scratch = busy.pop(w)
                    msg = w.receive()
                    if msg is not None:
                        status, payload, tb = msg
                        if status == "error":
                            raise remote_failure(payload, tb)
                        yield it.index, payload
                        continue
                    # The worker died mid-job: drop its scratch (partial files), retry on a fresh worker.
                    code = w.exitcode()
                    shutil.rmtree(scratch, ignore_errors=True)
                    deaths.setdefault(it.index, []).append(code)
                    if len(deaths[it.index]) > self.retries:
                        raise ExecutorError(
                            f"job {it.label!r} ({it.job.fn}) failed: its worker process died "
                            f"{len(deaths[it.index])} time(s) (exit codes {deaths[it.index]}); "
                            f"gave up after {self.retries} retr{'y' if self.retries == 1 else 'ies'}")
                    queue.appendleft(it)
                    workers.remove(w)
                    w.stop(graceful=False)
                    workers.append(_Worker(ctx, self.threads_per_worker))
            clean = True
        finally:
            for w in workers:
                w.stop(graceful=clean)
            shutil.rmtree(self.tmp / "work", ignore_errors=True)


class _Worker:
    def __init__(self, ctx, threads: int):
        self.conn, child = ctx.Pipe(duplex=True)
        # Not a daemon: jobs may start processes of their own (daemonic processes may not have children).
        # An orphaned worker exits by itself when its pipe reaches EOF.
        self.proc = ctx.Process(target=_worker_main, args=(child, threads), name="safecompress-worker")
        self.proc.start()
        child.close()

    def submit(self, it: Item, scratch: Path) -> bool:
        try:
            payload = pickle.dumps((it.job, str(scratch)), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise ExecutorError(f"job {it.label!r} ({it.job.fn}): its arguments cannot be sent to a worker "
                                f"process: {type(exc).__name__}: {exc}") from None
        try:
            self.conn.send_bytes(payload)
            return True
        except OSError:
            return False

    def receive(self):
        """The worker's message, or None when it died before sending one."""
        try:
            if self.conn.poll():
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        return None

    def exitcode(self) -> int | None:
        self.proc.join(timeout=5)
        return self.proc.exitcode

    def stop(self, graceful: bool) -> None:
        if graceful and self.proc.is_alive():
            try:
                self.conn.send_bytes(pickle.dumps(None))
            except OSError:
                pass
            self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        self.conn.close()
        if self.proc.exitcode is not None:
            self.proc.close()


def _worker_main(conn, threads: int) -> None:
    """A worker's loop: receive (job, scratch), run it, send ("ok", Envelope) or ("error", exc, traceback)."""
    import os

    from toolkit.executors.base import pin_threads

    # Ctrl-C goes to the whole process group; the driver handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pin_threads(threads)
    os.environ.setdefault("SAFECOMPRESS_QUIET", "1")
    while True:
        try:
            # The pipe's other end is the driver process that spawned this worker: these bytes are the job it
            # pickled itself (config objects and arrays), never an input file.
            task = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the driver is gone
        if task is None:
            return
        job, scratch = task
        try:
            msg: tuple = ("ok", run_job(job, scratch), None)
        except BaseException as exc:  # noqa: BLE001 - everything a job raises goes back to the driver
            msg = ("error", _sendable(exc), traceback.format_exc())
        try:
            conn.send(msg)
        except Exception as exc:  # the result does not pickle
            conn.send(("error", ExecutorError(f"job {job.key or job.fn!r}: its result cannot be sent back from the "
                                              f"worker: {type(exc).__name__}: {exc}"), None))


def _sendable(exc: BaseException) -> BaseException:
    """``exc`` if it survives the trip to the driver (a pickle round trip of an object made here), else a
    RuntimeError naming it."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")

"""Worker processes that run an async backend's calls, so one run can use more than one core.

Why: litellm spends about 5 ms of CPU per call (request building, response objects, logging
payload, price lookup) on the event loop's thread, and configuration removes little of it
(``benches/README.md``). One process therefore tops out near 200 calls/s, below what a GPU server
with many slots answers. :class:`WorkerPool` runs the backend in ``n`` child processes
(``python -m geoaudit.workers``), each with its own event loop, and hands each call to the worker
with the fewest calls in flight. Everything else stays in the parent: the gateway's cache,
de-duplication, slots, retries and accounting, and the run store, so no two processes ever write
the same SQLite database.

The protocol is pickled messages over the child's stdin and stdout (``multiprocessing``
connections on plain pipes, not ``multiprocessing.Process``: that would re-run a ``__main__``
without a guard, such as ``python -m geoaudit``):

* parent -> worker: ``factory`` first (a picklable callable that builds the backend in the
  worker), then ``("call", id, method, args, kwargs)`` and ``("cancel", id)``;
* the frames are ``multiprocessing.connection``'s (a 4-byte length, then the pickle): the parent
  uses its ``Connection`` on threads (it may run many event loops, one after the other), the
  worker reads and writes them with its one event loop's pipe transports, without threads;
* worker -> parent: ``("ready",)`` once the backend is built and warm, then ``(id, True, result)``
  or ``(id, False, exception)``.

A worker ends when its stdin closes (the parent closed the pool, or died). If a worker dies, the
calls it had fail with :class:`WorkerDied` and the next call starts a new worker.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any


class WorkerDied(Exception):
    """The worker process running a call ended before it answered."""


_CLOSE = object()  # tells a writer thread to close its pipe


class _Worker:
    def __init__(self, factory: Callable[[], Any], on_message: Callable[[_Worker, Any], None]) -> None:
        env = dict(os.environ)
        # The child must import the same geoaudit as the parent (a worktree, an editable install),
        # also when the parent's working directory holds another checkout: ``-m`` puts the working
        # directory first on sys.path, so the child starts in the directory this package is in.
        here = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "geoaudit.workers"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=here,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._out = Connection(os.dup(self.proc.stdin.fileno()), readable=False)
        self._in = Connection(os.dup(self.proc.stdout.fileno()), writable=False)
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.alive = True
        #: Set when the worker has built its backend and run its ``warm()`` (e.g. imported litellm).
        self.ready = False
        self._on_message = on_message
        # Messages go out through a thread: a full pipe (the worker busy, its reader waiting for the
        # GIL) must block that thread, never the event loop that queued the call.
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name=f"geoaudit-worker-out-{self.proc.pid}", daemon=True)
        self._writer.start()
        self.send(factory)
        self._reader = threading.Thread(target=self._read, name=f"geoaudit-worker-{self.proc.pid}", daemon=True)
        self._reader.start()

    def send(self, message: Any) -> None:
        if not self.alive:
            raise OSError("the worker process has ended")
        self._outbox.put(message)

    def _write(self) -> None:
        while True:
            message = self._outbox.get()
            if message is _CLOSE:
                break
            try:
                self._out.send(message)
            except (OSError, ValueError):
                break  # the worker died: its reader sees EOF and fails the calls it had
        try:
            self._out.close()  # EOF on the worker's stdin: it cancels its calls and exits
        except OSError:
            pass

    def _read(self) -> None:
        while True:
            try:
                message = self._in.recv()
            except (EOFError, OSError):
                break
            except Exception as exc:  # an answer that cannot be unpickled: its call times out
                message = ("undecodable", exc)
            self._on_message(self, message)
        self.alive = False
        self._on_message(self, None)

    def close(self, timeout: float = 5.0) -> None:
        self.alive = False
        self._outbox.put(_CLOSE)
        self._writer.join(timeout)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout)
        with contextlib.suppress(OSError):
            self._in.close()


_pools: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


class WorkerPool:
    """``workers`` processes, each running the backend ``factory()`` builds; see the module docstring.

    Args:
        factory: builds the backend in each worker; must be picklable (a class, a module-level
            function, a ``functools.partial`` of those).
        workers: how many processes (started on the first call, restarted when one dies).
    """

    def __init__(self, factory: Callable[[], Any], workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.factory = factory
        self.size = workers
        self._workers: list[_Worker] = []
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._closed = False
        _pools.add(self)

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers if w.alive]

    def _pick(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            self._workers = [w for w in self._workers if w.alive]
            while len(self._workers) < self.size:
                self._workers.append(_Worker(self.factory, self._on_message))
            # A worker still starting (importing litellm takes seconds) gets calls only while no
            # other worker is ready; they wait in its queue, not in a slot of a ready one.
            ready = [w for w in self._workers if w.ready] or self._workers
            return min(ready, key=lambda w: len(w.pending))

    def start(self) -> None:
        """Start the workers now (they are otherwise started by the first call)."""
        with self._lock:
            self._workers = [w for w in self._workers if w.alive]
            while len(self._workers) < self.size:
                self._workers.append(_Worker(self.factory, self._on_message))

    async def ready(self, timeout: float = 300.0) -> None:
        """Start the workers and wait until one of them is ready to take calls.

        Raises:
            WorkerDied: every worker ended while starting (e.g. an import error: see stderr).
        """
        self.start()
        deadline = asyncio.get_running_loop().time() + timeout
        while not any(w.ready and w.alive for w in self._workers):
            if not any(w.alive for w in self._workers):
                codes = ", ".join(str(w.proc.poll()) for w in self._workers)
                raise WorkerDied(f"the worker processes ended while starting (exit codes {codes}; see stderr)")
            if asyncio.get_running_loop().time() > deadline:
                raise WorkerDied(f"no worker process was ready within {timeout:g} s")
            await asyncio.sleep(0.02)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``await backend.<method>(*args, **kwargs)`` in the least busy worker; its exception is re-raised here."""
        worker = self._pick()
        call_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        worker.pending[call_id] = fut
        try:
            worker.send(("call", call_id, method, args, kwargs))
        except (OSError, ValueError) as exc:
            worker.pending.pop(call_id, None)
            raise WorkerDied(f"worker process {worker.proc.pid} is gone ({exc})") from None
        try:
            return await fut
        except asyncio.CancelledError:
            if worker.alive:
                with contextlib.suppress(OSError, ValueError):
                    worker.send(("cancel", call_id))
            raise
        finally:
            worker.pending.pop(call_id, None)

    def _on_message(self, worker: _Worker, message: Any) -> None:
        """Runs on the worker's reader thread: hand the answer to the loop that awaits it."""
        if message is None:  # the worker ended: every call it had fails
            died = WorkerDied(f"worker process {worker.proc.pid} ended (exit code {worker.proc.poll()})")
            for fut in list(worker.pending.values()):
                _deliver(fut, False, died)
            return
        if message == ("ready",):
            worker.ready = True
            return
        if message[0] == "undecodable":
            return  # cannot tell which call: it stays pending until its timeout (the gateway sets one)
        call_id, ok, payload = message
        waiting = worker.pending.get(call_id)
        if waiting is not None:
            _deliver(waiting, ok, payload)

    def close(self) -> None:
        """Stop the workers (their calls in flight are cancelled)."""
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
        for w in workers:
            w.close()


def _deliver(fut: asyncio.Future[Any], ok: bool, payload: Any) -> None:
    def settle() -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(payload)
        else:
            fut.set_exception(payload)

    try:
        fut.get_loop().call_soon_threadsafe(settle)
    except RuntimeError:  # the awaiting loop is closed: nobody is waiting any more
        pass


@atexit.register
def _close_all() -> None:
    for pool in list(_pools):
        pool.close()


# --------------------------------------------------------------------------- the worker side


def _picklable_error(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # any failure to round-trip: send the text instead
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _read_exactly(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int) -> Any:
    (size,) = struct.unpack("!i", _read_exactly(fd, 4))
    if size == -1:
        (size,) = struct.unpack("!Q", _read_exactly(fd, 8))
    return pickle.loads(_read_exactly(fd, size))


def _frame(message: Any) -> bytes:
    """``message`` as :class:`multiprocessing.connection.Connection` frames it (the parent reads it so)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) > 0x7FFFFFFF:
        return struct.pack("!i", -1) + struct.pack("!Q", len(data)) + data
    return struct.pack("!i", len(data)) + data


async def _serve(backend: Any, inp_fd: int, out_fd: int) -> None:
    """The worker's loop: reads calls from ``inp_fd`` and writes answers to ``out_fd`` through the
    event loop's own pipe transports, so no thread waits for the GIL between a call and its answer
    (with threads, each hand-over could wait a switch interval, 5 ms, behind litellm's work)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(inp_fd, "rb", buffering=0))
    transport, protocol = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(out_fd, "wb", buffering=0)
    )
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    tasks: dict[int, asyncio.Task[Any]] = {}

    def reply(call_id: int, ok: bool, payload: Any) -> None:
        if transport.is_closing():
            return
        try:
            frame = _frame((call_id, ok, payload))
        except Exception as exc:  # a result that does not pickle
            frame = _frame((call_id, False, RuntimeError(f"unpicklable result: {type(exc).__name__}: {exc}")))
        writer.write(frame)

    async def run(call_id: int, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        try:
            result = await getattr(backend, method)(*args, **kwargs)
        except asyncio.CancelledError:
            return
        except BaseException as exc:  # every failure goes back to the caller, as in-process
            reply(call_id, False, _picklable_error(exc))
        else:
            reply(call_id, True, result)
        finally:
            tasks.pop(call_id, None)
        try:
            await writer.drain()  # the parent reads on a thread of its own: this waits only on a full pipe
        except (ConnectionError, OSError):
            pass

    while True:
        try:
            (size,) = struct.unpack("!i", await reader.readexactly(4))
            if size == -1:
                (size,) = struct.unpack("!Q", await reader.readexactly(8))
            message = pickle.loads(await reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            break  # the parent closed the pool, or died
        if message[0] == "call":
            _, call_id, method, args, kwargs = message
            tasks[call_id] = loop.create_task(run(call_id, method, args, kwargs))
        elif message[0] == "cancel":
            task = tasks.get(message[1])
            if task is not None:
                task.cancel()
    for task in list(tasks.values()):
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    transport.close()


def main() -> None:
    """The worker process: ``python -m geoaudit.workers`` (started by :class:`WorkerPool`)."""
    out_fd = os.dup(1)
    os.dup2(2, 1)  # a stray print must not corrupt the message stream
    try:
        factory = _read_frame(0)  # exactly one frame: the event loop takes the pipe over from here
    except (EOFError, OSError):
        return
    backend = factory()
    warm = getattr(backend, "warm", None)
    if callable(warm):
        warm()
    os.write(out_fd, _frame(("ready",)))
    asyncio.run(_serve(backend, 0, out_fd))


__all__ = ["WorkerDied", "WorkerPool"]


if __name__ == "__main__":
    main()

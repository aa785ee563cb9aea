"""Overlapping I/O with compute: a producer thread ahead of a loop and a consumer thread behind it.

Both hold at most `depth` items in a bounded queue (memory stays bounded whatever the speed of either side), and
an exception on a worker thread is raised again, as the same exception object, in the thread that drives the
loop: at its next `get`/`put`, or at `close`. The loop's own exceptions stop both threads without waiting for a
queue to drain, so neither side can leave the other blocked.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, Iterable, Iterator, TypeVar

T = TypeVar("T")
_ITEM, _END, _ERROR = 0, 1, 2
_POLL_S = 0.05  # how often a blocked side looks at the other side's state


class Prefetch(Generic[T]):
    """Iterate `source` on a thread, up to `depth` items ahead of the consumer. Use as a context manager; the
    source (a generator) is closed on its own thread when it ends, fails or the consumer stops early."""

    def __init__(self, source: Iterable[T], depth: int = 2, name: str = "prefetch"):
        self._q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source,), name=name, daemon=True)
        self._thread.start()

    def _offer(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: Iterable[T]) -> None:
        it = iter(source)
        try:
            for x in it:
                if not self._offer((_ITEM, x)):
                    return
            self._offer((_END, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consuming thread
            self._offer((_ERROR, e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass

    def __iter__(self) -> Iterator[T]:
        while True:
            try:
                kind, value = self._q.get(timeout=_POLL_S)
            except queue.Empty:
                if not self._thread.is_alive() and self._q.empty():
                    raise RuntimeError(f"{self._thread.name} thread ended without a result") from None
                continue
            if kind == _END:
                return
            if kind == _ERROR:
                raise value
            yield value

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "Prefetch[T]":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


class Drain(Generic[T]):
    """Call `sink(item)` on a thread for every item `put`, at most `depth` items waiting. After `end`, the thread
    handles what is left, then calls `finish()` (e.g. flush and rename a file) while the caller moves on; `join`
    waits for it and raises the thread's exception if it had one. `abort` (also on leaving the `with` block on an
    exception) stops the thread without handling what waits and calls `abandon()` unless `finish` completed."""

    def __init__(self, sink: Callable[[T], None], depth: int = 2, name: str = "drain",
                 finish: Callable[[], None] | None = None, abandon: Callable[[], None] | None = None):
        self._sink, self._finish, self._abandon = sink, finish, abandon
        self._q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._finished = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    kind, value = self._q.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if kind == _END:
                    if self._finish is not None:
                        self._finish()
                    self._finished = True
                    return
                self._sink(value)
        except BaseException as e:  # noqa: BLE001 - raised again in the producing thread
            self._error = e
        if not self._finished and self._abandon is not None:
            try:
                self._abandon()
            except Exception:
                pass

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        while True:
            self._check()
            if not self._thread.is_alive():
                raise RuntimeError(f"{self._thread.name} thread ended early")
            try:
                self._q.put((_ITEM, item), timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def end(self) -> None:
        """No more items: the thread handles those waiting, then finishes, while the caller goes on."""
        while self._thread.is_alive():
            try:
                self._q.put((_END, None), timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def join(self) -> None:
        """Wait for the thread; raise its exception, if any."""
        self._thread.join()
        self._check()

    def close(self) -> None:
        self.end()
        self.join()

    def abort(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "Drain[T]":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

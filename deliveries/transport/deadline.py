"""One total deadline per attempt.

``requests`` only knows per-operation timeouts, so a receiver that drips its answer one
byte at a time could hold an attempt for ever. A `Deadline` is watched by one watchdog
thread per process (a thread per attempt would cost more than the attempt); when it
passes, the watchdog shuts down the socket of the connection the attempt is using, and
the blocked read fails at once. It shuts down a ``dup()`` of the socket that the
connection owns, never a bare file descriptor number, so it cannot hit a descriptor that
was closed and reused.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from typing import Protocol

_local = threading.local()


class _Watchdog:
    """Expires deadlines in order of expiry. Finished ones stay in the heap until they
    reach its top (or a compaction), which keeps `add` and `finish` cheap."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._finished = 0
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline) -> None:
        with self._condition:
            if self._thread is None or not self._thread.is_alive():  # also after a fork
                self._thread = threading.Thread(target=self._run, name="webhooks-deadlines", daemon=True)
                self._thread.start()
            earliest = self._heap[0][0] if self._heap else None
            heapq.heappush(self._heap, (deadline.expires_at, next(self._order), deadline))
            if earliest is None or deadline.expires_at < earliest:
                self._condition.notify()

    def finished(self) -> None:
        with self._condition:
            self._finished += 1
            if self._finished > 1024 and self._finished * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].is_finished]
                heapq.heapify(self._heap)
                self._finished = 0

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._heap:
                    self._condition.wait()
                expires_at, _, deadline = self._heap[0]
                if deadline.is_finished:
                    heapq.heappop(self._heap)
                    self._finished = max(0, self._finished - 1)
                    continue
                wait = expires_at - time.monotonic()
                if wait > 0:
                    self._condition.wait(wait)
                    continue
                heapq.heappop(self._heap)
            deadline.expire()


_watchdog = _Watchdog()


class Watched(Protocol):
    """A connection the deadline can interrupt: it owns `deadline_handle`."""

    deadline_handle: socket.socket | None
    deadline: Deadline | None


def current() -> Deadline | None:
    """The deadline of the attempt running in this thread, if any."""
    return getattr(_local, "deadline", None)


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires_at = time.monotonic() + seconds
        self.expired = False
        self._finished = False
        self._conn: Watched | None = None
        self._lock = threading.Lock()

    @property
    def is_finished(self) -> bool:
        return self._finished

    def __enter__(self) -> Deadline:
        _local.deadline = self
        _watchdog.add(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.finish()
        _local.deadline = None
        with self._lock:
            if self._conn is not None:
                self._conn.deadline = None
                self._conn = None

    def remaining(self) -> float:
        return max(0.001, self.expires_at - time.monotonic())

    def finish(self) -> bool:
        """Mark the attempt complete; returns whether the deadline had already passed.

        After this the timer no longer interrupts anything, so a response read in full
        just before the deadline is not mistaken for a timeout.
        """
        with self._lock:
            if not self._finished:
                self._finished = True
                _watchdog.finished()
            return self.expired

    def watch(self, conn: Watched) -> None:
        """Interrupt `conn` when the deadline passes (now, if it already has)."""
        with self._lock:
            self._conn = conn
            conn.deadline = self
            if self.expired:
                self._shutdown()

    def unwatch(self, conn: Watched) -> None:
        """Called by a connection before it closes its handle."""
        with self._lock:
            if self._conn is conn:
                self._conn = None
            conn.deadline = None

    def expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self.expired = True
            self._shutdown()

    def _shutdown(self) -> None:
        handle = self._conn.deadline_handle if self._conn is not None else None
        if handle is not None:
            # shutdown() acts on the socket, not the descriptor: the duplicate
            # interrupts a read blocked on the original.
            with contextlib.suppress(OSError):
                handle.shutdown(socket.SHUT_RDWR)

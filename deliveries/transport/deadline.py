"""One total deadline per attempt.

``requests`` only knows per-operation timeouts, so a receiver that drips its answer one
byte at a time could hold an attempt for ever. A `Deadline` arms a timer; when it fires
it shuts down the socket of the connection the attempt is using, and the blocked read
fails at once. It shuts down a ``dup()`` of the socket that the connection owns, never a
bare file descriptor number, so it cannot hit a descriptor that was closed and reused.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Protocol

_local = threading.local()


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
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        _local.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.finish()
        self._timer.cancel()
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
            self._finished = True
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

    def _expire(self) -> None:
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

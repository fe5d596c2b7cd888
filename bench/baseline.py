"""Phase 1, the baseline: the same signed POSTs the workers make, sent by plain
`requests.Session` loops with the workers' concurrency (processes times threads) and no
database or broker. What the pipeline adds is measured against this.

Runs in spawned processes: nothing here may import Django.
"""

import contextlib
import json
import multiprocessing
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from deliveries.signing import signature_header

PROGRESS_EVERY = 50


def event_data(index: int) -> dict[str, Any]:
    """The `data` of a bench event: the size and shape of a real invoice.paid."""
    return {
        "invoice_id": f"inv_{index:08d}",
        "number": f"2026-{index:06d}",
        "amount": 125_000 + index % 1000,
        "currency": "EUR",
        "client": {"id": f"cli_{index % 97:04d}", "name": "Northwind Trading GmbH"},
        "paid_at": "2026-04-26T12:00:00.000Z",
        "method": "bank_transfer",
    }


def event_body(index: int, workspace: str = "bench-baseline") -> bytes:
    """A body as `event_publish` builds it: compact JSON, `data` last."""
    created = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    head = {"id": f"evt_{secrets.token_hex(16)}", "type": "invoice.paid", "created_at": created, "workspace": workspace}
    return (
        json.dumps(head, separators=(",", ":"))[:-1]
        + ',"data":'
        + json.dumps(event_data(index), separators=(",", ":"))
        + "}"
    ).encode()


@dataclass
class BaselineResult:
    requests: int
    seconds: float
    errors: int
    first_error: str
    processes: int
    threads: int

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _process_main(
    url: str,
    ca_file: str,
    counts: list[int],
    secret: str,
    user_agent: str,
    ready: Any,
    start: Any,
    progress: Any,
    done: Any,
) -> None:
    errors: list[str] = []

    def loop(count: int) -> None:
        http = requests.Session()
        http.trust_env = False  # as the transport: nothing from the environment
        unreported = 0
        for index in range(count):
            body = event_body(index)
            headers = {
                "Accept-Encoding": "identity",
                "Content-Type": "application/json",
                "User-Agent": user_agent,
                "X-ClientFlow-Event": "invoice.paid",
                "X-ClientFlow-Delivery": str(uuid.uuid4()),
                "X-ClientFlow-Signature": signature_header(secret=secret, body=body),
            }
            try:
                response = http.post(url, data=body, headers=headers, verify=ca_file, timeout=10)
                if not 200 <= response.status_code < 300:
                    errors.append(f"HTTP {response.status_code}")
            except requests.RequestException as exc:
                errors.append(str(exc))
            unreported += 1
            if unreported == PROGRESS_EVERY:
                progress.put(unreported)
                unreported = 0
        progress.put(unreported)

    workers = [threading.Thread(target=loop, args=(count,)) for count in counts]
    ready.put(True)
    start.wait()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.put((time.time(), len(errors), errors[0] if errors else ""))


def run(
    *,
    url: str,
    ca_file: str,
    processes: int,
    threads: int,
    count: int,
    user_agent: str,
    on_progress: Callable[[int], None],
) -> BaselineResult:
    """Send `count` requests from `processes` * `threads` loops; the clock starts once
    every process is up, so spawning Python is not measured."""
    context = multiprocessing.get_context("spawn")  # no fork of a process with open connections
    ready, progress, done = context.Queue(), context.Queue(), context.Queue()
    start = context.Event()
    loops = processes * threads
    shares = [count // loops + (1 if i < count % loops else 0) for i in range(loops)]
    secret = "whsec_" + secrets.token_urlsafe(32)
    children = [
        context.Process(
            target=_process_main,
            args=(
                url,
                ca_file,
                shares[p * threads : (p + 1) * threads],
                secret,
                user_agent,
                ready,
                start,
                progress,
                done,
            ),
            daemon=True,
        )
        for p in range(processes)
    ]
    for child in children:
        child.start()
    try:
        for _ in children:
            ready.get(timeout=60)
        began = time.time()
        start.set()
        finished: list[tuple[float, int, str]] = []
        while len(finished) < len(children):
            with contextlib.suppress(queue.Empty):
                on_progress(progress.get(timeout=0.2))
            try:
                finished.append(done.get_nowait())
            except queue.Empty:
                if not any(child.is_alive() for child in children):
                    try:  # all gone: what they sent last may still be in the pipe
                        finished.append(done.get(timeout=2))
                    except queue.Empty:
                        raise RuntimeError("a baseline process died") from None
        while True:  # what was reported after the last process finished
            try:
                on_progress(progress.get_nowait())
            except queue.Empty:
                break
        for child in children:
            child.join(timeout=10)
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
    errors = sum(n for _, n, _ in finished)
    first_error = next((e for _, _, e in finished if e), "")
    return BaselineResult(
        requests=count,
        seconds=max(at for at, _, _ in finished) - began,
        errors=errors,
        first_error=first_error,
        processes=processes,
        threads=threads,
    )

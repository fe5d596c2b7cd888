"""The phases, in the bench's own Django process (set up by `bench.cli`): publish
through the services, as ClientFlow code does, and read the outcome from the database
and the receiver's log."""

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count, Max, QuerySet
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bench import baseline, progress
from bench.baseline import event_data
from bench.infra import redis_queue_clear
from bench.options import Options
from bench.receivers import HangingListener, Receiver, read_log
from bench.workers import WorkerProcess
from clientflow_webhooks.models import Workspace
from clientflow_webhooks.services import workspace_create
from deliveries import services as delivery_services
from deliveries.models import Delivery, DeliveryAttempt, Event
from endpoints.models import Endpoint, EndpointEventType
from endpoints.services import endpoint_create, new_secret

EVENT_TYPE = "invoice.paid"
OWNER = "bench"
POLL_SECONDS = 0.2
MB = 1024 * 1024


@dataclass
class Bench:
    options: Options
    receiver: Receiver
    hanging: HangingListener
    workers: list[WorkerProcess]
    queue: str = ""
    failures: list[str] = field(default_factory=list)


@dataclass
class Group:
    """Endpoints a phase publishes to, each in a workspace of its own unless a fan-out."""

    name: str
    workspaces: list[Workspace]
    endpoint_ids: list[int]

    def deliveries(self) -> QuerySet[Delivery]:
        return Delivery.objects.filter(endpoint_id__in=self.endpoint_ids)


def owner_create() -> None:
    get_user_model().objects.create(username=OWNER)


def group_create(name: str, count: int, url: Callable[[int], str]) -> Group:
    """`count` endpoints through the services, each in its own workspace."""
    group = Group(name=name, workspaces=[], endpoint_ids=[])
    for index in range(count):
        workspace = workspace_create(slug=f"{name}-{index}", name=f"Bench {name} {index}", owner_username=OWNER)
        endpoint, _ = endpoint_create(workspace=workspace, url=url(index), event_types=[EVENT_TYPE])
        group.workspaces.append(workspace)
        group.endpoint_ids.append(endpoint.id)
    return group


def fanout_group_create(number: int, size: int, url: Callable[[int], str]) -> Group:
    """`size` endpoints in one workspace, in bulk: endpoint_create one by one would take
    minutes and measures nothing here. Secrets as endpoint_create makes them."""
    workspace = workspace_create(slug=f"fanout-{number}", name=f"Bench fan-out {size}", owner_username=OWNER)
    endpoints = Endpoint.objects.bulk_create(
        (Endpoint(workspace=workspace, url=url(i), secret=new_secret()) for i in range(size)), batch_size=1000
    )
    EndpointEventType.objects.bulk_create(
        (EndpointEventType(endpoint=e, event_type=EVENT_TYPE) for e in endpoints), batch_size=5000
    )
    return Group(name=f"fanout-{size}", workspaces=[workspace], endpoint_ids=[e.id for e in endpoints])


@dataclass
class Groups:
    throughput: Group
    latency: Group
    slow: Group
    hanging: Group
    fanouts: list[Group]


def groups_create(options: Options, receiver: Receiver, hanging: HangingListener) -> Groups:
    """Every phase's endpoints, made before the workers start. Fresh ones per phase, so
    that a phase counts its own deliveries by endpoint."""
    owner_create()
    return Groups(
        throughput=group_create("throughput", options.endpoints, lambda i: receiver.url(f"/e/{i}")),
        latency=group_create("latency", options.endpoints, lambda i: receiver.url(f"/l/{i}")),
        slow=group_create("slow", options.endpoints, lambda i: receiver.url(f"/s/{i}")),
        hanging=group_create("hanging", options.hanging, lambda i: hanging.url(f"/h/{i}")),
        fanouts=[
            fanout_group_create(n, size, lambda i, n=n: receiver.url(f"/f/{n}/{i}"))
            for n, size in enumerate(options.fanout)
            if "fanout" in options.phases
        ],
    )


def statuses(deliveries: QuerySet[Delivery]) -> dict[str, int]:
    rows = deliveries.order_by().values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


@dataclass
class Waited:
    complete: bool
    seconds: float  # from `started` to the last success, or to giving up
    statuses: dict[str, int]
    reason: str = ""

    @property
    def succeeded(self) -> int:
        return self.statuses.get(Delivery.Status.SUCCEEDED, 0)


def wait_succeeded(
    bench: Bench,
    *,
    deliveries: QuerySet[Delivery],
    expected: int,
    started: float,
    label: str,
    limit: float | None = None,
) -> Waited:
    """Poll until `expected` deliveries succeeded, every delivery ended, none succeeded
    for --stall-timeout seconds, every worker exited, or `limit` seconds passed since
    `started` (time.time()). The end is the last success's completed_at, exact where
    polling is not."""
    stall_timeout = bench.options.stall_timeout
    counts: dict[str, int] = {}
    reason = ""
    last_change, last_count = time.monotonic(), -1
    with progress.bar(total=expected, desc=label, unit="dlv") as bar:
        while True:
            counts = statuses(deliveries)
            succeeded = counts.get(Delivery.Status.SUCCEEDED, 0)
            bar.update(succeeded - bar.n)
            if succeeded >= expected:
                break
            if sum(counts.values()) >= expected and not counts.get(Delivery.Status.PENDING):
                reason = "every delivery ended, not all succeeded"
                break
            if succeeded != last_count:
                last_change, last_count = time.monotonic(), succeeded
            elif time.monotonic() - last_change > stall_timeout:
                reason = f"stalled: no delivery succeeded for {stall_timeout:g}s"
                break
            if not any(worker.alive() for worker in bench.workers):
                reason = "every worker exited"
                break
            if limit is not None and time.time() - started > limit:
                reason = f"stopped after {limit:.0f}s"
                break
            time.sleep(POLL_SECONDS)
    last: datetime | None = deliveries.filter(status=Delivery.Status.SUCCEEDED).aggregate(at=Max("completed_at"))["at"]
    if reason or last is None:
        return Waited(complete=False, seconds=time.time() - started, statuses=counts, reason=reason)
    return Waited(complete=True, seconds=last.timestamp() - started, statuses=counts)


def publish(group: Group, count: int, *, chunk: int, label: str, first_index: int = 0) -> float:
    """Publish `count` events round-robin over the group's workspaces, `chunk` per call
    of events_publish (one event_publish per event where it does not exist yet).
    Returns the wall time the first call began."""
    bulk = getattr(delivery_services, "events_publish", None)
    spread = len(group.workspaces)
    # Event i goes to workspace i % spread; the calls take turns among the workspaces.
    own = [list(range(first_index + w, first_index + count, spread)) for w in range(spread)]
    rounds = max(math.ceil(len(indexes) / chunk) for indexes in own)
    started = time.time()
    with progress.bar(total=count, desc=label, unit="evt") as bar:
        for r in range(rounds):
            for workspace, indexes in zip(group.workspaces, own, strict=True):
                data_list = [event_data(i) for i in indexes[r * chunk : (r + 1) * chunk]]
                if not data_list:
                    continue
                if bulk is not None:
                    bulk(workspace=workspace, event_type=EVENT_TYPE, data_list=data_list)
                else:
                    for data in data_list:
                        delivery_services.event_publish(workspace=workspace, event_type=EVENT_TYPE, data=data)
                bar.update(len(data_list))
    return started


def baseline_phase(bench: Bench, *, ca_file: str, threads: int) -> dict[str, Any]:
    """Phase 1 (bench.baseline), with the workers' processes and threads."""
    count = bench.options.events
    with progress.bar(total=count, desc="baseline", unit="req") as bar:
        result = baseline.run(
            url=bench.receiver.url("/baseline"),
            ca_file=ca_file,
            processes=len(bench.workers),
            threads=threads,
            count=count,
            user_agent=getattr(delivery_services, "USER_AGENT", "ClientFlow-Webhooks"),
            on_progress=bar.update,
        )
    if result.errors:
        bench.failures.append(f"baseline: {result.errors} requests failed, e.g. {result.first_error}")
    return {
        "requests": result.requests,
        "processes": result.processes,
        "threads_each": result.threads,
        "seconds": round(result.seconds, 3),
        "deliveries_per_s": round(result.per_second, 1),
        "errors": result.errors,
    }


def _rss(bench: Bench) -> list[int]:
    return [worker.rss_bytes() for worker in bench.workers]


def _throughput_run(bench: Bench, group: Group, *, label: str, limit: float | None = None) -> dict[str, Any]:
    options = bench.options
    already = group.deliveries().filter(status=Delivery.Status.SUCCEEDED).count()
    started = publish(group, options.events, chunk=options.chunk, label=f"{label}: publish", first_index=already)
    published = time.time() - started
    waited = wait_succeeded(
        bench,
        deliveries=group.deliveries(),
        expected=already + options.events,
        started=started,
        label=f"{label}: deliver",
        limit=limit,
    )
    succeeded = waited.succeeded - already
    result_statuses = dict(waited.statuses)
    result_statuses[Delivery.Status.SUCCEEDED] = succeeded  # this run's only
    return {
        "events": options.events,
        "endpoints": len(group.endpoint_ids),
        "publish_seconds": round(published, 3),
        "seconds": round(waited.seconds, 3),
        "succeeded": succeeded,
        "deliveries_per_s": round(succeeded / waited.seconds, 1) if waited.seconds > 0 else 0.0,
        "statuses": {k: v for k, v in result_statuses.items() if v},
        "complete": waited.complete,
        "stopped_because": waited.reason,
    }


def throughput(bench: Bench, group: Group, baseline_per_s: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Phase 2 (and phase 6, memory, around it). A warm-up first, untimed, so that what
    the workers set up once (threads, connections, TLS) is not counted as growth."""
    options = bench.options
    warmup = options.warmup * len(group.workspaces)
    started = publish(group, warmup, chunk=options.chunk, label="warm-up: publish")
    waited = wait_succeeded(
        bench, deliveries=group.deliveries(), expected=warmup, started=started, label="warm-up: deliver"
    )
    if not waited.complete:
        bench.failures.append(f"warm-up: {waited.reason}: {waited.statuses}")
    rss_before = _rss(bench)
    result = _throughput_run(bench, group, label="throughput")
    rss_after = _rss(bench)
    result["warmup_deliveries"] = warmup
    result["ratio_to_baseline"] = round(result["deliveries_per_s"] / baseline_per_s, 3) if baseline_per_s else None
    not_succeeded = options.events - result["succeeded"]
    result["not_succeeded"] = not_succeeded
    if not result["complete"] or not_succeeded:
        bench.failures.append(
            f"throughput: {not_succeeded} of {options.events} deliveries did not succeed "
            f"({result['stopped_because'] or result['statuses']})"
        )
    memory = {
        "measured": "around the throughput run, after the warm-up",
        "workers": [
            {"pid": w.pid, "before_mb": round(b / MB, 1), "after_mb": round(a / MB, 1)}
            for w, b, a in zip(bench.workers, rss_before, rss_after, strict=True)
        ],
        "before_mb": round(sum(rss_before) / MB, 1),
        "after_mb": round(sum(rss_after) / MB, 1),
        "growth_mb": round((sum(rss_after) - sum(rss_before)) / MB, 1),
    }
    return result, memory


def vacuum(*, before: str) -> dict[str, Any]:
    """Between two runs: VACUUM and ANALYZE of the deliveries' and endpoints' tables, what autovacuum does
    in production while traffic goes on. PostgreSQL on the machines this was written for
    runs with autovacuum off; without it the dead rows of one run (a delivery's row is
    rewritten at each claim and record) slow every index scan of the next, and the planner
    has no statistics at all."""
    started = time.perf_counter()
    tables = ", ".join(m._meta.db_table for m in (Delivery, DeliveryAttempt, Event, Endpoint, EndpointEventType))
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        autovacuum = cursor.fetchone()[0] == "on"
        cursor.execute(f"VACUUM (ANALYZE) {tables}")
    return {"before": before, "autovacuum": autovacuum, "seconds": round(time.perf_counter() - started, 3)}


def _percentile(values: Sequence[float], percent: float) -> float:
    """Nearest rank: a value that was measured."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def _paced_publish(
    group: Group, *, count: int, rate: float, threads: int, label: str
) -> tuple[dict[str, float], float]:
    """Event i is published at start + i / rate, by whichever of `threads` publishers is
    free: one alone cannot keep pace once event_publish takes longer than 1 / rate.
    Returns when each call returned (time.time(), by event id) and the rate achieved."""
    returned: dict[str, float] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    upcoming = iter(range(count))
    spread = len(group.workspaces)
    clock = time.perf_counter()

    with progress.bar(total=count, desc=label, unit="evt") as bar:

        def publisher() -> None:
            try:
                while True:
                    with lock:
                        index = next(upcoming, None)
                    if index is None or errors:
                        return
                    delay = clock + index / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    event = delivery_services.event_publish(
                        workspace=group.workspaces[index % spread], event_type=EVENT_TYPE, data=event_data(index)
                    )
                    at = time.time()
                    with lock:
                        returned[event.id] = at
                        bar.update()
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()  # each thread's own

        publishers = [threading.Thread(target=publisher, name=f"publisher-{i}") for i in range(threads)]
        for thread in publishers:
            thread.start()
        for thread in publishers:
            thread.join()
    if errors:
        raise errors[0]
    return returned, count / (time.perf_counter() - clock)


def latency(bench: Bench, group: Group, *, rate: float) -> dict[str, Any]:
    """Phase 3: single events at `rate` (half the measured throughput); latency is the
    receiver's arrival time (its log) minus the moment event_publish returned. The first
    seconds at that rate are a warm-up, not counted: new endpoints, the publishers' first
    connections and the workers settling are not the steady state the figure is about."""
    options = bench.options
    rate = max(1.0, rate)
    count = max(10, min(options.latency_max, round(rate * options.latency_seconds)))
    # About one publisher per 25 events/s: event_publish takes 5 ms on an idle machine,
    # several times that beside busy workers.
    threads = max(1, min(8, math.ceil(rate / 25)))
    warmup = round(rate * options.latency_warmup_seconds)
    started = time.time()
    if warmup:
        _paced_publish(group, count=warmup, rate=rate, threads=threads, label="latency: warm-up")
    returned, achieved = _paced_publish(group, count=count, rate=rate, threads=threads, label="latency: publish")
    waited = wait_succeeded(
        bench, deliveries=group.deliveries(), expected=warmup + count, started=started, label="latency: deliver"
    )
    # First arrival of each delivery id, mapped to its event in one query.
    arrivals: dict[str, float] = {}
    for arrival in read_log(bench.receiver.log_path):
        arrivals.setdefault(arrival.delivery, arrival.at)
    # Negative values are possible: the wake-up is sent on commit, inside the call, so a
    # quick worker may deliver before event_publish has returned.
    samples = []
    for delivery_id, event_id in group.deliveries().values_list("id", "event_id"):
        at = arrivals.get(str(delivery_id))
        if at is not None and event_id in returned:
            samples.append((at - returned[event_id]) * 1000)
    result: dict[str, Any] = {
        "target_rate_per_s": round(rate, 1),
        "achieved_rate_per_s": round(achieved, 1),
        "publisher_threads": threads,
        "warmup_events": warmup,
        "published": count,
        "matched": len(samples),
        "statuses": waited.statuses,
        "complete": waited.complete,
    }
    if samples:
        result.update(
            p50_ms=round(_percentile(samples, 50), 1),
            p95_ms=round(_percentile(samples, 95), 1),
            p99_ms=round(_percentile(samples, 99), 1),
            max_ms=round(max(samples), 1),
            min_ms=round(min(samples), 1),
        )
    if not waited.complete or waited.succeeded != warmup + count:
        bench.failures.append(
            f"latency: {warmup + count - waited.succeeded} of {warmup + count} deliveries did not succeed "
            f"({waited.reason})"
        )
    if len(samples) != count:
        bench.failures.append(f"latency: only {len(samples)} of {count} deliveries found in the receiver's log")
    return result


def fanout(bench: Bench, groups: Sequence[Group]) -> list[dict[str, Any]]:
    """Phase 4: one event_publish to each large group: its wall time and queries, then how
    long until every delivery succeeded."""
    results = []
    for group in groups:
        size = len(group.endpoint_ids)
        started = time.time()
        with CaptureQueriesContext(connection) as queries:
            clock = time.perf_counter()
            event = delivery_services.event_publish(
                workspace=group.workspaces[0], event_type=EVENT_TYPE, data=event_data(size)
            )
            publish_ms = (time.perf_counter() - clock) * 1000
        deliveries = Delivery.objects.filter(event_id=event.id)
        waited = wait_succeeded(
            bench,
            deliveries=deliveries,
            expected=size,
            started=started,
            label=f"fan-out {size}: deliver",
            limit=bench.options.fanout_wait,
        )
        # Cut short after --fanout-wait (a fan-out to 10,000 endpoints is 10,000 drains): what
        # is left is cancelled and its messages dropped, so that the next run measures only
        # its own deliveries.
        cut_short = not waited.complete and waited.reason.startswith("stopped after")
        cancelled = 0
        if cut_short:
            cancelled = deliveries.filter(status=Delivery.Status.PENDING).update(
                status=Delivery.Status.CANCELLED, next_attempt_at=None, locked_until=None, completed_at=timezone.now()
            )
            redis_queue_clear(bench.options.broker_url, bench.queue)
        results.append(
            {
                "endpoints": size,
                "publish_ms": round(publish_ms, 1),
                "queries": len(queries.captured_queries),
                "delivered_seconds": round(waited.seconds, 3) if waited.complete else None,
                "delivered_per_s": round(waited.succeeded / waited.seconds, 1) if waited.seconds else None,
                "cancelled_after_wait": cancelled,
                "statuses": waited.statuses,
                "complete": waited.complete,
            }
        )
        if not cut_short and (not waited.complete or waited.succeeded != size):
            bench.failures.append(
                f"fan-out {size}: {size - waited.succeeded} deliveries did not succeed "
                f"({waited.reason or waited.statuses})"
            )
    return results


class HangingPublisher(threading.Thread):
    """Keeps the hanging endpoints busy during the slow-receiver run: one event to each,
    every `interval` seconds, as events keep coming for a customer whose server is down."""

    def __init__(self, group: Group, interval: float = 2.0) -> None:
        super().__init__(daemon=True, name="hanging-publisher")
        self.group = group
        self.interval = interval
        self.published = 0
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.wait(self.interval):
                for workspace in self.group.workspaces:
                    delivery_services.event_publish(workspace=workspace, event_type=EVENT_TYPE, data=event_data(0))
                    self.published += 1
        except BaseException as exc:  # reported by the phase
            self.error = exc
        finally:
            connection.close()  # this thread's own connection

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)


def slow_receivers(
    bench: Bench, group: Group, hanging: Group, *, reference: dict[str, Any], before_each: int = 3
) -> dict[str, Any]:
    """Phase 5: the throughput run again while endpoints that never answer keep getting
    events. Their deliveries are not waited for. Stops at 1.5 times the reference run's
    time plus 10 s: a share below about 60 % is then measured over what was delivered
    so far, which is enough to tell that the target (80 %) is missed."""
    for workspace in hanging.workspaces:
        for index in range(before_each):
            delivery_services.event_publish(workspace=workspace, event_type=EVENT_TYPE, data=event_data(index))
    publisher = HangingPublisher(hanging)
    publisher.start()
    try:
        result = _throughput_run(bench, group, label="slow receivers", limit=1.5 * reference["seconds"] + 10)
    finally:
        publisher.stop()
    reference_rate = reference["deliveries_per_s"]
    result["share_of_throughput"] = round(result["deliveries_per_s"] / reference_rate, 3) if reference_rate else None
    result["hanging_endpoints"] = len(hanging.endpoint_ids)
    result["hanging_events"] = before_each * len(hanging.workspaces) + publisher.published
    result["hanging_statuses"] = statuses(hanging.deliveries())
    result["hanging_connections"] = bench.hanging.accepted
    if publisher.error is not None:
        bench.failures.append(f"slow receivers: publishing to the hanging endpoints failed: {publisher.error!r}")
    return result


def receiver_summary(bench: Bench) -> dict[str, Any]:
    """What the receiver saw in all: a delivery id twice means a delivery was sent again
    after it had succeeded (at-least-once allows it; it should be rare)."""
    arrivals = read_log(bench.receiver.log_path)
    seen: dict[str, int] = {}
    for arrival in arrivals:
        if arrival.delivery != "-":
            seen[arrival.delivery] = seen.get(arrival.delivery, 0) + 1
    return {
        "kind": bench.receiver.kind,
        "version": bench.receiver.version,
        "requests": len(arrivals),
        "not_2xx": sum(1 for a in arrivals if not 200 <= a.status < 300),
        "received_more_than_once": sum(1 for n in seen.values() if n > 1),
    }

"""`python -m bench.explain`: the plans of the delivery pipeline's hot queries on a table of
1,000,000 deliveries (docs/performance.md shows a run).

The rows are written with INSERT … SELECT generate_series, not through the services: the
point is the shape of the table (mostly succeeded, some dead letters, a backlog of
pending deliveries spread over 1,000 endpoints), not how it got there.
"""

import argparse
import os
import sys
import tempfile
from datetime import timedelta

from bench import infra

DEFAULT_URL = "postgres://clientflow@127.0.0.1:5432/clientflow_bench_explain"

FILL = """
INSERT INTO deliveries_event (id, workspace_id, type, data, payload, created_at)
SELECT 'evt_' || lpad(to_hex(n), 32, '0'), %(workspace)s, 'invoice.paid', '{}'::jsonb, '{}',
       now() - make_interval(secs => n)
FROM generate_series(1, %(rows)s) AS n;

-- 90 %% succeeded, 2 %% failed, 3 %% exhausted, 5 %% pending (about half due, half retrying later).
INSERT INTO deliveries_delivery (id, event_id, endpoint_id, status, attempt_count, attempts_before_replay,
                                 next_attempt_at, locked_until, last_status_code, last_error, created_at, completed_at)
SELECT gen_random_uuid(), 'evt_' || lpad(to_hex(n), 32, '0'), %(first_endpoint)s + n %% %(endpoints)s,
       CASE WHEN n %% 100 < 90 THEN 'succeeded' WHEN n %% 100 < 92 THEN 'failed'
            WHEN n %% 100 < 95 THEN 'exhausted' ELSE 'pending' END,
       1, 0,
       CASE WHEN n %% 100 >= 95 THEN now() + make_interval(secs => (n %% 7) - 3) END,
       NULL, 204, '', now() - make_interval(secs => n),
       CASE WHEN n %% 100 < 95 THEN now() - make_interval(secs => n) END
FROM generate_series(1, %(rows)s) AS n;
ANALYZE deliveries_event;
ANALYZE deliveries_delivery;
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.explain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="deliveries in the table (default 1,000,000)")
    parser.add_argument("--endpoints", type=int, default=1_000, help="endpoints they go to (default 1,000)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_EXPLAIN_DATABASE_URL", DEFAULT_URL),
        help="a PostgreSQL database to drop and re-create (its name must contain 'bench')",
    )
    options = parser.parse_args(argv)
    if options.rows < 1 or options.endpoints < 1:
        parser.error("--rows and --endpoints must be at least 1")
    try:
        database = infra.database_recreate(options.database_url)
    except infra.BenchError as exc:
        print(f"bench.explain: {exc}", file=sys.stderr)
        return 2
    with tempfile.NamedTemporaryFile(suffix=".pem") as ca:
        env = infra.bench_env(
            database_url=options.database_url, broker_url="redis://127.0.0.1:6379/13", queue="explain", ca_file=ca.name
        )
        os.environ.update(env)
        infra.migrate({**os.environ, **env})
        import django

        django.setup()
        _fill(rows=options.rows, endpoints=options.endpoints)
        _explain(endpoints=options.endpoints)
    print(f"\n(database {database.name}, PostgreSQL {database.server_version})")
    return 0


def _fill(*, rows: int, endpoints: int) -> None:
    from django.db import connection, transaction

    from clientflow_webhooks.models import Workspace
    from endpoints.models import Endpoint
    from endpoints.services import new_secret

    workspace = Workspace.objects.create(slug="explain", name="Explain")
    created = Endpoint.objects.bulk_create(
        Endpoint(workspace=workspace, url=f"https://hooks.example.com/{i}", secret=new_secret())
        for i in range(endpoints)
    )
    print(f"filling {rows:,} deliveries to {endpoints:,} endpoints…", file=sys.stderr, flush=True)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            FILL, {"rows": rows, "endpoints": endpoints, "first_endpoint": created[0].id, "workspace": workspace.id}
        )


def _explain(*, endpoints: int) -> None:
    from django.conf import settings
    from django.db import connection, transaction
    from django.db.models import Count
    from django.utils import timezone

    from deliveries import selectors
    from deliveries.models import Delivery
    from endpoints.models import Endpoint

    now = timezone.now()
    busiest = (
        Delivery.objects.filter(status=Delivery.Status.PENDING)
        .values("endpoint_id")
        .annotate(n=Count("id"))
        .order_by("-n")
        .first()
    )
    endpoint_id = busiest["endpoint_id"] if busiest else Endpoint.objects.values_list("id", flat=True).first()
    queries = {
        "After a drain: when the endpoint's next delivery is due": selectors.deliveries_waiting(
            endpoint_id=endpoint_id, now=now
        ).values_list("next_attempt_at", flat=True)[:1],
        "The sweeper: endpoints with deliveries overdue and unclaimed": selectors.endpoints_overdue(
            now=now, grace=timedelta(seconds=settings.WEBHOOKS_SWEEP_GRACE)
        )[: settings.WEBHOOKS_SWEEP_BATCH],
        "The dead-letter list in the admin, newest first": selectors.dead_letters()[:100],
    }
    total = Delivery.objects.count()
    pending = Delivery.objects.filter(status=Delivery.Status.PENDING).count()
    print(f"deliveries: {total:,}; pending: {pending:,}; endpoints: {endpoints:,}\n")

    print("## A worker's claim: lease the endpoint's 50 oldest due deliveries (UPDATE … FOR UPDATE SKIP LOCKED)\n")
    from deliveries.services import _CLAIM_SQL

    with transaction.atomic(), connection.cursor() as cursor:  # rolled back: nothing is claimed
        cursor.execute(
            "EXPLAIN (ANALYZE, BUFFERS) " + _CLAIM_SQL,
            {
                "lease": now + timedelta(seconds=settings.WEBHOOKS_LEASE_SECONDS),
                "endpoint": endpoint_id,
                "now": now,
                "limit": settings.WEBHOOKS_BATCH_SIZE,
            },
        )
        print("\n".join(row[0] for row in cursor.fetchall()))
        transaction.set_rollback(True)
    print()
    _explain_record(endpoint_id=endpoint_id, now=now)
    for title, queryset in queries.items():
        print(f"## {title}\n")
        with transaction.atomic():  # FOR UPDATE needs one; rolled back with the locks
            print(queryset.explain(analyze=True, buffers=True))
            transaction.set_rollback(True)
        print()
    _explain_operations(now=now)


def _explain_record(*, endpoint_id: int, now) -> None:
    """A batch's record: its 50 attempts inserted, its 50 deliveries moved on, with the
    parameters a worker sends."""
    from django.conf import settings
    from django.db import connection, transaction

    from deliveries.models import Delivery, DeliveryAttempt
    from deliveries.services import _RECORD_SQL, _record_parameters, _Result

    print("## A worker's record of a batch: 50 attempts inserted, 50 deliveries moved on (one statement)\n")
    ids = list(
        Delivery.objects.filter(endpoint_id=endpoint_id, status=Delivery.Status.PENDING).values_list("id", flat=True)[
            : settings.WEBHOOKS_BATCH_SIZE
        ]
    )
    results = [
        _Result(
            attempt=DeliveryAttempt(
                delivery_id=i, number=1, started_at=now, duration_ms=3, response_status=204, outcome="success"
            ),
            update={"status": "succeeded", "last_status_code": 204, "last_error": "", "next_attempt_at": None},
        )
        for i in ids
    ]
    with transaction.atomic(), connection.cursor() as cursor:  # rolled back: nothing is recorded
        Delivery.objects.filter(id__in=ids).update(locked_until=now)
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + _RECORD_SQL, _record_parameters(results=results, lease=now))
        # 50 ids are one long line: cut it.
        print("\n".join(row[0] if len(row[0]) <= 200 else row[0][:200] + " …" for row in cursor.fetchall()))
        transaction.set_rollback(True)
    print()


def _explain_operations(*, now) -> None:
    """The queries of operations (docs/operations.md), as their selectors run them."""
    from django.db.models import Count

    from deliveries import selectors
    from deliveries.models import Delivery
    from endpoints.models import Endpoint

    by_deliveries = Delivery.objects.values("endpoint_id").annotate(n=Count("id")).order_by("-n")
    busiest = list(by_deliveries.values_list("endpoint_id", flat=True)[:50])
    workspace_id = Endpoint.objects.values_list("workspace_id", flat=True).first()
    old = now - timedelta(days=10)

    def events_unneeded() -> list[str]:
        page = selectors.events_older(workspace_id=workspace_id, before=old, after=None).values_list("id", flat=True)
        unneeded = selectors.events_unneeded(workspace_id=workspace_id, before=old, ids=page[:1000])
        return list(unneeded.values_list("id", flat=True))

    runs = {
        "/metrics at each scrape: dead letters, pending deliveries, the oldest due one (lag)": lambda: (
            selectors.pipeline_figures(now=now)
        ),
        "Endpoint figures (24 h, 7 days, last error): a list page of 50 endpoints": lambda: list(
            selectors.endpoints_with_health(endpoints=Endpoint.objects.filter(id__in=busiest), now=now)
        ),
        "Auto-disable: endpoints with 10 dead letters in 5 days, then the first one's checks": lambda: (
            selectors.endpoints_failing(now=now, period=timedelta(days=5), minimum=10)
        ),
        "Retention: a batch of the 1,000 oldest succeeded deliveries that ended over 10 days ago": lambda: list(
            selectors.deliveries_expired(before=old)
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)[:1000]
        ),
        "Retention: a batch of the 1,000 oldest dead letters that ended over 10 days ago": lambda: list(
            selectors.dead_letters_expired(before=old)
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)[:1000]
        ),
        "Retention: a page of a workspace's events from over 10 days ago, and which no delivery needs": (
            events_unneeded
        ),
    }
    for title, run in runs.items():
        _explain_statements(title, run)


def _explain_statements(title, run, *, most: int = 6) -> None:
    """Run `run` once to capture its statements, then show the plan of each (at most `most`)."""
    import time

    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    print(f"## {title}\n")
    with transaction.atomic():  # FOR UPDATE needs one; rolled back with the locks
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as captured:
            run()
        took = time.perf_counter() - started
        statements = [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
        print(f"{len(statements)} statements in {took * 1000:.1f} ms\n")
        with connection.cursor() as cursor:
            for sql in statements[:most]:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
                # A page of 1,000 ids is one long line: cut it.
                print("\n".join(row[0] if len(row[0]) <= 200 else row[0][:200] + " …" for row in cursor.fetchall()))
                print()
        transaction.set_rollback(True)


if __name__ == "__main__":
    sys.exit(main())

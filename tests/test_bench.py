"""`python -m bench --smoke` end to end: its own database next to the tests' one, the same
Redis (a queue of its own), real workers and receiver. A subprocess: the bench sets up
Django for itself, so this test uses none of pytest-django's database."""

import json
import os
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import skip_or_fail
from tests.services import ROOT

# The real services, and no `db` fixture: the bench creates and drops its own database.
pytestmark = pytest.mark.services

# Figures that are a positive number whenever the run worked (growth and counts may be 0).
POSITIVE = [
    "baseline_per_s",
    "throughput_per_s",
    "throughput_ratio",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_matched",
    "latency_rate_per_s",
    "fanout_100_publish_s",
    "fanout_100_queries",
    "fanout_100_delivered_s",
    "fanout_100_delivered_per_s",
    "fanout_300_publish_s",
    "fanout_300_queries",
    "fanout_300_delivered_s",
    "fanout_300_delivered_per_s",
    "slow_per_s",
    "slow_share_pct",
    "memory_before_mb",
    "memory_after_mb",
]


def bench_urls() -> tuple[str, str]:
    """The tests' PostgreSQL and Redis, as the bench should use them: the database name
    with "_bench" appended (the bench drops and re-creates it), the same Redis database."""
    database_url = os.environ.get("DATABASE_URL", "")
    broker_url = os.environ.get("CELERY_BROKER_URL", "")
    database = urlsplit(database_url)
    if database.scheme not in {"postgres", "postgresql", "pgsql"}:
        skip_or_fail("the bench needs DATABASE_URL on PostgreSQL")
    if not broker_url.startswith(("redis://", "rediss://")):
        skip_or_fail("the bench needs CELERY_BROKER_URL on Redis")
    name = database.path.lstrip("/") or "clientflow"
    return urlunsplit(database._replace(path=f"/{name}_bench")), broker_url


def test_smoke_run_delivers_everything_and_reports_every_figure(tmp_path):
    # given the tests' services
    database_url, broker_url = bench_urls()
    results = tmp_path / "bench.json"

    # when the smoke bench runs
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(results)],
        cwd=ROOT,
        env={**os.environ, "BENCH_DATABASE_URL": database_url, "BENCH_BROKER_URL": broker_url},
        capture_output=True,
        text=True,
        timeout=240,
    )

    # then it succeeded and says so in a table and in its JSON
    assert run.returncode == 0, f"stdout:\n{run.stdout}\nstderr:\n{run.stderr[-5000:]}"
    assert "throughput: deliveries/s" in run.stdout
    document = json.loads(results.read_text())
    assert document["ok"] is True and document["failures"] == []
    figures = document["figures"]
    for key in POSITIVE:
        value = figures[key]["value"]
        assert isinstance(value, int | float) and value > 0, (key, figures[key])
    assert isinstance(figures["memory_growth_mb"]["value"], int | float)
    # every delivery of the throughput phase succeeded, and the receiver got each
    throughput = document["phases"]["throughput"]
    assert throughput["complete"] is True
    assert throughput["statuses"] == {"succeeded": throughput["events"]} == {"succeeded": 300}
    assert figures["throughput_not_succeeded"]["value"] == 0
    assert document["phases"]["latency"]["matched"] == document["phases"]["latency"]["published"]
    assert document["phases"]["receiver"]["not_2xx"] == 0
    # and the machine and the receiver are described
    assert document["machine"]["cpu_count"] >= 1 and document["machine"]["postgresql"]
    assert document["receiver"]["kind"] in {"nginx", "python"}

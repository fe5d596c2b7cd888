"""/healthz, /readyz and who may read /metrics; the settings of operations refuse bad values."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connections
from django.test import Client

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "metrics-token-0123456789abcdef"


def closed_port() -> int:
    """A local port nobody listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def probe():
    """A client as a load balancer or Prometheus is: by IP address, over plain HTTP."""
    return Client(HTTP_HOST="10.1.2.3:8000", REMOTE_ADDR="10.1.2.3")


# --- /healthz --------------------------------------------------------------------------


def test_healthz_answers_without_the_database_whatever_the_host_or_scheme(
    probe, settings, django_assert_num_queries, db
):
    settings.SECURE_SSL_REDIRECT = True  # production: would redirect any other plain-HTTP request
    with django_assert_num_queries(0):
        response = probe.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"
    assert probe.get("/healthz/").status_code == 200
    # The rest of the site still refuses that host.
    assert probe.get("/accounts/login/").status_code == 400


def test_probes_answer_only_get_and_head(probe):
    response = probe.post("/healthz")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


# --- /readyz ---------------------------------------------------------------------------


def test_readyz_is_ready_when_the_database_and_the_broker_answer(probe, db):
    response = probe.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_fails_with_503_naming_the_broker_when_it_is_down(probe, settings, db):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{closed_port()}/0"
    assert_unready(probe, down="broker")


def test_readyz_fails_with_503_naming_the_database_when_it_is_down(probe, monkeypatch, db):
    # The test's own connection stays open; the check connects anew, to where nothing listens.
    database = connections["default"].settings_dict
    if database["ENGINE"].endswith("postgresql"):
        monkeypatch.setitem(database, "PORT", closed_port())
    else:
        monkeypatch.setitem(database, "NAME", "/nonexistent/folder/db.sqlite3")
    assert_unready(probe, down="database")


def assert_unready(probe, *, down: str) -> None:
    """/readyz answers 503 at once, naming the check that failed."""
    started = time.monotonic()
    response = probe.get("/readyz")
    assert response.status_code == 503
    checks = {"database": "ok", "broker": "ok", down: "unreachable"}
    assert response.json() == {"status": "unavailable", "checks": checks}
    assert time.monotonic() - started < 5


# --- who may read /metrics ------------------------------------------------------------


def test_metrics_are_refused_in_production_when_nothing_allows_them(probe, settings, db):
    settings.DEBUG = False
    settings.WEBHOOKS_METRICS_TOKEN = ""
    settings.METRICS_NETWORKS = ()
    response = Client(REMOTE_ADDR="127.0.0.1").get("/metrics")
    assert response.status_code == 403
    assert "set WEBHOOKS_METRICS_TOKEN or WEBHOOKS_METRICS_ALLOWED_NETWORKS" in response.content.decode()
    assert b"webhooks_" not in response.content


def test_metrics_need_the_bearer_token_when_one_is_set(probe, settings, db):
    settings.WEBHOOKS_METRICS_TOKEN = TOKEN
    settings.METRICS_NETWORKS = ()
    missing = probe.get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert probe.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}x").status_code == 401
    assert probe.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    granted = probe.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert granted.status_code == 200
    assert granted["Content-Type"].startswith("text/plain; version=")
    assert b"# TYPE webhooks_attempts_total counter" in granted.content


def test_metrics_are_open_to_the_allowed_networks(settings, db):
    import ipaddress

    settings.WEBHOOKS_METRICS_TOKEN = ""
    settings.METRICS_NETWORKS = (ipaddress.ip_network("10.0.0.0/8"),)
    assert Client(REMOTE_ADDR="10.9.9.9").get("/metrics").status_code == 200
    outside = Client(REMOTE_ADDR="192.0.2.7").get("/metrics")
    assert outside.status_code == 403
    assert "WEBHOOKS_METRICS_ALLOWED_NETWORKS" in outside.content.decode()


def test_metrics_in_development_without_settings_are_open_to_this_machine_only(settings, db):
    settings.DEBUG = True
    settings.WEBHOOKS_METRICS_TOKEN = ""
    settings.METRICS_NETWORKS = ()
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="10.9.9.9").get("/metrics").status_code == 403


# --- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WEBHOOKS_METRICS_ALLOWED_NETWORKS", "10.0.0.0/8,not-a-network", "WEBHOOKS_METRICS_ALLOWED_NETWORKS:"),
        ("WEBHOOKS_METRICS_TOKEN", "short", "WEBHOOKS_METRICS_TOKEN must be at least 16 characters."),
        ("WEBHOOKS_AUTO_DISABLE_DAYS", "-1", "WEBHOOKS_AUTO_DISABLE_DAYS must be 0 (off) or a positive"),
        ("WEBHOOKS_AUTO_DISABLE_MIN_DEAD_LETTERS", "0", "WEBHOOKS_AUTO_DISABLE_MIN_DEAD_LETTERS must be at least 1."),
        ("WEBHOOKS_RETENTION_DAYS", "0", "WEBHOOKS_RETENTION_DAYS must be a positive number of days."),
        ("WEBHOOKS_DEAD_LETTER_RETENTION_DAYS", "-3", "WEBHOOKS_DEAD_LETTER_RETENTION_DAYS must be a positive"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be json or text."),
    ],
)
def test_bad_operations_settings_stop_the_start_with_a_clear_message(name, value, message, tmp_path):
    env = {**os.environ, name: value, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert message in result.stderr

"""Fault tests: real worker, Redis, PostgreSQL and HTTPS receivers; nothing may be lost.

Each test checks every delivery against what the receiver logged: a delivery succeeded
exactly when the receiver answered it 2xx, it is a dead letter exactly when every one
of its attempts failed, and no delivery is lost or answered 2xx twice.
"""

import shutil
import socket
import subprocess
import time
from collections import defaultdict

import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection

from deliveries.models import Delivery
from deliveries.services import event_publish
from tests.conftest import example
from tests.services import SESSION_QUEUE, Worker, wait_for

pytestmark = pytest.mark.services

FAST = {"WEBHOOKS_RETRY_DELAYS": "0.2,0.2,0.2"}


def publish_many(workspace, n, event_type="invoice.paid"):
    return [event_publish(workspace=workspace, event_type=event_type, data=example(event_type)).id for _ in range(n)]


def wait_all_ended(event_ids, timeout=90):
    def ended():
        return not Delivery.objects.filter(event_id__in=event_ids, status="pending").exists()

    wait_for(ended, timeout=timeout, interval=0.5, message="every delivery to end")
    return list(Delivery.objects.filter(event_id__in=event_ids))


def assert_states_match_receiver(deliveries, receiver, *, max_attempts=4, duplicates_allowed=False):
    """Returns how many deliveries were accepted more than once (at-least-once: only a
    fault that hits between a 2xx and its record may cause that)."""
    duplicated = 0
    answers = defaultdict(list)
    for request in receiver.received():
        answers[request.headers["X-ClientFlow-Delivery"]].append(request.status)
    for delivery in deliveries:
        got = answers[str(delivery.id)]
        assert got, f"delivery {delivery.id} never reached the receiver"
        successes = [s for s in got if s is not None and 200 <= s < 300]
        duplicated += len(successes) > 1
        assert duplicates_allowed or len(successes) <= 1, f"delivery {delivery.id} was accepted {len(successes)} times"
        if delivery.status == "succeeded":
            assert successes, (delivery.id, got)
        else:
            assert delivery.status == "exhausted", (delivery.id, delivery.status, got)
            assert not successes and len(got) >= max_attempts, (delivery.id, got)
    return duplicated


def test_worker_killed_in_the_middle_of_an_attempt(worker_env, tmp_path, receiver, workspace, make_endpoint):
    # A deadline (6 s) the kill comes well before, so the attempt can only end by the kill.
    worker = Worker({**worker_env, "WEBHOOKS_TIMEOUT": "6", "WEBHOOKS_LEASE_MARGIN": "1"}, tmp_path)
    worker.start()
    try:
        make_endpoint(url=receiver.url("/slow"))
        receiver.script("/slow", ("hang", 60))  # the first attempt is held open
        [event_id] = publish_many(workspace, 1)
        wait_for(lambda: len(receiver.received("/slow")) == 1, message="the attempt in flight")
        worker.kill()
        worker = Worker(worker_env, tmp_path / "second")
        (tmp_path / "second").mkdir()
        worker.start()  # the lease runs out, the sweeper re-enqueues, the new worker sends
        [delivery] = wait_all_ended([event_id], timeout=60)
    finally:
        worker.stop()
    assert delivery.status == "succeeded"
    assert [r.status for r in receiver.received("/slow")] == [None, 200]
    # The killed attempt was never recorded (it did not end by its own deadline): its
    # number was reserved, and the attempt that succeeded is the second.
    assert [a.number for a in delivery.attempts.all()] == [2]
    assert delivery.attempt_count == 2
    assert {r.headers["X-ClientFlow-Delivery"] for r in receiver.received("/slow")} == {str(delivery.id)}


def test_broker_flushed_with_200_deliveries_pending_or_scheduled(
    worker_env, tmp_path, receiver, workspace, make_endpoint, live_services
):
    worker = Worker({**worker_env, "WEBHOOKS_RETRY_DELAYS": "1,1,1"}, tmp_path)
    worker.start()
    try:
        make_endpoint(url=receiver.url("/flush"))
        receiver.flaky("/flush", 0.5)
        event_ids = publish_many(workspace, 200)
        wait_for(lambda: len(receiver.received()) >= 40, message="deliveries flowing")
        broker = redis.Redis.from_url(live_services)
        in_broker = broker.llen(SESSION_QUEUE) + broker.hlen("unacked")
        broker.flushdb()  # queued and unacknowledged messages gone
        assert in_broker > 0, "nothing was in the broker to lose: the test proved nothing"
        deliveries = wait_all_ended(event_ids)
    finally:
        worker.stop()
    assert len(deliveries) == 200
    assert_states_match_receiver(deliveries, receiver)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis(port: int, log) -> subprocess.Popen:
    process = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_for(lambda: _redis_up(port), timeout=20, message="redis to start")
    return process


def _redis_up(port: int) -> bool:
    try:
        return redis.Redis(port=port, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        return False


def test_broker_restarted_and_stopped_for_10_seconds_while_deliveries_flow(
    worker_env, tmp_path, receiver, workspace, make_endpoint
):
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is needed to restart a broker")
    port = _free_port()
    log = (tmp_path / "redis.log").open("wb")
    broker = _start_redis(port, log)
    # This worker's broker is one the test may stop; what it sends comes to it from the
    # database through beat's sweeper, the path that has to survive a lost broker.
    worker = Worker({**worker_env, **FAST, "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0"}, tmp_path)
    worker.start()
    event_ids = []
    try:
        make_endpoint(url=receiver.url("/restart"))
        event_ids += publish_many(workspace, 50)
        wait_for(lambda: len(receiver.received()) >= 10, message="deliveries flowing")
        broker.terminate()  # a restart: the broker goes away and comes back empty
        broker.wait(10)
        broker = _start_redis(port, log)
        event_ids += publish_many(workspace, 50)
        time.sleep(2)
        broker.terminate()  # and an outage of 10 s
        broker.wait(10)
        event_ids += publish_many(workspace, 50)
        time.sleep(10)
        broker = _start_redis(port, log)
        # Celery 5.7 / kombu 5.7 can exit with "Unrecoverable error" when the broker drops
        # at a bad moment (AttributeError in kombu's connection clean-up). Production runs
        # workers under a process manager that restarts them; this does what it would.
        restarts = 0

        def ended_or_restart():
            nonlocal restarts
            if worker.process.poll() is not None:
                restarts += 1
                worker.start()
            return not Delivery.objects.filter(event_id__in=event_ids, status="pending").exists()

        wait_for(ended_or_restart, timeout=120, interval=0.5, message="every delivery to end")
        deliveries = list(Delivery.objects.filter(event_id__in=event_ids))
    finally:
        worker.stop()
        broker.terminate()
        broker.wait(10)
    assert len(deliveries) == 150
    assert restarts <= 1, "the worker had to be restarted more than once"
    assert all(d.status == "succeeded" for d in deliveries)
    assert_states_match_receiver(deliveries, receiver)


def test_database_connections_terminated_while_deliveries_flow(
    worker_env, tmp_path, receiver, workspace, make_endpoint
):
    name = "webhooks-fault-worker"
    env = {**worker_env, **FAST, "DATABASE_URL": worker_env["DATABASE_URL"] + f"?application_name={name}"}
    worker = Worker(env, tmp_path)
    worker.start()
    db = connection.settings_dict
    admin = psycopg.connect(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"], autocommit=True
    )
    terminated = 0
    try:
        make_endpoint(url=receiver.url("/pg"))
        event_ids = publish_many(workspace, 200)
        for _ in range(6):
            time.sleep(0.5)
            rows = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", [name]
            ).fetchall()
            terminated += len(rows)
        deliveries = wait_all_ended(event_ids, timeout=120)
    finally:
        admin.close()
        worker.stop()
    assert terminated > 0, "no worker connection was terminated: the test proved nothing"
    assert all(d.status == "succeeded" for d in deliveries)
    # A connection killed between the 2xx answers of a batch and their record makes the
    # sweeper send that batch again (at least once): at most one batch per termination.
    duplicated = assert_states_match_receiver(deliveries, receiver, duplicates_allowed=True)
    assert duplicated <= terminated * settings.WEBHOOKS_BATCH_SIZE


def test_misbehaving_receivers_end_where_they_should(
    worker_env, tmp_path, receiver, rogue_receiver, workspace, make_endpoint
):
    worker = Worker({**worker_env, **FAST}, tmp_path)
    worker.start()
    paths = {"drip": ["drip"] * 4, "endless": ["endless"], "huge": ["huge"], "close": ["close"] * 4}
    try:
        for path, actions in paths.items():
            make_endpoint(url=receiver.url(f"/{path}"))
            receiver.script(f"/{path}", *actions)
        make_endpoint(url=receiver.url("/redirect"))
        receiver.script("/redirect", *[("redirect", receiver.url("/followed"))] * 4)
        make_endpoint(url=rogue_receiver.url("/untrusted"))
        [event_id] = publish_many(workspace, 1)
        deliveries = {d.endpoint.url.rsplit("/", 1)[1]: d for d in wait_all_ended([event_id], timeout=120)}
    finally:
        worker.stop()

    def attempts(name):
        return list(deliveries[name].attempts.all())

    assert deliveries["endless"].status == "succeeded"
    assert len(attempts("endless")[0].response_body) == 4096
    assert deliveries["huge"].status == "succeeded"
    assert len(attempts("huge")[0].response_body) == 4096
    assert deliveries["drip"].status == "exhausted"
    assert {a.error for a in attempts("drip")} == {"timed out after 2s"}
    assert all(a.duration_ms < 4000 for a in attempts("drip"))
    assert deliveries["close"].status == "exhausted"
    assert all(a.error.startswith("connection error") for a in attempts("close"))
    assert deliveries["redirect"].status == "exhausted"
    assert {a.response_status for a in attempts("redirect")} == {302}
    assert {a.response_headers["Location"] for a in attempts("redirect")} == {receiver.url("/followed")}
    assert receiver.received("/followed") == []  # never followed
    assert deliveries["untrusted"].status == "exhausted"
    assert all("certificate verify failed" in a.error for a in attempts("untrusted"))
    assert rogue_receiver.received() == []


def test_1000_deliveries_to_20_endpoints_five_of_them_flaky(worker_env, tmp_path, receiver, workspace, make_endpoint):
    worker = Worker({**worker_env, **FAST}, tmp_path)
    worker.start()
    try:
        for n in range(20):
            make_endpoint(url=receiver.url(f"/e{n}"))
            if n < 5:
                receiver.flaky(f"/e{n}", 0.5)
        event_ids = publish_many(workspace, 50)
        deliveries = wait_all_ended(event_ids, timeout=240)
    finally:
        worker.stop()
    assert len(deliveries) == 1000
    assert_states_match_receiver(deliveries, receiver)
    steady = [d for d in deliveries if d.endpoint.url.rsplit("/", 1)[1] not in {f"e{n}" for n in range(5)}]
    assert all(d.status == "succeeded" and d.attempt_count == 1 for d in steady)

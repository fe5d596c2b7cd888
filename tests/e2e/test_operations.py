"""Operations end to end: a real worker process delivers to a real HTTPS receiver, and the
web process's /metrics, the worker's JSON log and the owner's mailbox show it."""

import json

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from deliveries.models import Delivery
from tests.deliveries.test_metrics import publish
from tests.e2e.test_delivery import wait_ended
from tests.services import Worker, wait_for

pytestmark = pytest.mark.services

TOKEN = "e2e-metrics-token-0123456789"


def scrape(live_server) -> dict:
    response = requests.get(f"{live_server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_the_web_process_metrics_log_and_email_show_what_a_worker_delivered(
    worker_env, tmp_path, live_server, receiver, workspace, owner, make_endpoint, settings
):
    settings.WEBHOOKS_METRICS_TOKEN = TOKEN
    owner.email = "olivia@example.com"
    owner.save()
    mail = tmp_path / "mail"
    # filemail:// then an absolute path: django-environ drops the first slash of the path.
    env = {"EMAIL_URL": f"filemail:///{mail}", "LOG_FORMAT": "json", "WEBHOOKS_RETRY_DELAYS": "0.2,0.2,0.2"}
    worker = Worker({**worker_env, **env}, tmp_path)
    worker.start()
    try:
        ok, _ = make_endpoint(url=receiver.url("/ok"))
        gone, secret = make_endpoint(url=receiver.url("/gone"), event_types=["invoice.overdue"])
        receiver.script("/ok", 503)  # the first attempt fails, its retry succeeds
        receiver.script("/gone", 410, 410)
        before = scrape(live_server)

        delivered = [wait_ended(publish(workspace).deliveries.get()) for _ in range(3)]
        dead = []
        for _ in range(2):
            event = publish_overdue(workspace)
            dead.append(wait_ended(event.deliveries.get(endpoint=gone)))
        after = scrape(live_server)
        wait_for(lambda: list(mail.glob("*")), timeout=20, message="the dead-letter email")
    finally:
        worker.stop()

    assert [d.status for d in delivered] == ["succeeded"] * 3
    assert [d.status for d in dead] == ["failed"] * 2

    def grew(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    # Counted in the worker process, read from the web process.
    assert grew("webhooks_attempts_total", outcome="success", reason="http_2xx") == 3
    assert grew("webhooks_attempts_total", outcome="transient", reason="http_5xx") == 1
    assert grew("webhooks_attempts_total", outcome="permanent", reason="http_4xx") == 2
    assert grew("webhooks_attempt_duration_seconds_count", outcome="success") == 3
    assert grew("webhooks_deliveries_ended_total", status="succeeded") == 3
    assert grew("webhooks_deliveries_ended_total", status="failed") == 2
    assert grew("webhooks_dead_letters") == 2
    assert after[("webhooks_lag_seconds", ())] == 0

    # The worker's log: one JSON object a line; each line about a delivery names it.
    lines = [json.loads(line) for line in worker.log.read_text().splitlines() if line.startswith("{")]
    ids = {str(d.id) for d in delivered + dead}
    about = [line for line in lines if line.get("delivery_id") in ids]
    assert {line["delivery_id"] for line in about} == ids
    for line in about:
        assert line["endpoint_id"] in (ok.id, gone.id)
        assert line["workspace_id"] == workspace.id
        assert line["attempt"] >= 1
        assert line["outcome"] in ("success", "transient", "permanent")
    log = worker.log.read_text()
    assert secret not in log and "whsec_" not in log
    assert "inv_1" not in log  # no payload

    # One email for the endpoint's first dead letters, not one per dead letter.
    [message] = [path.read_text() for path in mail.glob("*")]
    assert "To: olivia@example.com" in message
    assert f"Subject: Webhook deliveries to {gone.url} are failing" in message
    assert Delivery.objects.filter(endpoint=gone, status="failed").count() == 2


def publish_overdue(workspace):
    from deliveries.services import event_publish

    data = {
        "invoice_id": "inv_1",
        "number": "2026-000001",
        "amount_due": 125000,
        "currency": "EUR",
        "client": {"id": "cli_1", "name": "Northwind"},
        "due_on": "2026-04-15",
    }
    return event_publish(workspace=workspace, event_type="invoice.overdue", data=data)

"""Log lines about a delivery carry its context, in JSON (production) or readable lines
(development), and never a secret or a payload."""

import json
import logging

from clientflow_webhooks.logs import JsonFormatter, ReadableFormatter
from deliveries.models import Delivery
from tests.deliveries.test_metrics import publish_and_drain, real_receiver_settings  # noqa: F401 - a fixture

MARKER = "payload-marker-zebra-917"


def test_every_line_about_a_real_delivery_has_its_context_and_no_secret_or_payload(
    real_receiver_settings,  # noqa: F811
    receiver,
    workspace,
    make_endpoint,
    caplog,
):
    endpoint, secret = make_endpoint(url=receiver.url("/hook"))
    receiver.script("/hook", 503, 200, 410)
    client = {"id": "cli_1", "name": MARKER}
    with caplog.at_level(logging.DEBUG):
        retried = publish_and_drain(workspace, endpoint, client=client)  # 503, then 200
        failed = publish_and_drain(workspace, endpoint, client=client)  # 410: a dead letter
    assert (retried.status, failed.status) == (Delivery.Status.SUCCEEDED, Delivery.Status.FAILED)

    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(record)) for record in caplog.records]
    about = [line for line in lines if str(retried.id) in line["message"] or str(failed.id) in line["message"]]
    assert len(about) >= 3  # three attempts
    for line in about:
        assert line["delivery_id"] in (str(retried.id), str(failed.id))
        assert line["endpoint_id"] == endpoint.id
        assert line["workspace_id"] == workspace.id
        assert isinstance(line["attempt"], int) and line["attempt"] >= 1
        assert line["outcome"] in ("success", "transient", "permanent")
        assert line["level"] == "INFO" and line["time"].endswith("Z")
    outcomes = [(line["delivery_id"], line["attempt"], line["outcome"]) for line in about]
    assert outcomes == [
        (str(retried.id), 1, "transient"),
        (str(retried.id), 2, "success"),
        (str(failed.id), 1, "permanent"),
    ]
    everything = "\n".join(formatter.format(r) for r in caplog.records)
    everything += "\n".join(ReadableFormatter().format(r) for r in caplog.records)
    assert MARKER not in everything
    assert secret not in everything and "whsec_" not in everything
    assert "sha256=" not in everything


def test_readable_lines_end_with_the_context():
    record = logging.LogRecord("deliveries.services", logging.INFO, __file__, 1, "delivery %s done", ("d-1",), None)
    record.__dict__.update(delivery_id="d-1", endpoint_id=7, workspace_id=3, attempt=2, outcome="success")
    line = ReadableFormatter().format(record)
    assert line.endswith("delivery d-1 done [delivery_id=d-1 endpoint_id=7 workspace_id=3 attempt=2 outcome=success]")


def test_only_the_context_fields_are_written_whatever_a_record_carries():
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "something", (), None)
    record.__dict__.update(payload=MARKER, secret="whsec_abc", request="<WSGIRequest>", delivery_id="d-2")
    for formatter in (JsonFormatter(), ReadableFormatter()):
        line = formatter.format(record)
        assert "d-2" in line
        assert MARKER not in line and "whsec_" not in line and "WSGIRequest" not in line


def test_json_lines_carry_the_traceback():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed"
    assert "ValueError: boom" in line["exception"]

"""The endpoints operators and their machines call: /healthz, /readyz and /metrics.

`OperationsMiddleware` answers them first in the middleware chain. Load balancers,
orchestrators and Prometheus call a process by its address over plain HTTP: the host check
(ALLOWED_HOSTS) and the HTTPS redirect would turn them away, and a probe has no use for
sessions, CSRF or log-in throttling. None of the three builds a URL from the Host header.
"""

import ipaddress
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from prometheus_client import CONTENT_TYPE_LATEST

from deliveries.metrics import exposition

from . import health

# With no rule configured, development (DEBUG) answers /metrics from this machine only.
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def healthz(request: HttpRequest) -> HttpResponse:
    """The process is up and serving: no database, no broker."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> HttpResponse:
    """Ready for traffic when the database and the broker answer; 503 says which did not."""
    checks = health.readiness()
    ready = all(result == "ok" for result in checks.values())
    return JsonResponse({"status": "ready" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus's text format, for a scraper the settings allow."""
    if refused := _metrics_refusal(request):
        return refused
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


def _metrics_refusal(request: HttpRequest) -> HttpResponse | None:
    """None when the request may read /metrics: it bears WEBHOOKS_METRICS_TOKEN, or comes from
    WEBHOOKS_METRICS_ALLOWED_NETWORKS. Otherwise the response that says why not."""
    token = settings.WEBHOOKS_METRICS_TOKEN
    networks = settings.METRICS_NETWORKS or (LOOPBACK if settings.DEBUG and not token else ())
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and constant_time_compare(presented.strip(), token):
        return None
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        address = None
    if address is not None and any(address in network for network in networks):
        return None
    if not token and not networks:
        return _plain(403, "Metrics are off: set WEBHOOKS_METRICS_TOKEN or WEBHOOKS_METRICS_ALLOWED_NETWORKS.")
    if token:
        response = _plain(401, "A valid bearer token is required (Authorization: Bearer <WEBHOOKS_METRICS_TOKEN>).")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return _plain(403, "This address may not read the metrics (WEBHOOKS_METRICS_ALLOWED_NETWORKS).")


def _plain(status: int, text: str) -> HttpResponse:
    return HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")


ROUTES: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": healthz,
    "/readyz": readyz,
    "/metrics": metrics,
}


class OperationsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        view = ROUTES.get(request.path_info.rstrip("/") or "/")
        if view is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response = _plain(405, "Only GET and HEAD.")
            response["Allow"] = "GET, HEAD"
        else:
            response = view(request)
        # Always a fresh answer: a cached "ready" or counter is a wrong one.
        response["Cache-Control"] = "no-store"
        return response

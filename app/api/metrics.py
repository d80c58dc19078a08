"""Prometheus metrics: HTTP and hook traffic, cards by rule, FHIR failures, audit gaps; served at /metrics.

Every label value comes from a fixed vocabulary (service ids, rule ids, indicators, HTTP status codes, route
templates, exception class names); anything else is reported as "other", so no request data, and therefore
no PHI, can become a label. One registry per process: with several uvicorn workers each worker counts on its
own (prometheus_client's multiprocess mode is not used; see RELIABILITY.md).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.cds.services import SERVICES_BY_ID

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

OTHER = "other"
INDICATORS = frozenset({"info", "warning", "critical"})
METHODS = frozenset({"GET", "POST", "OPTIONS", "HEAD"})
# Rule ids are short catalogue codes (R01, R09a, ...); the cap bounds the series even if a bad card slipped in.
_RULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_CLASS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_MAX_DISTINCT = 256
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "iliac_cds_http_requests_total",
    "HTTP requests by route template, method and status code.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "iliac_cds_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
HOOK_CALLS = Counter(
    "iliac_cds_hook_calls_total",
    "CDS Hooks service calls by service id, hook and status code.",
    ["service_id", "hook", "status"],
    registry=REGISTRY,
)
HOOK_LATENCY = Histogram(
    "iliac_cds_hook_duration_seconds",
    "Time to answer a CDS Hooks call (FHIR gathering, engine, audit), by service id and hook.",
    ["service_id", "hook"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
CARDS = Counter(
    "iliac_cds_cards_total",
    "Cards returned, by service id, rule id and indicator.",
    ["service_id", "rule_id", "indicator"],
    registry=REGISTRY,
)
PRECONDITION_FAILED = Counter(
    "iliac_cds_hook_precondition_failed_total",
    "CDS Hooks calls answered 412 (required FHIR data unobtainable), by service id.",
    ["service_id"],
    registry=REGISTRY,
)
FHIR_FAILURES = Counter(
    "iliac_cds_fhir_fetch_failures_total",
    "Prefetch/FHIR failures that made a call 412, by error class.",
    ["error_type"],
    registry=REGISTRY,
)
AUDIT_FAILURES = Counter(
    "iliac_cds_audit_write_failures_total",
    "Hook calls answered without their audit rows (database down): the counted audit gap.",
    ["service_id"],
    registry=REGISTRY,
)


class _BoundedVocabulary:
    """Admits label values matching a pattern, at most `limit` distinct ones; the rest become "other"."""

    def __init__(self, pattern: re.Pattern[str], limit: int = _MAX_DISTINCT) -> None:
        self._pattern = pattern
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit or not self._pattern.fullmatch(value):
            return OTHER
        self._seen.add(value)
        return value


_rule_label = _BoundedVocabulary(_RULE_ID)
_class_label = _BoundedVocabulary(_CLASS_NAME)


def _service_labels(service_id: str) -> tuple[str, str]:
    service = SERVICES_BY_ID.get(service_id)
    return (service.id, service.hook) if service is not None else (OTHER, OTHER)


def _status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else OTHER


def card_labels(cards: Iterable[Mapping[str, object]]) -> list[tuple[str, str]]:
    """(rule id, indicator) of each card JSON: source.topic.code and indicator."""
    labels: list[tuple[str, str]] = []
    for card in cards:
        source = card.get("source")
        topic = source.get("topic") if isinstance(source, Mapping) else None
        code = topic.get("code") if isinstance(topic, Mapping) else None
        indicator = card.get("indicator")
        labels.append(
            (
                code if isinstance(code, str) else "",
                indicator if isinstance(indicator, str) else "",
            )
        )
    return labels


def observe_hook(
    service_id: str,
    status: int,
    seconds: float,
    cards: Iterable[Mapping[str, object]] = (),
) -> None:
    """Count one hook call, its latency, its cards by rule and indicator, and a 412."""
    service, hook = _service_labels(service_id)
    HOOK_CALLS.labels(service, hook, _status_label(status)).inc()
    HOOK_LATENCY.labels(service, hook).observe(seconds)
    if status == 412:
        PRECONDITION_FAILED.labels(service).inc()
    for rule_id, indicator in card_labels(cards):
        CARDS.labels(
            service,
            _rule_label(rule_id),
            indicator if indicator in INDICATORS else OTHER,
        ).inc()


def count_fetch_failure(error_type: str) -> None:
    """Count a prefetch/FHIR failure by exception class name (e.g. "FhirTimeout")."""
    FHIR_FAILURES.labels(_class_label(error_type)).inc()


def count_audit_failure(service_id: str) -> None:
    """Count a hook call whose audit rows could not be written."""
    AUDIT_FAILURES.labels(_service_labels(service_id)[0]).inc()


class MetricsMiddleware:
    """Counts every HTTP request by route template (never the raw path, which may hold ids) and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router stores the matched route in the (shared) scope; unmatched paths stay anonymous.
            route = scope.get("route")
            template = str(getattr(route, "path", "unmatched"))
            method = str(scope.get("method", ""))
            method = method if method in METHODS else OTHER
            HTTP_REQUESTS.labels(template, method, _status_label(status)).inc()
            HTTP_LATENCY.labels(template, method).observe(time.perf_counter() - started)


async def metrics_endpoint() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def install_metrics(app: FastAPI) -> None:
    """Add the counting middleware and GET /metrics (left out of the OpenAPI document)."""
    app.add_middleware(MetricsMiddleware)
    app.add_api_route(
        "/metrics",
        metrics_endpoint,
        methods=["GET"],
        include_in_schema=False,
        response_class=Response,
    )

"""Requests in flight are counted from arrival to finish; a lone hook call commits its audit rows on the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest
from starlette.types import Receive, Scope, Send

from app.api.middleware import InFlightMiddleware, RequestsInFlight
from tests.api.requests import hook_request, left_whole_leg_swelling_negative_duplex
from tests.fixtures.app import AppFactory
from tests.fixtures.database import record_threads

PV = "/cds-services/iliac-workup-patient-view"


async def _call(app: InFlightMiddleware, scope_type: str = "http") -> None:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: object) -> None:
        return None

    await app({"type": scope_type}, receive, send)


class TestRequestsInFlight:
    async def test_counts_requests_while_they_are_served(self) -> None:
        counter = RequestsInFlight()
        seen: list[int] = []
        release = asyncio.Event()

        async def inner(_scope: Scope, _receive: Receive, _send: Send) -> None:
            seen.append(counter())
            await release.wait()

        app = InFlightMiddleware(inner, counter=counter)
        first = asyncio.ensure_future(_call(app))
        second = asyncio.ensure_future(_call(app))
        await asyncio.sleep(0)
        assert counter() == 2
        release.set()
        await asyncio.gather(first, second)

        assert seen == [1, 2]
        assert counter() == 0

    async def test_a_failed_request_is_no_longer_counted(self) -> None:
        counter = RequestsInFlight()

        async def inner(_scope: Scope, _receive: Receive, _send: Send) -> None:
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            await _call(InFlightMiddleware(inner, counter=counter))
        assert counter() == 0

    async def test_lifespan_and_websocket_scopes_are_not_counted(self) -> None:
        counter = RequestsInFlight()
        seen: list[int] = []

        async def inner(_scope: Scope, _receive: Receive, _send: Send) -> None:
            seen.append(counter())

        await _call(InFlightMiddleware(inner, counter=counter), scope_type="lifespan")
        assert seen == [0]


async def test_a_lone_hook_call_commits_its_audit_rows_on_the_event_loop(
    sqlite_app_factory: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = record_threads(monkeypatch)
    api = await sqlite_app_factory()
    body = hook_request(prefetch=left_whole_leg_swelling_negative_duplex())

    response = await api.post(PV, json=body)

    assert response.status_code == 200, response.text
    assert threads == [threading.current_thread().name]

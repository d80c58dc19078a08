"""A hook answer leaves only once its audit rows are committed: feedback on its cards is accepted at once."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy.engine import make_url

from app.services.audit_writer import WriterFileLock
from tests.api.requests import hook_request, left_whole_leg_swelling_negative_duplex
from tests.fixtures.app import AppFactory
from tests.fixtures.database import DatabaseTarget

PV = "/cds-services/iliac-workup-patient-view"
FEEDBACK = "/cds-services/iliac-workup-patient-view/feedback"


async def test_the_answer_waits_for_the_audit_commit(
    sqlite_app_factory: AppFactory, sqlite_target: DatabaseTarget
) -> None:
    api = await sqlite_app_factory()
    body = hook_request(prefetch=left_whole_leg_swelling_negative_duplex())
    lock = WriterFileLock(f"{make_url(sqlite_target.url).database}-audit.lock")
    try:
        with (
            lock
        ):  # another worker is committing: this call's rows cannot be written yet
            answer = asyncio.ensure_future(api.post(PV, json=body))
            await asyncio.sleep(0.3)
            assert not answer.done(), "answered before its audit rows were committed"
        response: httpx.Response = await asyncio.wait_for(answer, 10)
    finally:
        lock.close()

    assert response.status_code == 200, response.text
    card = response.json()["cards"][0]
    feedback = await api.post(
        FEEDBACK,
        json={
            "feedback": [
                {
                    "card": card["uuid"],
                    "outcome": "accepted",
                    "outcomeTimestamp": "2026-03-02T10:05:00Z",
                }
            ]
        },
    )
    assert feedback.status_code == 200, feedback.text
    assert feedback.json()["stored"] == 1

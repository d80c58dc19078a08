"""No PHI or secret leaves the service: sentinels planted in every request field never reach logs (DEBUG),
audit rows, error answers or /metrics.

The user's free-text override comment is the one sentinel stored on purpose (card_feedback.user_comment is
the feedback itself); it must appear there and nowhere else.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import AuthMode
from app.services.audit import record_invocation
from app.services.clients import add_client
from tests.api.requests import (
    bundle,
    empty_prefetch,
    hook_request,
    left_whole_leg_swelling_negative_duplex,
)
from tests.fixtures.app import BASE_URL, AppFactory
from tests.reliability.support import (
    ACCESS_TOKEN,
    NOTE_TEXT,
    PATIENT_ID,
    PATIENT_NAME,
    USER_COMMENT,
    LogCapture,
    assert_no_sentinel,
    dump_tables,
    fhir_authorization,
    fhir_bundle_for,
    sentinel_patient,
    sentinel_prefetch,
    service_log_stream,
)
from tests.security.helpers import ec_key, public_jwks, sign

pytestmark = pytest.mark.db
PV_ID = "iliac-workup-patient-view"
PV = f"/cds-services/{PV_ID}"
SIGN_ID = "iliac-workup-order-sign"
SIGN = f"/cds-services/{SIGN_ID}"
REASON_SYSTEM = "http://example.org/fhir/CodeSystem/iliofemoral-cds/override-reason"
FHIR_BASE = f"http://127.0.0.1:8080/fhir/{PATIENT_ID}"


def fhir_server(request: httpx.Request) -> httpx.Response:
    """A FHIR server whose answers, including error bodies, are full of sentinels."""
    assert request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    path = request.url.path
    if "/down/" in path:
        return httpx.Response(
            500, json={"issue": [{"diagnostics": f"{PATIENT_NAME} {PATIENT_ID}"}]}
        )
    if "/denied/" in path:
        return httpx.Response(
            401, text=f"token {ACCESS_TOKEN} rejected for {PATIENT_ID}"
        )
    if "/garbage/" in path:
        return httpx.Response(200, text=f"<html>{PATIENT_NAME}</html>")
    return httpx.Response(
        200,
        json=fhir_bundle_for(path),
        headers={"content-type": "application/fhir+json"},
    )


def with_fhir_server(base: str, **body: Any) -> dict[str, Any]:
    prefetch = sentinel_prefetch()
    for key in ("patient", "observations", "conditions"):
        del prefetch[key]
    return hook_request(
        patient_id=PATIENT_ID,
        prefetch=prefetch,
        fhirServer=base,
        fhirAuthorization=fhir_authorization(),
        **body,
    )


def sentinel_request(hook: str = "patient-view", **body: Any) -> dict[str, Any]:
    prefetch = sentinel_prefetch(left_whole_leg_swelling_negative_duplex(PATIENT_ID))
    request = hook_request(hook, patient_id=PATIENT_ID, prefetch=prefetch, **body)
    request["context"]["encounterId"] = f"enc-{PATIENT_ID}"
    return request


async def issue_card(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    card = {
        "uuid": str(uuid.uuid4()),
        "summary": "IVUS required before iliac vein stenting",
        "indicator": "critical",
        "source": {"label": "R09", "topic": {"code": "R09"}},
        "overrideReasons": [{"system": REASON_SYSTEM, "code": "clinical-judgement"}],
    }
    async with sessionmaker() as session:
        await record_invocation(
            session,
            hook_instance=str(uuid.uuid4()),
            service_id=SIGN_ID,
            hook="order-sign",
            patient_id=PATIENT_ID,
            hmac_key="test-hmac-key",
            client_iss=None,
            fhir_server=FHIR_BASE,
            started_at=datetime.now(UTC),
            duration_ms=1.0,
            status=200,
            cards=[card],
            card_sides={},
        )
        await session.commit()
    return card


def overridden(card_uuid: str) -> dict[str, Any]:
    return {
        "card": card_uuid,
        "outcome": "overridden",
        "overrideReason": {
            "reason": {"system": REASON_SYSTEM, "code": "clinical-judgement"},
            "userComment": USER_COMMENT,
        },
        "outcomeTimestamp": "2026-03-02T10:05:00Z",
    }


class Exchange:
    """Sends requests and keeps every answer for the final sentinel sweep."""

    def __init__(self, api: httpx.AsyncClient) -> None:
        self.api = api
        self.errors: list[str] = []
        self.statuses: list[int] = []

    async def post(
        self, path: str, expected: int, *, json: Any = None, **kwargs: Any
    ) -> httpx.Response:
        response = await self.api.post(path, json=json, **kwargs)
        assert response.status_code == expected, response.text
        self.statuses.append(response.status_code)
        if response.status_code >= 400:
            self.errors.append(response.text)
            self.errors.append(str(response.headers))
        return response


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> LogCapture:
    caplog.set_level(logging.DEBUG)
    return LogCapture(caplog)


async def sweep(
    logs: LogCapture,
    exchange: Exchange,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    assert "hook_call" in logs.events(), (
        "the service logged nothing: the sweep would be vacuous"
    )
    assert_no_sentinel(logs.texts(), where="logs")
    assert_no_sentinel(exchange.errors, where="an error answer")
    metrics = (await exchange.api.get("/metrics")).text
    assert_no_sentinel([metrics], where="/metrics")
    tables = await dump_tables(sessionmaker)
    for (table, column), values in tables.items():
        allowed = (
            (USER_COMMENT,)
            if (table, column) == ("card_feedback", "user_comment")
            else ()
        )
        assert_no_sentinel(values, where=f"{table}.{column}", allowed=allowed)


class TestNoPhiLeaves:
    async def test_disabled_auth_endpoints_and_error_paths(
        self,
        app_factory: AppFactory,
        db_sessionmaker: async_sessionmaker[AsyncSession],
        logs: LogCapture,
    ) -> None:
        api = await app_factory(
            fhir_transport=httpx.MockTransport(fhir_server),
            log_level="DEBUG",
            max_body_bytes=256 * 1024,
        )
        exchange = Exchange(api)
        with service_log_stream(logs.stream):
            await self._hooks(exchange)
            await self._error_paths(exchange)
            await self._feedback(exchange, db_sessionmaker)
        await sweep(logs, exchange, db_sessionmaker)
        assert logs.stream.getvalue(), "the service's JSON handler wrote nothing"

    async def _hooks(self, exchange: Exchange) -> None:
        await exchange.post(PV, 200, json=sentinel_request())
        await exchange.post(PV, 200, json=with_fhir_server(FHIR_BASE))
        orders = [
            {
                "resourceType": "ServiceRequest",
                "id": f"sr-{PATIENT_ID}",
                "status": "draft",
                "intent": "order",
                "subject": {"reference": f"Patient/{PATIENT_ID}"},
                "code": {"text": PATIENT_NAME},
                "note": [{"text": NOTE_TEXT}],
            }
        ]
        await exchange.post(
            SIGN, 200, json=sentinel_request("order-sign", draft_orders=orders)
        )

    async def _error_paths(self, exchange: Exchange) -> None:
        # 400: hook not matching the service; a prefetch value that is not FHIR
        await exchange.post(PV, 400, json=sentinel_request("order-sign"))
        bad = sentinel_request()
        bad["prefetch"]["observations"] = {"name": PATIENT_NAME, "mrn": PATIENT_ID}
        await exchange.post(PV, 400, json=bad)
        bad_bundle = sentinel_request()
        bad_bundle["prefetch"]["conditions"] = {
            "resourceType": "Bundle",
            "entry": [PATIENT_NAME],
        }
        await exchange.post(PV, 400, json=bad_bundle)
        # 403: a fhirServer not allowed (its path holds the patient id)
        await exchange.post(
            PV, 403, json=with_fhir_server(f"https://ehr.example.org/fhir/{PATIENT_ID}")
        )
        # 412: FHIR server down, refusing the token, answering garbage; keys missing without fhirServer
        for kind in ("down", "denied", "garbage"):
            await exchange.post(
                PV,
                412,
                json=with_fhir_server(f"http://127.0.0.1:8080/{kind}/{PATIENT_ID}"),
            )
        missing = sentinel_request()
        del missing["prefetch"]["observations"]
        await exchange.post(PV, 412, json=missing)
        # 422: invalid token type, over-long identifiers, wrong types next to sentinels
        wrong_auth = with_fhir_server(FHIR_BASE)
        wrong_auth["fhirAuthorization"]["token_type"] = ACCESS_TOKEN
        await exchange.post(PV, 422, json=wrong_auth)
        too_long = sentinel_request()
        too_long["context"]["patientId"] = PATIENT_ID * 100
        await exchange.post(PV, 422, json=too_long)
        wrong_type = sentinel_request()
        wrong_type["context"]["userId"] = {"name": PATIENT_NAME}
        await exchange.post(PV, 422, json=wrong_type)
        # 413: body over the cap, nesting over the cap
        huge = sentinel_request()
        huge["prefetch"]["patient"]["text"] = {"div": PATIENT_NAME * 20_000}
        await exchange.post(PV, 413, json=huge)
        deep = sentinel_request()
        value: dict[str, Any] = {"name": PATIENT_NAME}
        for _ in range(80):
            value = {"x": value}
        deep["context"]["extension"] = value
        await exchange.post(PV, 413, json=deep)

    async def _feedback(
        self, exchange: Exchange, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        card = await issue_card(sessionmaker)
        url = f"{SIGN}/feedback"
        await exchange.post(url, 200, json={"feedback": [overridden(card["uuid"])]})
        # 400: an override reason the card did not offer, with the comment beside it
        wrong = overridden(card["uuid"])
        wrong["overrideReason"]["reason"]["code"] = PATIENT_ID
        await exchange.post(url, 400, json={"feedback": [wrong]})
        # 422: a comment over the length cap
        long_comment = overridden(card["uuid"])
        long_comment["overrideReason"]["userComment"] = USER_COMMENT * 1000
        await exchange.post(url, 422, json={"feedback": [long_comment]})
        tables = await dump_tables(sessionmaker)
        assert USER_COMMENT in tables[("card_feedback", "user_comment")]

    async def test_jwt_endpoints_and_auth_failures(
        self,
        app_factory: AppFactory,
        db_sessionmaker: async_sessionmaker[AsyncSession],
        logs: LogCapture,
    ) -> None:
        issuer = f"https://ehr-{uuid.uuid4().hex[:8]}.example.org"
        async with db_sessionmaker() as session:
            await add_client(
                session,
                issuer=issuer,
                jwks=public_jwks(ec_key()),
                fhir_servers=["https://ehr.example.org/fhir"],
            )
            await session.commit()
        api = await app_factory(
            auth_mode=AuthMode.JWT,
            fhir_transport=httpx.MockTransport(fhir_server),
            log_level="DEBUG",
        )
        exchange = Exchange(api)

        def bearer(**claims: Any) -> dict[str, str]:
            values: dict[str, Any] = {
                "iss": issuer,
                "aud": f"{BASE_URL}{PV}",
                "jti": uuid.uuid4().hex,
            }
            values.update(claims)
            return {"authorization": f"Bearer {sign(ec_key(), alg='ES384', **values)}"}

        with service_log_stream(logs.stream):
            base = f"https://ehr.example.org/fhir/{PATIENT_ID}"
            await exchange.post(PV, 200, json=with_fhir_server(base), headers=bearer())
            await exchange.post(
                PV, 200, json=sentinel_request(), headers=bearer(sub=PATIENT_ID)
            )
            # 401: a token that is the sentinel itself, a signed one for the wrong audience
            await exchange.post(
                PV,
                401,
                json=sentinel_request(),
                headers={"authorization": f"Bearer {ACCESS_TOKEN}"},
            )
            await exchange.post(
                PV,
                401,
                json=sentinel_request(),
                headers=bearer(aud=f"https://elsewhere.example/{PATIENT_ID}"),
            )
            # 403: the client's own server, but another one named in the request
            await exchange.post(
                PV,
                403,
                json=with_fhir_server(f"https://other.example.org/{PATIENT_ID}"),
                headers=bearer(),
            )
        await sweep(logs, exchange, db_sessionmaker)


class TestSentinelsAreReal:
    def test_the_sentinel_patient_is_valid_fhir(self) -> None:
        from fhir.resources.R4B.patient import Patient

        patient = Patient.model_validate(sentinel_patient())
        assert patient.id == PATIENT_ID

    def test_the_prefetch_carries_the_sentinels(self) -> None:
        text = str(
            sentinel_prefetch(
                empty_prefetch(PATIENT_ID) | {"x": bundle({"resourceType": "Basic"})}
            )
        )
        for sentinel in (PATIENT_ID, PATIENT_NAME, NOTE_TEXT):
            assert sentinel in text

"""Request-body decoding for the hook routes: the depth proof made while decoding, the GC pause for large
bodies, and the answers that must not change (400 malformed JSON, 413 over-deep nesting)."""

from __future__ import annotations

import gc
from collections.abc import MutableMapping
from typing import Any

import httpx
import orjson
import pytest
from fastapi import APIRouter, FastAPI

from app.api.cds import routes
from app.api.cds.routes import gc_paused
from app.api.cds.schemas import CdsRequest
from app.api.limits import (
    ORJSON_MAX_DEPTH,
    _proven_depth,
    check_cds_request,
    decode_json_body,
    depth_proof_scope,
)
from app.api.middleware import AFTER_RESPONSE, AfterResponseMiddleware
from app.errors import PayloadTooLarge
from tests.api.requests import bundle, empty_prefetch, hook_request

PV = "/cds-services/iliac-workup-patient-view"


def nested_list(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def deep_request(extension_levels: int) -> bytes:
    """A hook request whose context nests `extension_levels` objects under context.extension."""
    body: dict[str, Any] = hook_request()
    value: dict[str, Any] = {}
    for _ in range(extension_levels - 1):
        value = {"x": value}
    body["context"]["extension"] = value
    return orjson.dumps(body)


class TestDecodeJsonBody:
    @pytest.mark.parametrize(
        "raw",
        [
            b'{"a": [1, 2.5, "x", null, true, {"b": {}}]}',
            b"  [ ]  ",
            b'"text"',
            b"0",
            nested_list(64),
        ],
    )
    def test_decodes_like_orjson_and_proves_the_cap(self, raw: bytes) -> None:
        with depth_proof_scope():
            assert decode_json_body(raw) == orjson.loads(raw)
            assert _proven_depth.get() == 64

    def test_a_body_one_level_deeper_decodes_without_a_proof(self) -> None:
        with depth_proof_scope():
            assert decode_json_body(nested_list(65)) == orjson.loads(nested_list(65))
            assert _proven_depth.get() is None

    def test_orjson_still_refuses_what_it_refused(self) -> None:
        too_deep = nested_list(ORJSON_MAX_DEPTH + 1)
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(too_deep)
        with depth_proof_scope(), pytest.raises(orjson.JSONDecodeError):
            decode_json_body(too_deep)

    @pytest.mark.parametrize(
        "raw",
        [
            b"",
            b"   ",
            b"1],[2",  # would be a valid document once wrapped in arrays
            b"],[",
            b"]",
            b"[",
            b'{"a": 1}]',
            b'[{"a": 1}',
            b'{"a": 1}, {"b": 2}',
            b"{'a': 1}",
            b'{"a": NaN}',
            b'{"a": "\xff"}',
        ],
    )
    def test_malformed_json_raises_as_before(self, raw: bytes) -> None:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(raw)
        with depth_proof_scope(), pytest.raises(orjson.JSONDecodeError):
            decode_json_body(raw)
        assert _proven_depth.get() is None

    def test_the_proof_stays_inside_its_scope(self) -> None:
        with depth_proof_scope():
            decode_json_body(b"{}")
            assert _proven_depth.get() == 64
        assert _proven_depth.get() is None


class TestCheckUsesTheProof:
    def test_proof_settles_depth_and_counts_are_still_checked(self) -> None:
        prefetch = empty_prefetch()
        prefetch["observations"] = bundle(
            *({"resourceType": "Observation", "id": f"o{i}"} for i in range(3))
        )
        raw = orjson.dumps(hook_request(prefetch=prefetch))
        with depth_proof_scope():
            request = CdsRequest.model_validate(decode_json_body(raw))
            check_cds_request(request)
            from app.api.limits import InputLimits

            with pytest.raises(PayloadTooLarge, match="4 resources"):
                check_cds_request(request, InputLimits(max_prefetch_entries=3))

    @pytest.mark.parametrize(("levels", "too_deep"), [(62, False), (63, True)])
    def test_without_a_proof_the_walk_decides_exactly_as_before(
        self, levels: int, too_deep: bool
    ) -> None:
        # request(1) > context(2) > extension(3..): 62 levels there make 64 in all.
        with depth_proof_scope():
            request = CdsRequest.model_validate(decode_json_body(deep_request(levels)))
            assert (_proven_depth.get() is None) is too_deep
            if too_deep:
                with pytest.raises(PayloadTooLarge, match="deeper than 64 levels"):
                    check_cds_request(request)
            else:
                check_cds_request(request)

    def test_a_stricter_cap_than_the_proof_walks(self) -> None:
        from app.api.limits import InputLimits

        with depth_proof_scope():
            request = CdsRequest.model_validate(decode_json_body(deep_request(10)))
            assert _proven_depth.get() == 64
            with pytest.raises(PayloadTooLarge, match="deeper than 8 levels"):
                check_cds_request(request, InputLimits(max_depth=8))


class TestGcPause:
    def test_resumes_collection_when_the_last_holder_leaves(self) -> None:
        assert gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
            with gc_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()
        assert gc.isenabled()

    def test_resumes_after_an_error(self) -> None:
        with pytest.raises(RuntimeError), gc_paused():
            raise RuntimeError("boom")
        assert gc.isenabled()

    def test_leaves_a_collector_paused_elsewhere_alone(self) -> None:
        gc.disable()
        try:
            with gc_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()
        finally:
            gc.enable()

    def test_long_overlap_still_collects(self, monkeypatch: pytest.MonkeyPatch) -> None:
        collected: list[int] = []

        def collect() -> int:
            collected.append(1)
            return 0

        monkeypatch.setattr(routes, "GC_MAX_PAUSE_SECONDS", 0.0)
        monkeypatch.setattr(gc, "collect", collect)
        with gc_paused():
            with gc_paused():
                pass
            assert collected == [1]
            assert not gc.isenabled()
        assert gc.isenabled()


@pytest.mark.db
class TestOverHttp:
    async def test_malformed_json_is_400(self, api: httpx.AsyncClient) -> None:
        for raw in (b"1],[2", b"]", b'{"hook": "patient-view"'):
            response = await api.post(
                PV, content=raw, headers={"content-type": "application/json"}
            )
            assert response.status_code == 400, raw

    async def test_over_deep_context_is_413_and_at_the_cap_is_not(
        self, api: httpx.AsyncClient
    ) -> None:
        headers = {"content-type": "application/json"}
        response = await api.post(PV, content=deep_request(63), headers=headers)
        assert response.status_code == 413
        assert (
            response.json()["detail"] == "request JSON is nested deeper than 64 levels"
        )
        response = await api.post(PV, content=deep_request(62), headers=headers)
        assert response.status_code == 200

    async def test_large_body_is_answered_and_collection_resumes(
        self, api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Treat every body as large, so the small test request takes the paused path.
        monkeypatch.setattr(routes, "LARGE_BODY_BYTES", 0)
        response = await api.post(PV, json=hook_request())
        assert response.status_code == 200
        assert gc.isenabled()


def echo_app(*, release_after_response: bool) -> FastAPI:
    """A route of the hook routes' class that answers with the number of keys of the JSON body it was sent."""
    router = APIRouter(route_class=routes.OrjsonRoute)

    @router.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, int]:
        return {"keys": len(body)}

    app = FastAPI()
    app.include_router(router)
    if release_after_response:
        app.add_middleware(AfterResponseMiddleware)
    return app


async def post_echo(app: FastAPI, raw: bytes) -> list[tuple[str, int | None, bool]]:
    """POST `raw` to /echo over ASGI; each message sent back as (type, status, collector enabled at that moment)."""
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return {"type": "http.disconnect"}

    sent: list[tuple[str, int | None, bool]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append((message["type"], message.get("status"), gc.isenabled()))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"test"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return sent


def free_large_slots() -> int:
    return routes._large_body_slot()._value


class TestLargeBodyRelease:
    """A large decoded body is freed after its answer has been sent, with collection paused until then."""

    @pytest.fixture(autouse=True)
    def every_body_is_large(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(routes, "LARGE_BODY_BYTES", 0)

    async def test_the_answer_leaves_before_the_body_is_released(self) -> None:
        sent = await post_echo(echo_app(release_after_response=True), b'{"a": 1}')
        # Still paused while answering: the body is released (and collection resumed) only afterwards.
        assert sent == [
            ("http.response.start", 200, False),
            ("http.response.body", None, False),
        ]
        assert gc.isenabled()
        assert free_large_slots() == routes.LARGE_BODY_SLOTS

    async def test_a_refused_body_is_released_too(self) -> None:
        sent = await post_echo(echo_app(release_after_response=True), b'{"a": ')
        assert sent[0][:2] == ("http.response.start", 422)
        assert gc.isenabled()
        assert free_large_slots() == routes.LARGE_BODY_SLOTS

    async def test_without_the_middleware_the_body_is_released_before_answering(
        self,
    ) -> None:
        sent = await post_echo(echo_app(release_after_response=False), b'{"a": 1}')
        assert sent == [
            ("http.response.start", 200, True),
            ("http.response.body", None, True),
        ]
        assert free_large_slots() == routes.LARGE_BODY_SLOTS


class TestAfterResponseMiddleware:
    async def test_runs_every_callback_after_the_app_last_added_first(self) -> None:
        events: list[str] = []

        async def inner(scope: dict[str, Any], *_: Any) -> None:
            after = scope[AFTER_RESPONSE]
            after.callback(lambda: events.append("first"))

            def second() -> None:
                events.append("second")
                raise ZeroDivisionError

            after.callback(second)
            events.append("answered")

        middleware = AfterResponseMiddleware(inner)  # type: ignore[arg-type]
        scope: dict[str, Any] = {"type": "http"}
        with pytest.raises(ZeroDivisionError):
            await middleware(scope, None, None)  # type: ignore[arg-type]
        assert events == ["answered", "second", "first"]
        assert AFTER_RESPONSE not in scope

    async def test_callbacks_run_when_the_app_fails(self) -> None:
        events: list[str] = []

        async def inner(scope: dict[str, Any], *_: Any) -> None:
            scope[AFTER_RESPONSE].callback(lambda: events.append("released"))
            raise RuntimeError("app failed")

        middleware = AfterResponseMiddleware(inner)  # type: ignore[arg-type]
        with pytest.raises(RuntimeError):
            await middleware({"type": "http"}, None, None)  # type: ignore[arg-type]
        assert events == ["released"]

    async def test_other_scopes_pass_through_untouched(self) -> None:
        seen: list[dict[str, Any]] = []

        async def inner(scope: dict[str, Any], *_: Any) -> None:
            seen.append(dict(scope))

        await AfterResponseMiddleware(inner)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
        assert seen == [{"type": "lifespan"}]

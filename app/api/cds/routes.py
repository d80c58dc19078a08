"""CDS Hooks 2.0 endpoints: discovery, service invocation, feedback."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import SQLAlchemyError

from app.api.cds.schemas import (
    CdsRequest,
    CdsResponse,
    DiscoveryResponse,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
)
from app.api.cds.services import discovery_document
from app.api.deps import FeedbackClientDep, HookClientDep, ServiceDep, StateDep
from app.api.limits import decode_json_body, depth_proof_scope
from app.api.middleware import AFTER_RESPONSE
from app.api.responses import CommittedResponse, OrjsonResponse
from app.errors import BadRequest, ServiceUnavailable
from app.services.feedback import FeedbackItem, FeedbackRejected, record_feedback
from app.services.hooks import HookCall, handle_hook

logger = logging.getLogger("iliac_cds.feedback")

# Bodies above this size are decoded and evaluated at most LARGE_BODY_SLOTS at a time per worker: a decoded
# 2,000-resource prefetch is ~30x its bytes in Python objects, so 32 of them in flight at once multiply the
# RSS while buying no throughput (the work is CPU-bound on one event loop). Waiting requests hold only bytes.
LARGE_BODY_BYTES = 1024 * 1024
LARGE_BODY_SLOTS = 2
_large_slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}


class OrjsonRequest(Request):
    """Decodes the JSON body with orjson, once (stdlib json is 2-3x slower on a 140 KB prefetch).

    orjson.JSONDecodeError is a json.JSONDecodeError, so FastAPI still answers malformed JSON with its
    `json_invalid` error (rendered 400 by app.errors); orjson also refuses nesting deeper than 1,024 that way.
    The decoder also proves the body's nesting within the request depth cap (app.api.limits), so the limits
    check need not walk a large prefetch again.
    """

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = decode_json_body(await self.body())
        return self._json


class OrjsonRoute(APIRoute):
    """APIRoute whose handler receives an OrjsonRequest; request models and OpenAPI are unchanged."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            request = OrjsonRequest(request.scope, request.receive)
            with depth_proof_scope():
                if _content_length(request) <= LARGE_BODY_BYTES:
                    return await handler(request)
                release = await _hold_large_body(request)
                after = request.scope.get(AFTER_RESPONSE)
                if after is None:
                    # An app without AfterResponseMiddleware: the body is released before answering.
                    try:
                        return await handler(request)
                    finally:
                        release()
                after.callback(release)
                return await handler(request)

        return route_handler


async def _hold_large_body(request: Request) -> Callable[[], None]:
    """Takes a large-body slot and pauses collection for `request`; returns what ends both once it is answered.

    The decoded body is freed after the answer has been sent (AfterResponseMiddleware runs the returned
    callable): freeing a 2,000-resource prefetch costs about 10 ms, which the EHR then does not wait for. The
    slot and the collector's pause last until then, so the memory is bounded and the body is still freed by
    reference counting, not scanned.
    """
    slot = _large_body_slot()
    await slot.acquire()
    # Undone at once if anything below fails; else handed over whole, and undone last-first when it is called.
    with ExitStack() as held:
        held.callback(slot.release)
        held.enter_context(gc_paused())
        held.callback(_release_body, request)
        return held.pop_all().close


def _release_body(request: Request) -> None:
    # The decoded JSON: the last reference once the handler has returned.
    request.__dict__.pop("_json", None)


# The cyclic garbage collector is paused while a large body is decoded and evaluated. Its ~70,000 containers
# would otherwise be promoted to the oldest generation mid-request and trigger a full collection nearly every
# request (measured: 0.7 full collections per 2,000-resource request, the largest CPU cost of the request);
# decoded JSON holds no reference cycles, so it is freed by reference counting when the request ends.
# Requests overlapping without a gap would keep the collector paused: then one full collection runs at most
# every GC_MAX_PAUSE_SECONDS, so cyclic garbage from elsewhere in the process still goes.
GC_MAX_PAUSE_SECONDS = 1.0
_gc_pause = {"holders": 0, "since": 0.0}


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pauses automatic garbage collection until every overlapping holder has left (see above)."""
    if _gc_pause["holders"] == 0 and not gc.isenabled():
        yield  # paused by someone else (a test, a debugger): not ours to resume
        return
    if _gc_pause["holders"] == 0:
        gc.disable()
        _gc_pause["since"] = time.monotonic()
    _gc_pause["holders"] += 1
    try:
        yield
    finally:
        _gc_pause["holders"] -= 1
        if _gc_pause["holders"] == 0:
            gc.enable()
        elif time.monotonic() - _gc_pause["since"] > GC_MAX_PAUSE_SECONDS:
            gc.collect()
            _gc_pause["since"] = time.monotonic()


def _content_length(request: Request) -> int:
    # The body-size middleware has already bounded the bytes. A chunked body has no length: count it as large;
    # no header and no chunking (discovery GETs) means no body.
    declared = request.headers.get("content-length")
    if declared is None:
        chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
        return LARGE_BODY_BYTES + 1 if chunked else 0
    try:
        return int(declared)
    except ValueError:
        return LARGE_BODY_BYTES + 1


def _large_body_slot() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slot = _large_slots.get(loop)
    if slot is None:
        # One semaphore per event loop (tests run several loops in one process); closed loops are dropped.
        for stale in [lp for lp in _large_slots if lp.is_closed()]:
            del _large_slots[stale]
        slot = _large_slots[loop] = asyncio.Semaphore(LARGE_BODY_SLOTS)
    return slot


router = APIRouter(tags=["cds-hooks"], route_class=OrjsonRoute)

_ERRORS: dict[int | str, dict[str, object]] = {
    400: {
        "model": ErrorResponse,
        "description": "Malformed request (bad JSON, wrong hook, bad prefetch)",
    },
    401: {"model": ErrorResponse, "description": "EHR JWT missing or rejected"},
    403: {
        "model": ErrorResponse,
        "description": "fhirServer not on the client's allow-list",
    },
    404: {"model": ErrorResponse, "description": "Unknown CDS service id"},
    412: {
        "model": ErrorResponse,
        "description": "Required FHIR data could not be obtained",
    },
    413: {"model": ErrorResponse, "description": "Request body too large"},
    422: {
        "model": ErrorResponse,
        "description": "Payload validation failed (names the fields)",
    },
    503: {
        "model": ErrorResponse,
        "description": "Authentication store (database) unavailable; retry later",
    },
}


@router.get(
    "/cds-services", response_model=DiscoveryResponse, summary="CDS Hooks discovery"
)
async def discovery() -> OrjsonResponse:
    return OrjsonResponse(discovery_document())


@router.post(
    "/cds-services/{service_id}",
    response_model=CdsResponse,
    response_model_exclude_none=True,
    responses=_ERRORS,
    summary="Invoke a CDS service",
)
async def call_service(
    body: CdsRequest, service: ServiceDep, client: HookClientDep, state: StateDep
) -> OrjsonResponse:
    if body.hook != service.hook:
        raise BadRequest(
            f"service {service.id!r} answers hook {service.hook!r}, not {body.hook!r}"
        )
    answer = await handle_hook(
        state, HookCall(service=service, request=body, client=client)
    )
    return CommittedResponse(answer.body, before_send=answer.committed)


@router.post(
    "/cds-services/{service_id}/feedback",
    response_model=FeedbackResponse,
    responses={
        **{k: v for k, v in _ERRORS.items() if k in (400, 401, 404, 413, 422)},
        503: {
            "model": ErrorResponse,
            "description": "Feedback store unavailable; nothing stored",
        },
    },
    summary="Feedback on issued cards (accepted / overridden)",
)
async def feedback(
    body: FeedbackRequest,
    service: ServiceDep,
    _client: FeedbackClientDep,
    state: StateDep,
) -> FeedbackResponse:
    items = [
        FeedbackItem(
            card=f.card,
            outcome=f.outcome,
            accepted_suggestion_ids=tuple(s.id for s in f.accepted_suggestions or ()),
            override_system=f.override_reason.reason.system
            if f.override_reason and f.override_reason.reason
            else None,
            override_code=f.override_reason.reason.code
            if f.override_reason and f.override_reason.reason
            else None,
            user_comment=f.override_reason.user_comment if f.override_reason else None,
            outcome_timestamp=f.outcome_timestamp,
        )
        for f in body.feedback
    ]
    try:
        # Committed before answering: a 200 means the feedback is durable.
        async with state.sessionmaker() as session:
            outcome = await record_feedback(session, service_id=service.id, items=items)
            await session.commit()
    except FeedbackRejected as exc:
        raise BadRequest(str(exc)) from None
    except (SQLAlchemyError, OSError) as exc:
        logger.error(
            "feedback_store_unavailable", extra={"exc_type": type(exc).__name__}
        )
        raise ServiceUnavailable(
            "feedback store unavailable; nothing was stored, retry later",
            headers={"Retry-After": "5"},
        ) from None
    return FeedbackResponse(stored=outcome.stored, duplicates=outcome.duplicates)

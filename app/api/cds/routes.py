"""CDS Hooks 2.0 endpoints: discovery, service invocation, feedback."""

from __future__ import annotations

import logging

from fastapi import APIRouter
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
from app.api.responses import OrjsonResponse
from app.errors import BadRequest, ServiceUnavailable
from app.services.feedback import FeedbackItem, FeedbackRejected, record_feedback
from app.services.hooks import HookCall, handle_hook

router = APIRouter(tags=["cds-hooks"])
logger = logging.getLogger("iliac_cds.feedback")

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
    response = await handle_hook(
        state, HookCall(service=service, request=body, client=client)
    )
    return OrjsonResponse(response)


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

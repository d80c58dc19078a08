"""Hook orchestration: validate context -> gather FHIR data -> run the workup engine -> audit -> response."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

from pydantic import ValidationError

from app.api.cds.schemas import (
    CdsRequest,
    CdsResponse,
    OrderSelectContext,
    OrderSignContext,
    PatientViewContext,
)
from app.api.cds.services import ServiceDef
from app.api.limits import check_cds_request
from app.api.metrics import count_audit_failure, count_fetch_failure, observe_hook
from app.config import AuthMode
from app.db.repositories import AuditRows
from app.errors import (
    AppError,
    BadRequest,
    Forbidden,
    PreconditionFailed,
    describe_validation_errors,
)
from app.fhir.client import FhirFetcher
from app.fhir.errors import FhirError, InvalidPrefetch, PrefetchUnavailable
from app.fhir.prefetch import (
    PREFETCH_TEMPLATES,
    gather_resources,
    resources_from_prefetch,
)
from app.security.allowlist import check_fhir_server
from app.security.clients import RegisteredClient
from app.security.errors import FhirServerNotAllowed
from app.services.audit import audit_rows
from app.state import AppState
from app.workup.engine import LinkConfig, WorkupInput, WorkupResult, run_workup
from app.workup.jsontypes import JsonObject

logger = logging.getLogger("iliac_cds.hooks")

_CONTEXT_MODELS: dict[str, type[PatientViewContext]] = {
    "patient-view": PatientViewContext,
    "order-select": OrderSelectContext,
    "order-sign": OrderSignContext,
}


@dataclass(frozen=True)
class HookCall:
    service: ServiceDef
    request: CdsRequest
    client: RegisteredClient | None


def parse_context(hook: str, context: dict[str, object]) -> PatientViewContext:
    model = _CONTEXT_MODELS[hook]
    try:
        return model.model_validate(context)
    except ValidationError as exc:
        raise describe_validation_errors(exc.errors(), prefix="context") from None


def _fetcher(state: AppState, call: HookCall) -> FhirFetcher | None:
    request = call.request
    if request.fhir_server is None:
        return None
    settings = state.settings
    try:
        base_url = check_fhir_server(
            request.fhir_server,
            client=call.client,
            dev_servers=settings.dev_fhir_servers,
            auth_disabled=settings.auth_mode is AuthMode.DISABLED,
        )
    except FhirServerNotAllowed as exc:
        raise Forbidden(str(exc)) from None
    token = (
        request.fhir_authorization.access_token if request.fhir_authorization else None
    )
    return state.fhir_fetcher(base_url, token)


def _draft_orders(context: PatientViewContext) -> tuple[JsonObject, ...]:
    if not isinstance(context, OrderSignContext):
        return ()
    try:
        orders = resources_from_prefetch("context.draftOrders", context.draft_orders)
        return tuple(cast(list[JsonObject], orders))
    except InvalidPrefetch as exc:
        raise BadRequest(str(exc)) from None


async def evaluate(
    state: AppState, call: HookCall, context: PatientViewContext
) -> WorkupResult:
    """Gathers the record and runs the engine; raises AppError subclasses for the caller to render."""
    request = call.request
    fetcher = _fetcher(state, call)
    try:
        gathered = await gather_resources(
            prefetch=request.prefetch,
            templates=PREFETCH_TEMPLATES,
            context=request.context,
            user_practitioner_id=None,
            fhir=fetcher,
            deadline_seconds=state.settings.fhir_deadline_seconds,
        )
    except InvalidPrefetch as exc:
        raise BadRequest(str(exc)) from None
    except (PrefetchUnavailable, FhirError) as exc:
        logger.info("prefetch_unavailable", extra={"error_type": type(exc).__name__})
        count_fetch_failure(type(exc).__name__)
        raise PreconditionFailed(_reason(exc)) from None
    base = state.settings.public_base_url.rstrip("/")
    selections = context.selections if isinstance(context, OrderSelectContext) else []
    workup_input = WorkupInput(
        hook=call.service.hook,
        now=state.now(),
        patient_id=context.patient_id,
        resources=tuple(cast(list[JsonObject], gathered.resources)),
        draft_orders=_draft_orders(context),
        selections=tuple(selections),
        links=LinkConfig(
            rules_url=f"{base}/rules",
            smart_launch_url=f"{base}/smart/launch"
            if state.settings.smart.enabled
            else None,
        ),
    )
    return run_workup(workup_input, state.catalog)


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else str(exc)


@dataclass(frozen=True)
class HookAnswer:
    """A hook call's response body, and the wait for its audit commit.

    `committed` commits the call's audit rows and must be awaited before the answer is sent (a card must be on
    record before the EHR can post feedback on it). The route awaits it as the response starts, when the request's decoded body and models
    have already been released, so calls waiting for a commit under load do not each hold their prefetch.
    It never raises: a failed write is logged and counted.
    """

    body: dict[str, object]
    committed: Callable[[], Awaitable[None]]


async def handle_hook(state: AppState, call: HookCall) -> HookAnswer:
    """Runs one hook call end to end and builds its audit rows; never lets the audit break the answer."""
    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    status = 200
    cards: list[JsonObject] = []
    sides: dict[str, str] = {}
    patient_id: str | None = None
    try:
        check_cds_request(call.request)
        context = parse_context(call.service.hook, call.request.context)
        patient_id = context.patient_id
        result = await evaluate(state, call, context)
        cards = list(result.cards)
        sides = {
            uuid: side for uuid, side in result.card_sides.items() if side is not None
        }
        CdsResponse.model_validate(
            {"cards": cards}
        )  # the engine must emit spec-valid cards
    except AppError as exc:
        status = exc.status_code
        await _audit(state, call, patient_id, started_at, t0, status, cards, sides)()
        raise
    except Exception:
        status = 500
        await _audit(state, call, patient_id, started_at, t0, status, cards, sides)()
        raise
    committed = _audit(state, call, patient_id, started_at, t0, status, cards, sides)
    return HookAnswer({"cards": cards}, committed)


def _audit(
    state: AppState,
    call: HookCall,
    patient_id: str | None,
    started_at: datetime,
    t0: float,
    status: int,
    cards: list[JsonObject],
    sides: dict[str, str],
) -> Callable[[], Awaitable[None]]:
    """Builds the call's audit rows now; returns their commit, to be awaited (logs and counts a failure)."""
    duration_ms = (time.perf_counter() - t0) * 1000
    service_id = call.service.id
    card_count = len(cards)
    try:
        rows: AuditRows | None = audit_rows(
            hook_instance=call.request.hook_instance,
            service_id=service_id,
            hook=call.service.hook,
            patient_id=patient_id,
            hmac_key=state.settings.hmac_key.get_secret_value(),
            client_iss=call.client.issuer if call.client else None,
            fhir_server=call.request.fhir_server,
            started_at=started_at,
            duration_ms=duration_ms,
            status=status,
            cards=cards,
            card_sides=sides,
        )
        failure: Exception | None = None
    except Exception as exc:
        rows, failure = None, exc

    async def committed() -> None:
        error = failure
        if rows is not None:
            try:
                # Inline when this call is the only request being served, else queued for the writer.
                await state.audit.write(rows)
            except Exception as exc:
                error = exc
        if error is not None:
            # Decision support must not fail because the audit store is down; the gap is logged and counted.
            count_audit_failure(service_id)
            logger.error(
                "audit_write_failed",
                extra={
                    "service_id": service_id,
                    "status": status,
                    "exc_type": type(error).__name__,
                },
            )
        logger.info(
            "hook_call",
            extra={
                "service_id": service_id,
                "status": status,
                "card_count": card_count,
                "duration_ms": round(duration_ms, 2),
            },
        )
        observe_hook(service_id, status, duration_ms / 1000, cards)

    return committed


__all__ = ["HookAnswer", "HookCall", "evaluate", "handle_hook", "parse_context"]

"""Request dependencies: shared state, and EHR authentication (CDS Hooks 2.0 JWT)."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError

from app.api.cds.services import SERVICES_BY_ID, ServiceDef
from app.config import AuthMode
from app.errors import NotFound, ServiceUnavailable, Unauthorized
from app.security.clients import RegisteredClient
from app.security.errors import AuthError
from app.security.jwt import authenticate
from app.services.clients import SqlClientLookup, SqlReplayStore
from app.state import AppState

logger = logging.getLogger("iliac_cds.auth")
bearer = HTTPBearer(
    auto_error=False, description="JWT signed by the EHR (CDS Hooks 2.0)"
)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.services
    return state


async def _state_dependency(request: Request) -> AppState:
    # async: FastAPI runs a plain `def` dependency in the thread pool, two thread hops per hook call.
    return get_state(request)


StateDep = Annotated[AppState, Depends(_state_dependency)]


async def get_service(service_id: str) -> ServiceDef:
    service = SERVICES_BY_ID.get(service_id)
    if service is None:
        raise NotFound(f"no CDS service with id {service_id!r}")
    return service


ServiceDep = Annotated[ServiceDef, Depends(get_service)]


async def authenticate_request(
    request: Request, state: AppState, *, audience: str
) -> RegisteredClient | None:
    """Verifies the EHR's JWT for the endpoint invoked; None in loopback-only development mode.

    Any failure is a bare 401 (the reason code is logged); a down client registry or jti store is a 503.
    """
    if state.settings.auth_mode is AuthMode.DISABLED:
        return None
    try:
        result = await authenticate(
            authorization=request.headers.get("authorization"),
            endpoint_url=audience,
            clients=SqlClientLookup(state.sessionmaker),
            replay=SqlReplayStore(state.sessionmaker, clock=state.now),
            jwks=state.jwks,
            settings=state.settings,
            now=state.now(),
        )
    except AuthError as exc:
        logger.info("auth_rejected", extra={"reason": exc.reason})
        raise Unauthorized("unauthorized") from None
    except (SQLAlchemyError, OSError) as exc:
        # Fail closed: without the client registry and the jti store, replays cannot be refused.
        logger.error("auth_store_unavailable", extra={"exc_type": type(exc).__name__})
        raise ServiceUnavailable(
            "authentication store unavailable; nothing was processed, retry later",
            headers={"Retry-After": "5"},
        ) from None
    return result.client


def endpoint_url(state: AppState, path: str) -> str:
    return state.settings.public_base_url.rstrip("/") + path


async def hook_client(
    request: Request,
    state: StateDep,
    service: ServiceDep,
    _creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> RegisteredClient | None:
    return await authenticate_request(
        request, state, audience=endpoint_url(state, f"/cds-services/{service.id}")
    )


async def feedback_client(
    request: Request,
    state: StateDep,
    service: ServiceDep,
    _creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> RegisteredClient | None:
    # aud is the endpoint invoked (CDS Hooks 2.0): a token minted for the service URL is not valid here.
    return await authenticate_request(
        request,
        state,
        audience=endpoint_url(state, f"/cds-services/{service.id}/feedback"),
    )


HookClientDep = Annotated[RegisteredClient | None, Depends(hook_client)]
FeedbackClientDep = Annotated[RegisteredClient | None, Depends(feedback_client)]

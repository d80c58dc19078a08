"""SMART app HTTP: launch, callback, the pathway page and its JSON; errors are pages.

Every failure a user can meet (unknown `iss`, wrong `state`, denied consent, expired access, FHIR down,
or a bug) ends on a page saying what happened and what to do; no stack trace, token or PHI is shown or
logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from app.api.responses import OrjsonResponse
from app.smart.oauth import SessionExpired, SmartError
from app.smart.service import (
    STATIC_DIR,
    TEMPLATES_DIR,
    SmartState,
    Workup,
    finish_launch,
    load_workup,
    start_launch,
)
from app.smart.sessions import SmartSession
from app.smart.settings import SmartSettings
from app.smart.view import build_timeline, card_views, leg_views, patient_banner
from app.state import AppState

logger = logging.getLogger("iliac_cds.smart")
templates = Jinja2Templates(directory=TEMPLATES_DIR)
STATIC_PREFIX = "/smart/static"


def error_page(request: Request, error: SmartError) -> Response:
    return templates.TemplateResponse(
        request,
        "error.html",
        {
            "title": error.title,
            "message": error.message,
            "code": error.code,
            "static": STATIC_PREFIX,
        },
        status_code=error.status_code,
    )


class SmartRoute(APIRoute):
    """Renders SmartError (and anything unexpected) as an HTML page instead of JSON or a 500 trace."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except SmartError as exc:
                logger.info(
                    "smart_error", extra={"code": exc.code, "status": exc.status_code}
                )
                return error_page(request, exc)
            except Exception as exc:
                logger.error(
                    "smart_unexpected_error", extra={"exc_type": type(exc).__name__}
                )
                return error_page(
                    request,
                    _Unexpected(
                        "unexpected",
                        "Something went wrong on our side. Nothing was changed in the record. "
                        "Launch the app again from the EHR; if it keeps happening, tell the service team.",
                    ),
                )

        return handle


class _Unexpected(SmartError):
    status_code = 500
    title = "The workup could not be shown"


class _NotConfigured(SmartError):
    status_code = 404
    title = "The SMART app is not enabled"


router = APIRouter(route_class=SmartRoute, include_in_schema=False)


def _states(request: Request) -> tuple[AppState, SmartState]:
    app_state: AppState = request.app.state.services
    smart: SmartState = request.app.state.smart
    if not smart.settings.enabled:
        raise _NotConfigured(
            "smart_disabled",
            "No EHR is configured to launch this app (ILIAC_CDS_SMART_ALLOWED_ISSUERS).",
        )
    return app_state, smart


def _session(request: Request, smart: SmartState) -> SmartSession | None:
    return smart.session_from_cookie(request.cookies.get(smart.settings.cookie_name))


def _set_cookie(response: Response, smart: SmartState, session: SmartSession) -> None:
    s = smart.settings
    parts = [
        f"{s.cookie_name}={smart.signer.sign(session.id)}",
        "Path=/smart",
        f"Max-Age={s.session_max_age_seconds}",
        "HttpOnly",
        f"SameSite={s.cookie_samesite.value.capitalize()}",
    ]
    if s.cookie_secure:
        parts.append("Secure")
        if s.cookie_partitioned:
            parts.append("Partitioned")
    response.headers.append("set-cookie", "; ".join(parts))


@router.get("/smart/launch", name="smart-launch")
async def launch(
    request: Request,
    iss: Annotated[str | None, Query(max_length=2048)] = None,
    launch: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response:
    """EHR launch (`iss` and `launch`) or standalone launch (`iss` only)."""
    app_state, smart = _states(request)
    old = _session(request, smart)
    session, url = await start_launch(app_state, smart, iss=iss, launch=launch)
    if old is not None:
        smart.store.delete(old.id)
    response = RedirectResponse(url, status_code=302)
    _set_cookie(response, smart, session)
    return response


@router.get("/smart/callback", name="smart-callback")
async def callback(
    request: Request,
    state: Annotated[str | None, Query(max_length=512)] = None,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    """The authorization server's answer: check `state`, exchange the code, open the pathway page."""
    app_state, smart = _states(request)
    session = await finish_launch(
        app_state, smart, _session(request, smart), state=state, code=code, error=error
    )
    fragment = (
        f"#leg-{session.app_context.leg}"
        if session.app_context.leg in ("left", "right")
        else ""
    )
    response = RedirectResponse(f"/smart/app{fragment}", status_code=303)
    _set_cookie(response, smart, session)
    return response


@router.get("/smart/app", name="smart-app")
async def pathway_page(request: Request) -> Response:
    """The pathway page for the patient in context."""
    app_state, smart = _states(request)
    session = _session(request, smart)
    workup = await load_workup(app_state, smart, session)
    focus = session.app_context if session else None
    assert focus is not None
    return templates.TemplateResponse(
        request,
        "app.html",
        _page_context(workup, focus_rule=focus.rule, session=session),
    )


def _page_context(
    workup: Workup, *, focus_rule: str | None, session: SmartSession | None
) -> dict[str, Any]:
    assert session is not None
    focus = session.app_context
    result = workup.result
    legs = leg_views(result.state, focus)
    return {
        "static": STATIC_PREFIX,
        "patient": patient_banner(workup.patient_id, workup.resources),
        "legs": legs,
        "focus": focus,
        "focus_rule": focus_rule,
        "cards": card_views(result.cards, result.card_sides, focus),
        "timeline": build_timeline(result.state, workup.now),
        "state": result.state,
        "now": workup.now,
    }


@router.get("/smart/api/workup", name="smart-workup-json")
async def workup_json(request: Request) -> Response:
    """The workup state and cards as JSON, for the session's patient."""
    try:
        app_state, smart = _states(request)
        session = _session(request, smart)
        workup = await load_workup(app_state, smart, session)
    except SmartError as exc:
        return OrjsonResponse(
            {"error": exc.code, "detail": exc.message}, status_code=exc.status_code
        )
    focus = session.app_context if session else None
    return OrjsonResponse(
        {
            "patient": workup.patient_id,
            "now": workup.now.isoformat(),
            "focus": {
                "leg": focus.leg if focus else None,
                "rule": focus.rule if focus else None,
            },
            "state": workup.result.state.to_json(),
            "cards": workup.result.cards,
        }
    )


def install_smart_app(app: FastAPI, settings: SmartSettings) -> None:
    """Add the SMART routes, the static files and the session store to the app (once)."""
    if getattr(app.state, "smart", None) is not None:
        return
    app.state.smart = SmartState.create(settings)
    app.include_router(router)
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="smart-static")


__all__ = ["SessionExpired", "install_smart_app", "router"]

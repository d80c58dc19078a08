"""Application errors with safe messages, and the handlers that render them.

AppError
 ├── BadRequest            400  malformed request the schema could not catch (wrong hook, bad prefetch value)
 ├── Unauthorized          401  EHR JWT rejected (bare body; the reason code is logged only)
 ├── Forbidden             403  fhirServer not on the client's allow-list
 ├── NotFound              404  unknown CDS service id
 ├── PayloadTooLarge       413  body over the configured cap
 ├── InvalidRequest        422  payload validation failed (names the fields)
 ├── PreconditionFailed    412  required FHIR data could not be obtained (CDS Hooks 2.0)
 └── ServiceUnavailable    503  a dependency (database) is down; carries Retry-After
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("iliac_cds.errors")


class AppError(Exception):
    """Base of every error whose message is safe to show to the caller."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


class BadRequest(AppError):
    status_code = 400
    code = "bad_request"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class PreconditionFailed(AppError):
    status_code = 412
    code = "prefetch_unavailable"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class InvalidRequest(AppError):
    status_code = 422
    code = "invalid_request"

    def __init__(self, message: str, *, problems: list[dict[str, str]]) -> None:
        super().__init__(message)
        self.problems = problems


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"


def error_body(code: str, message: str) -> dict[str, str]:
    return {"error": code, "detail": message}


async def _app_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)  # registered for AppError only
    if isinstance(exc, Unauthorized):
        # CDS Hooks: a bare 401; the reason stays in our log.
        return JSONResponse(error_body(exc.code, "unauthorized"), status_code=401)
    body: dict[str, object] = dict(error_body(exc.code, exc.message))
    if isinstance(exc, InvalidRequest):
        body["problems"] = exc.problems
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def describe_validation_errors(
    errors: Sequence[Mapping[str, object]], *, prefix: str = ""
) -> InvalidRequest:
    """Turns pydantic errors into an InvalidRequest naming each field (values are never echoed)."""
    problems: list[dict[str, str]] = []
    for err in list(errors)[:20]:
        loc = err.get("loc", ())
        field = _field_path(tuple(loc) if isinstance(loc, (list, tuple)) else ())
        if prefix:
            field = f"{prefix}.{field}" if field != "body" else prefix
        if err.get("type") == "json_invalid":
            problems.append(
                {"field": "body", "message": "request body is not valid JSON"}
            )
        else:
            problems.append({"field": field, "message": str(err.get("msg", "invalid"))})
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return InvalidRequest(summary, problems=problems)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    invalid = describe_validation_errors(exc.errors())
    if any(p["message"] == "request body is not valid JSON" for p in invalid.problems):
        return JSONResponse(
            error_body("invalid_json", "request body is not valid JSON"),
            status_code=400,
        )
    return JSONResponse(
        {
            "error": invalid.code,
            "detail": invalid.message,
            "problems": invalid.problems,
        },
        status_code=422,
    )


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse(
        error_body("http_error", str(exc.detail)),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # Only the route and the exception type: messages may carry PHI.
    logger.error(
        "unhandled_error",
        extra={
            "path_template": _route_template(request),
            "exc_type": type(exc).__name__,
        },
    )
    return JSONResponse(
        error_body("internal_error", "internal server error"), status_code=500
    )


def _route_template(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", "unknown"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

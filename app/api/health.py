"""Operational endpoints: liveness and readiness."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from sqlalchemy import text

from app.api.responses import OrjsonResponse
from app.state import AppState

router = APIRouter(tags=["operations"])
logger = logging.getLogger("iliac_cds.health")


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable and data files loaded")
async def readyz(request: Request) -> OrjsonResponse:
    state: AppState = request.app.state.services
    checks: dict[str, str] = {"catalog": "ok"}
    try:
        async with state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means "not ready"
        logger.warning("readyz_database_failed", extra={"exc_type": type(exc).__name__})
        checks["database"] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    return OrjsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )

"""The rules catalogue page that every card's `absolute` link points at (`/rules#R09`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.api.deps import get_state

router = APIRouter(tags=["clinical content"])


@router.get("/rules", response_class=HTMLResponse, summary="Rules catalogue (HTML)")
async def rules_page(request: Request) -> HTMLResponse:
    # Rendered once at startup: the catalogue only changes with a deployment.
    return HTMLResponse(get_state(request).rules_html)

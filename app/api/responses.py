"""JSON responses rendered with orjson (FastAPI's own ORJSONResponse is deprecated)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send


class OrjsonResponse(JSONResponse):
    """Renders with orjson: several times faster than json.dumps on card payloads."""

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)


class CommittedResponse(OrjsonResponse):
    """Sends its body only after `before_send` has completed (a hook answer waits for its audit commit).

    The wait happens here, when the response starts, rather than in the endpoint: by then the request's decoded
    body and models are no longer referenced, so calls waiting for a commit do not hold their prefetch.
    """

    def __init__(
        self, content: object, *, before_send: Callable[[], Awaitable[None]]
    ) -> None:
        super().__init__(content)
        self._before_send = before_send

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._before_send()
        await super().__call__(scope, receive, send)

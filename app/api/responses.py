"""JSON responses rendered with orjson (FastAPI's own ORJSONResponse is deprecated)."""

from __future__ import annotations

import orjson
from fastapi.responses import JSONResponse


class OrjsonResponse(JSONResponse):
    """Renders with orjson: several times faster than json.dumps on card payloads."""

    def render(self, content: object) -> bytes:
        return orjson.dumps(content)

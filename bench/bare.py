"""The bare endpoint: same route and body as the service, decodes the JSON and returns one fixed card.

It is the ceiling a FastAPI + uvicorn process on this machine can reach for a body of that size; the
service's throughput is reported as a ratio to it.
"""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import ORJSONResponse

CARD = {
    "uuid": "5d1d3c1e-7d1e-4a5e-9a77-1c0f7c6b0c11",
    "summary": "Exclude DVT first: order complete duplex ultrasound",
    "indicator": "warning",
    "source": {
        "label": "iliac-cds bench",
        "topic": {
            "system": "http://example.org/rules",
            "code": "R01",
            "display": "bench",
        },
    },
}

app = FastAPI(default_response_class=ORJSONResponse)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/cds-services/{service_id}")
async def call_service(service_id: str, request: Request) -> ORJSONResponse:
    body = orjson.loads(await request.body())
    if not isinstance(body, dict) or "hook" not in body:
        return ORJSONResponse(
            {"error": "bad_request", "detail": service_id}, status_code=400
        )
    return ORJSONResponse({"cards": [CARD]})

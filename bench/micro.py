"""Engine and request-path micro-benchmarks with plain perf_counter loops (`python -m bench.micro`)."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import orjson

from bench import workloads
from bench.workloads import Body


@dataclass(frozen=True)
class Micro:
    name: str
    workload: str
    median_ms: float
    min_ms: float
    loops: int


def measure(
    fn: Callable[[], object], *, seconds: float = 0.5, min_loops: int = 5
) -> tuple[float, float, int]:
    """Median and minimum ms per call over at least `min_loops` calls or `seconds` of calls."""
    fn()
    samples: list[float] = []
    end = time.perf_counter() + seconds
    while len(samples) < min_loops or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), min(samples), len(samples)


def _engine_call(body: Body) -> Callable[[], object] | None:
    """run_workup on the body's record, or None while app/workup/engine.py does not exist."""
    try:
        from app.workup.engine import LinkConfig, WorkupInput, run_workup
    except ImportError:
        return None
    from app.catalog.loader import load_catalog
    from app.config import Settings

    settings = Settings()
    catalog = load_catalog(
        cards_dir=settings.cards_dir,
        mappings_dir=settings.mappings_dir,
        local_system=settings.local_code_system,
    )
    resources = tuple(r for rs in body.record.by_key.values() for r in rs)
    context = body.body["context"]
    drafts = tuple(
        e["resource"] for e in context.get("draftOrders", {}).get("entry", [])
    )
    inp = WorkupInput(
        hook=body.body["hook"],
        now=workloads.EPOCH,
        patient_id=workloads.PATIENT_ID,
        resources=resources,
        draft_orders=drafts,
        selections=(),
        links=LinkConfig(rules_url="http://127.0.0.1/rules", smart_launch_url=None),
    )
    return lambda: run_workup(inp, catalog)


def _validate_all(body: Body) -> Callable[[], object]:
    from fhir.resources.R4B import get_fhir_model_class

    resources = [r for rs in body.record.by_key.values() for r in rs]

    def run() -> None:
        for r in resources:
            get_fhir_model_class(r["resourceType"]).model_validate(r)

    return run


def _gather(body: Body) -> Callable[[], object]:
    from app.fhir.prefetch import PREFETCH_TEMPLATES, gather_resources

    loop = asyncio.new_event_loop()

    def run() -> object:
        return loop.run_until_complete(
            gather_resources(
                prefetch=body.body["prefetch"],
                templates=PREFETCH_TEMPLATES,
                context=body.body["context"],
                user_practitioner_id=None,
                fhir=None,
                deadline_seconds=2.0,
            )
        )

    return run


def _decode_and_check(raw: bytes, *, proven: bool) -> Callable[[], object]:
    """What the hook route does before the engine: decode, validate the wire model, check the limits."""
    from app.api.cds.schemas import CdsRequest
    from app.api.limits import check_cds_request, decode_json_body, depth_proof_scope

    def run() -> None:
        with depth_proof_scope():
            decoded = decode_json_body(raw) if proven else orjson.loads(raw)
            check_cds_request(CdsRequest.model_validate(decoded))

    return run


def run_micro(bodies: list[Body], *, seconds: float = 0.5) -> list[Micro]:
    from app.api.cds.schemas import CdsRequest

    results: list[Micro] = []
    for body in bodies:
        raw = orjson.dumps(body.body)
        cases: list[tuple[str, Callable[[], object] | None]] = [
            ("orjson.loads(body)", partial(orjson.loads, raw)),
            (
                "json.loads(body) (stdlib, as Starlette)",
                partial(json.loads, raw),
            ),
            (
                "CdsRequest.model_validate(decoded)",
                partial(CdsRequest.model_validate, orjson.loads(raw)),
            ),
            (
                "orjson.loads + CdsRequest + limits walk",
                _decode_and_check(raw, proven=False),
            ),
            (
                "decode_json_body + CdsRequest + limits (proof)",
                _decode_and_check(raw, proven=True),
            ),
            ("gather_resources(prefetch)", _gather(body)),
            ("run_workup(record)", _engine_call(body)),
            ("fhir.resources R4B validate every resource", _validate_all(body)),
        ]
        for name, fn in cases:
            if fn is None:
                results.append(
                    Micro(
                        name + " (engine missing)",
                        body.name,
                        float("nan"),
                        float("nan"),
                        0,
                    )
                )
                continue
            median, low, loops = measure(fn, seconds=seconds)
            results.append(Micro(name, body.name, median, low, loops))
    return results


def default_bodies() -> list[Body]:
    return [
        workloads.patient_view(),
        workloads.order_sign(),
        workloads.large(500),
        workloads.large(2000),
    ]


def main() -> None:
    for m in run_micro(default_bodies()):
        sys.stdout.write(
            f"{m.workload:24} {m.name:48} median {m.median_ms:9.3f} ms  min {m.min_ms:9.3f} ms  ({m.loops} loops)\n"
        )


if __name__ == "__main__":
    main()

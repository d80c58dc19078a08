"""Workload 4's FHIR server: sekmet-fhir from .venv-fhir (scripts/fhir-server-venv.sh), loaded with the
workload-1 record, and the per-query latency the hook latency is compared with."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from app.fhir.client import FhirFetcher, create_http_client
from app.fhir.prefetch import PREFETCH_TEMPLATES, render_template
from bench.procs import Server, free_port
from bench.workloads import PATIENT_ID, Record

REPO = Path(__file__).resolve().parent.parent
FHIR_VENV = Path(os.environ.get("ILIAC_CDS_FHIR_VENV", REPO / ".venv-fhir"))


def available() -> bool:
    return (FHIR_VENV / "bin" / "sekmet").exists()


def start(workdir: Path) -> Server:
    """Start sekmet-fhir on a free loopback port with its own database under `workdir`.

    As its CLI runs it in a deployment (`sekmet serve`): one uvicorn process, which has no workers option, and
    whose SQLite store serialises every request behind one lock. Only the inbound traffic log (a database row per
    request) is off, as sekmet's settings advise for load runs; it would slow every request, single ones included.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    config = workdir / "sekmet-settings.yaml"
    config.write_text(
        "\n".join(
            [
                f"base_url: {base}",
                "host: 127.0.0.1",
                f"port: {port}",
                f"data_dir: {workdir / 'sekmet-data'}",
                "log_inbound: false",
                "simulator: {enabled: false}",
                "validation: {inbound: 'off'}",
                "",
            ]
        )
    )
    env = {**os.environ, "SEKMET_CONFIG": str(config)}
    server = Server(
        name="sekmet-fhir",
        cmd=[
            str(FHIR_VENV / "bin" / "sekmet"),
            "serve",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        port=port,
        log_path=workdir / "sekmet.log",
    )
    server.start(health_path="/fhir/metadata")
    return server


def load(base_url: str, record: Record) -> int:
    """PUT every resource of the record (update-as-create keeps our ids); returns the count."""
    count = 0
    with httpx.Client(base_url=base_url, timeout=30, trust_env=False) as client:
        for resources in record.by_key.values():
            for resource in resources:
                response = client.put(
                    f"/{resource['resourceType']}/{resource['id']}",
                    json=resource,
                    headers={"Content-Type": "application/fhir+json"},
                )
                if response.status_code >= 300:
                    raise RuntimeError(
                        f"FHIR server refused {resource['resourceType']}: {response.status_code} {response.text[:300]}"
                    )
                count += 1
    return count


@dataclass(frozen=True)
class QueryTiming:
    key: str
    resources: int
    p50_ms: float
    p99_ms: float
    samples_ms: tuple[float, ...] = ()

    @classmethod
    def of(cls, key: str, resources: int, samples_ms: list[float]) -> QueryTiming:
        """The timing of a query from its samples (milliseconds, any order)."""
        samples = sorted(samples_ms)
        return cls(
            key,
            resources,
            statistics.median(samples),
            samples[min(len(samples) - 1, int(len(samples) * 0.99))],
            tuple(samples),
        )


def merge_timings(rounds: list[list[QueryTiming]]) -> list[QueryTiming]:
    """The timings of several rounds of time_queries() as one: each query's samples pooled."""
    merged: list[QueryTiming] = []
    for same in zip(*rounds, strict=True):
        samples = [x for timing in same for x in timing.samples_ms]
        merged.append(QueryTiming.of(same[0].key, same[-1].resources, samples))
    return merged


async def _time_queries(base_url: str, repeats: int) -> list[QueryTiming]:
    context = {"patientId": PATIENT_ID, "userId": "Practitioner/bench-prac"}
    timings: list[QueryTiming] = []
    async with create_http_client(timeout_seconds=10) as http:
        fetcher = FhirFetcher(
            http, base_url, None, max_pages=10, max_response_bytes=20 * 1024 * 1024
        )
        queries = [
            render_template(t, context, None) for t in PREFETCH_TEMPLATES.values()
        ]
        if await fetcher.first_answers(queries) is None:
            # Workload 4 would then measure the query-by-query fallback, not the service's normal path.
            raise RuntimeError("sekmet-fhir did not answer the prefetch batch")
        for key, template in PREFETCH_TEMPLATES.items():
            query = render_template(template, context, None)
            samples: list[float] = []
            found = 0
            for _ in range(repeats + 2):
                t0 = time.perf_counter()
                found = len(await fetcher.search(query))
                samples.append((time.perf_counter() - t0) * 1000)
            timings.append(QueryTiming.of(key, found, samples[2:]))
    return timings


def time_queries(base_url: str, repeats: int) -> list[QueryTiming]:
    """Each prefetch query on its own, sequentially, as the service's FhirFetcher runs it (pages followed).

    search() is one GET per page, no batch: the latency of that query alone, with the same client code (the hook
    sends the nine queries as one batch, then the further pages). The fetcher asks no page size (`_count`), so
    each query runs as its prefetch template reads, in the server's default pages; the service asks for pages of
    ILIAC_CDS_FHIR_PAGE_SIZE.
    """
    return asyncio.run(_time_queries(base_url, repeats))

"""bench/results.md from one run: machine, versions, targets, every measured point, FHIR timings, micro."""

from __future__ import annotations

import math
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.fhirserver import QueryTiming
from bench.loadgen import WrkResult
from bench.micro import Micro


@dataclass(frozen=True)
class Point:
    workload: str
    target: str  # "service", "service --reuse-port", "bare", "two 1-worker services" (bench.__main__)
    workers: int
    connections: int
    result: WrkResult
    server_cpu_ms: float  # per request
    rss_mb: float
    other_cores: float  # CPU used by processes other than the server and wrk during the point, in cores
    group: str = ""  # points measured side by side in a later phase (the 2-worker run)
    slices: int = 1  # interleaved slices the point was measured in

    @property
    def wrk_cpu_ms(self) -> float:
        return self.result.wrk_cpu_seconds * 1000 / max(1, self.result.requests)


@dataclass(frozen=True)
class Check:
    target: str
    measured: str
    ok: bool | None  # None: not measured


@dataclass
class Run:
    mode: str
    seconds_per_point: float
    points: list[Point] = field(default_factory=list)
    ready: dict[str, float] = field(default_factory=dict)
    body_sizes: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # name -> (resources, bytes)
    cards: dict[str, list[str]] = field(default_factory=dict)
    fhir: list[QueryTiming] = field(default_factory=list)
    fhir_note: str = ""
    rss_series: list[tuple[int, float]] = field(
        default_factory=list
    )  # (requests so far, MB)
    micro: list[Micro] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    wrk_version: str = ""

    def find(
        self,
        workload: str,
        target: str,
        workers: int,
        connections: int,
        group: str = "",
    ) -> Point | None:
        for p in self.points:
            if (p.workload, p.target, p.workers, p.connections, p.group) == (
                workload,
                target,
                workers,
                connections,
                group,
            ):
                return p
        return None


def _cmd(args: list[str]) -> str:
    try:
        return subprocess.run(
            args, capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return "?"


def machine() -> list[tuple[str, str]]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = _cmd(["free", "-h"]).splitlines()
    return [
        ("nproc", _cmd(["nproc"])),
        ("CPU", cpu),
        ("memory (free -h)", mem[1].split()[1] if len(mem) > 1 else "?"),
        ("kernel", platform.release()),
        ("OS", _os_name()),
    ]


def _os_name() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "?"


def versions(wrk: str) -> list[tuple[str, str]]:
    rows = [("python", platform.python_version())]
    for dist in (
        "fastapi",
        "uvicorn",
        "uvloop",
        "httptools",
        "fhir.resources",
        "pydantic",
        "orjson",
        "sqlalchemy",
    ):
        try:
            rows.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            rows.append((dist, "not installed"))
    rows.append(("wrk", wrk))
    return rows


def _f(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def render(run: Run) -> str:
    out: list[str] = []
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out.append("# Benchmark results\n")
    out.append(
        f"Written by `python -m bench{' --quick' if run.mode == 'quick' else ''}` on {now}; "
        f"{run.seconds_per_point:g} s per point, wrk with 1 thread, all on 127.0.0.1. "
        "Load generator and servers share the machine's cores.\n"
    )
    others = sorted(p.other_cores for p in run.points)
    if others and others[len(others) // 2] > 0.3:
        out.append(
            f"**Warning: other processes kept {others[len(others) // 2]:.1f} cores busy (median over the points; "
            f"see the `others` column) on a {_cmd(['nproc'])}-core machine during this run. Latencies and "
            "throughputs are disturbed; CPU ms per request and the service/bare ratios measured back to back "
            "are the more robust figures. Rerun on a quiet machine for the absolute numbers.**\n"
        )
    out.append("## Machine and versions\n")
    out.append("| | |\n|---|---|")
    out.extend(f"| {k} | {v} |" for k, v in [*machine(), *versions(run.wrk_version)])
    out.append("\n## Targets (from the issue), measured in this run\n")
    out.append("| target | measured | |\n|---|---|---|")
    for c in run.checks:
        verdict = "not measured" if c.ok is None else ("PASS" if c.ok else "**FAIL**")
        out.append(f"| {c.target} | {c.measured} | {verdict} |")
    out.append("\n## Workloads\n")
    out.append(
        "| workload | resources | body bytes | cards the service returned |\n|---|---|---|---|"
    )
    for name, (count, size) in run.body_sizes.items():
        cards = "; ".join(run.cards.get(name, [])) or "(none)"
        out.append(f"| {name} | {count} | {size:,} | {cards} |")
    out.append("\n## Every point\n")
    out.append(
        "CPU ms/req: utime+stime of the server's process tree (/proc/<pid>/stat) before and after, over the "
        "requests wrk completed. wrk ms/req: the load generator's own CPU per request (its overhead). "
        "RSS: the server's process tree after the point. Ratio: requests/s over the bare endpoint's at the "
        "same workload, workers and concurrency. Others: cores kept busy by processes other than the server "
        "and wrk during the point (the machine is shared; above ~0.3 the point is disturbed). A point measured in "
        "N slices ran side by side with the other points of its workload and concurrency: the servers took turns "
        "(A B, B A, ...), N slices each, so that the machine's changes of speed fall on all of them; its "
        "percentiles come from the slices' latency distributions merged. Two 1-worker services: the 1-worker "
        "service and a second one with a database file of its own, loaded at once with half the connections "
        "each (one wrk each); nothing is shared between them, so their sum over the 1-worker point is what the "
        "machine gives two copies of the service's work, the reference for the 2-worker target.\n"
    )
    out.append(
        "| workload | server | workers | conc. | req/s | p50 ms | p99 ms | max ms | CPU ms/req | wrk ms/req | RSS MB | ratio | others | errors |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p in run.points:
        bare = run.find(p.workload, "bare", p.workers, p.connections, p.group)
        ratio = (
            f"{p.result.rps / bare.result.rps:.2f}"
            if p.target.startswith("service") and bare and bare.result.rps
            else ""
        )
        r = p.result
        server = p.target + (f" ({p.group})" if p.group else "")
        if p.slices > 1:
            server += f", {p.slices} slices"
        if not r.requests:
            out.append(
                f"| {p.workload} | {server} | {p.workers} | {p.connections} | 0 | no request completed "
                f"in {r.seconds:.0f} s | | | | | {p.rss_mb:.0f} | | {p.other_cores:.2f} | {r.errors + r.non_2xx} |"
            )
            continue
        out.append(
            f"| {p.workload} | {server} | {p.workers} | {p.connections} | {r.rps:.0f} | {r.p50_ms:.2f} | "
            f"{r.p99_ms:.2f} | {r.max_ms:.1f} | {_f(p.server_cpu_ms, 2)} | {p.wrk_cpu_ms:.3f} | {p.rss_mb:.0f} | "
            f"{ratio} | {p.other_cores:.2f} | {r.errors + r.non_2xx} |"
        )
    out.append("\n## Start-up (process start to the first 200 on /healthz)\n")
    out.append("| server | seconds |\n|---|---|")
    out.extend(f"| {k} | {v:.2f} |" for k, v in run.ready.items())
    out.append("\n## Workload 4: each prefetch query alone against the FHIR server\n")
    if run.fhir_note:
        out.append(run.fhir_note + "\n")
    if run.fhir:
        out.append(
            "Sequential, through the service's own `FhirFetcher` (next links followed), same run.\n\n"
            "| prefetch key | resources | p50 ms | p99 ms |\n|---|---|---|---|"
        )
        out.extend(
            f"| {q.key} | {q.resources} | {q.p50_ms:.2f} | {q.p99_ms:.2f} |"
            for q in run.fhir
        )
    out.append(
        "\n## RSS over the long run (service, 1 worker, workload 1, concurrency 32)\n"
    )
    if run.rss_series:
        out.append("| requests | RSS MB |\n|---|---|")
        out.extend(f"| {n:,} | {mb:.1f} |" for n, mb in run.rss_series)
    out.append("\n## Micro-benchmarks (in-process, perf_counter loops)\n")
    out.append(
        "| workload | what | median ms | min ms | loops |\n|---|---|---|---|---|"
    )
    out.extend(
        f"| {m.workload} | {m.name} | {_f(m.median_ms, 3)} | {_f(m.min_ms, 3)} | {m.loops} |"
        for m in run.micro
    )
    if run.notes:
        out.append("\n## Notes from this run\n")
        out.extend(f"- {n}" for n in run.notes)
    return "\n".join(out) + "\n"

"""`python -m bench [--quick]`: drive the service and a bare endpoint with wrk, write bench/results.md."""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from bench import fhirserver, loadgen, micro, report, workloads
from bench.procs import Server, free_port, machine_busy_seconds
from bench.report import Check, Point, Run
from bench.workloads import Body

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
NOW = workloads.EPOCH.isoformat()


@dataclass(frozen=True)
class Slice:
    result: loadgen.WrkResult
    cpu_seconds: float  # the server's process tree
    other_seconds: float  # CPU of other processes than the server and wrk
    elapsed: float


@dataclass(frozen=True)
class PointSpec:
    name: str
    target: str
    workers: int
    connections: int
    group: str = ""


@dataclass(frozen=True)
class Config:
    seconds: float
    rss_requests: int
    fhir_repeats: int
    micro_seconds: float
    out: Path
    with_fhir: bool


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)  # noqa: T201


def service(
    workdir: Path,
    workers: int,
    db: Path,
    label: str = "",
    options: tuple[str, ...] = (),
) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "ILIAC_CDS_AUTH_MODE": "disabled",
        "ILIAC_CDS_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "ILIAC_CDS_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "ILIAC_CDS_NOW": NOW,
    }
    cmd = [
        str(VENV_BIN / "iliac-cds"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        *options,
    ]
    name = f"service-{workers}w{label}"
    return Server(name, cmd, env, port, workdir / f"{name}.log")


def bare(workdir: Path, workers: int) -> Server:
    port = free_port()
    cmd = [
        sys.executable, "-m", "uvicorn", "bench.bare:app", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    return Server(
        f"bare-{workers}w",
        cmd,
        {**os.environ, "PYTHONPATH": str(REPO)},
        port,
        workdir / f"bare-{workers}w.log",
    )


@dataclass(frozen=True)
class Pair:
    """Two independent 1-worker services loaded at once, half the connections each (one wrk per service).

    Nothing is shared between them (no socket, no database file, no lock), so what they serve together over what
    one serves alone is what this machine gives two busy copies of the service's work: the reference for the
    2-worker target, measured in the same rounds.
    """

    servers: tuple[Server, Server]
    name: str = "service-1w-pair"

    def wait_idle(self) -> float:
        return sum(server.wait_idle() for server in self.servers)

    def cpu_seconds(self) -> float:
        return sum(server.cpu_seconds() for server in self.servers)

    def rss_kb(self) -> int:
        return sum(server.rss_kb() for server in self.servers)


PAIR = "two 1-worker services"
# The 2-worker service as README's production section runs it: a listening socket per worker.
REUSE_PORT = "service --reuse-port"


class Bench:
    def __init__(self, cfg: Config, workdir: Path) -> None:
        self.cfg = cfg
        self.workdir = workdir
        self.wrk_path = loadgen.ensure_wrk()
        self.run = Run(
            mode="quick" if cfg.seconds < 10 else "full", seconds_per_point=cfg.seconds
        )
        self.run.wrk_version = loadgen.wrk_version(self.wrk_path)
        self.files: dict[str, Path] = {}
        self.bodies: dict[str, Body] = {}
        self.warm: set[tuple[str, str]] = set()
        self.fhir_url: str | None = None

    def add_body(self, body: Body) -> None:
        raw = orjson.dumps(body.body)
        path = self.workdir / f"{body.name}.json"
        path.write_bytes(raw)
        self.files[body.name] = path
        self.bodies[body.name] = body
        self.run.body_sizes[body.name] = (body.record.resource_count, len(raw))

    def url(self, server: Server, name: str) -> str:
        return f"{server.base_url}/cds-services/{self.bodies[name].service_id}"

    def wrk(
        self,
        server: Server,
        name: str,
        *,
        connections: int,
        seconds: float,
        max_requests: int = 0,
    ) -> loadgen.WrkResult:
        """wrk posting workload `name` to `server` (loadgen.run)."""
        return loadgen.run(
            self.wrk_path,
            self.url(server, name),
            self.files[name],
            connections=connections,
            seconds=seconds,
            max_requests=max_requests,
        )

    def check_answers(self, server: Server) -> None:
        """One call per workload before any load: it must be 200, and we record the cards."""
        with httpx.Client(timeout=30, trust_env=False) as client:
            for name, path in self.files.items():
                response = client.post(
                    self.url(server, name),
                    content=path.read_bytes(),
                    headers={"Content-Type": "application/json"},
                )
                if response.status_code != 200:
                    raise RuntimeError(
                        f"{name}: service answered {response.status_code}: {response.text[:500]}"
                    )
                self.run.cards[name] = [c["summary"] for c in response.json()["cards"]]

    @property
    def slice_seconds(self) -> float:
        return 2.0 if self.cfg.seconds >= 10 else 1.0

    def prepare(self, server: Server | Pair, name: str) -> None:
        if isinstance(server, Pair):
            for one in server.servers:
                self.prepare(one, name)
            return
        drained = server.wait_idle()
        if drained > 2:
            self.run.notes.append(
                f"{server.name} was still busy for {drained:.0f} s before a {name} point."
            )
        if (server.name, name) not in self.warm:
            self.wrk(server, name, connections=8, seconds=1)
            self.warm.add((server.name, name))

    def measure(
        self, server: Server | Pair, name: str, connections: int, seconds: float
    ) -> Slice:
        cpu0, busy0, t0 = (
            server.cpu_seconds(),
            machine_busy_seconds(),
            time.perf_counter(),
        )
        if isinstance(server, Pair):
            result = self._load_pair(server, name, connections, seconds)
        else:
            result = self.wrk(server, name, connections=connections, seconds=seconds)
        cpu = server.cpu_seconds() - cpu0
        others = machine_busy_seconds() - busy0 - cpu - result.wrk_cpu_seconds
        return Slice(result, cpu, max(0.0, others), time.perf_counter() - t0)

    def _load_pair(
        self, pair: Pair, name: str, connections: int, seconds: float
    ) -> loadgen.WrkResult:
        """One wrk per service, started together, each with half the connections."""
        share = max(1, connections // len(pair.servers))
        with ThreadPoolExecutor(max_workers=len(pair.servers)) as pool:
            results = pool.map(
                lambda server: self.wrk(
                    server, name, connections=share, seconds=seconds
                ),
                pair.servers,
            )
            return loadgen.concurrent(list(results))  # a failed run raises here

    def record(
        self, server: Server | Pair, point: PointSpec, slices: list[Slice]
    ) -> Point:
        result = loadgen.merge([s.result for s in slices])
        cpu = sum(s.cpu_seconds for s in slices)
        p = Point(
            workload=point.name,
            target=point.target,
            workers=point.workers,
            connections=point.connections,
            result=result,
            server_cpu_ms=cpu * 1000 / result.requests if result.requests else math.nan,
            rss_mb=server.rss_kb() / 1024,
            other_cores=sum(s.other_seconds for s in slices)
            / sum(s.elapsed for s in slices),
            group=point.group,
            slices=len(slices),
        )
        self.run.points.append(p)
        label = f"{point.target}{f' ({point.group})' if point.group else ''}"
        log(
            f"{point.name:24} {label:7} {point.workers}w c{point.connections:<3} {result.rps:8.1f} req/s  "
            f"p50 {result.p50_ms:7.2f}  p99 {result.p99_ms:7.2f} ms  cpu {p.server_cpu_ms:6.2f} ms/req  "
            f"errors {result.errors + result.non_2xx}  others {p.other_cores:.2f} cores"
        )
        return p

    def point(
        self, server: Server, target: str, workers: int, name: str, connections: int
    ) -> Point:
        """One point measured in one piece."""
        self.prepare(server, name)
        spec = PointSpec(name, target, workers, connections)
        return self.record(
            server, spec, [self.measure(server, name, connections, self.cfg.seconds)]
        )

    def interleaved(
        self,
        entries: list[tuple[Server | Pair, str, int]],
        name: str,
        connections: int,
        group: str = "",
    ) -> None:
        """Points of several servers measured side by side: `--seconds` each, in slices that alternate between
        the servers (A B, B A, A B, ...), so that a change of the machine's speed during the point falls on all of
        them alike. Each point merges its slices (bench/loadgen.py: merge)."""
        for server, _, _ in entries:
            self.prepare(server, name)
        rounds = max(1, round(self.cfg.seconds / self.slice_seconds))
        slices: dict[str, list[Slice]] = {server.name: [] for server, _, _ in entries}
        for i in range(rounds):
            for server, _, _ in entries if i % 2 == 0 else entries[::-1]:
                if connections > 1:
                    server.wait_idle()  # what the previous slice left in flight is not billed here
                slices[server.name].append(
                    self.measure(server, name, connections, self.cfg.seconds / rounds)
                )
        for server, target, workers in entries:
            spec = PointSpec(name, target, workers, connections, group)
            self.record(server, spec, slices[server.name])

    def fhir_interleaved(self, svc: Server, name: str) -> None:
        """Workload 4 at concurrency 1, side by side with its baseline: rounds of timing each prefetch query alone
        (`fhirserver.time_queries`) alternate with slices of the hook, so both see the same machine speed."""
        assert self.fhir_url is not None
        self.prepare(svc, name)
        rounds = max(1, round(self.cfg.seconds / self.slice_seconds))
        repeats = max(3, self.cfg.fhir_repeats // rounds)
        timings: list[list[fhirserver.QueryTiming]] = []
        slices: list[Slice] = []
        for _ in range(rounds):
            timings.append(fhirserver.time_queries(self.fhir_url, repeats))
            slices.append(self.measure(svc, name, 1, self.cfg.seconds / rounds))
        self.run.fhir = fhirserver.merge_timings(timings)
        self.record(svc, PointSpec(name, "service", 1, 1), slices)

    def pair(
        self,
        svc: Server,
        bare_server: Server,
        workers: int,
        name: str,
        connections: int,
        *,
        sliced: bool = True,
    ) -> None:
        """Bare and service at one workload: side by side in slices, or (`sliced=False`, for the large bodies whose
        requests take tens of ms to seconds, too long for short slices) one after the other in one piece each."""
        if sliced:
            self.interleaved(
                [(bare_server, "bare", workers), (svc, "service", workers)],
                name,
                connections,
            )
            return
        self.point(bare_server, "bare", workers, name, connections)
        self.point(svc, "service", workers, name, connections)

    def rss_run(self, svc: Server, name: str) -> None:
        """RSS of the 1-worker service sampled while it answers `rss_requests` requests at concurrency 32."""
        total = self.cfg.rss_requests
        # Warm up at the same concurrency first: 32 bodies in flight raise RSS once, which is not growth.
        self.wrk(svc, name, connections=32, seconds=60, max_requests=1000)
        svc.wait_idle()
        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append((time.perf_counter(), svc.rss_kb() / 1024))
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        t0 = time.perf_counter()
        sampler.start()
        result = self.wrk(svc, name, connections=32, seconds=180, max_requests=total)
        stop.set()
        sampler.join()
        rate = result.requests / max(1e-9, result.seconds)
        self.run.rss_series = [
            (round((t - t0) * rate), mb)
            for t, mb in samples[:: max(1, len(samples) // 10)]
        ]
        self.run.rss_series.append((result.requests, svc.rss_kb() / 1024))
        log(
            f"RSS over {result.requests} requests: {samples[0][1]:.1f} -> {self.run.rss_series[-1][1]:.1f} MB"
        )


def audit_failures(workdir: Path) -> int:
    return sum(
        p.read_text(errors="replace").count("audit_write_failed")
        for p in workdir.glob("service-*.log")
    )


def phase_one_worker(b: Bench, names: list[str], fhir_name: str | None) -> None:
    svc = service(b.workdir, 1, b.workdir / "bench.db")
    bare_server = bare(b.workdir, 1)
    try:
        svc.start()
        b.run.ready["service, 1 worker, fresh database (migrations applied)"] = (
            svc.ready_seconds
        )
        bare_server.start()
        b.run.ready["bare endpoint, 1 worker"] = bare_server.ready_seconds
        b.check_answers(svc)
        for name in names[:2]:
            for c in (1, 32):
                b.pair(svc, bare_server, 1, name, c)
        # Before the 2,000-resource points, whose peak RSS would hide any growth afterwards.
        b.rss_run(svc, "patient-view-150k")
        for name in names[2:]:
            for c in (1, 32):
                b.pair(svc, bare_server, 1, name, c, sliced=False)
        b.pair(svc, bare_server, 1, "patient-view-500", 1, sliced=False)
        if fhir_name is not None:
            b.fhir_interleaved(svc, fhir_name)
            b.point(svc, "service", 1, fhir_name, 32)
    finally:
        svc.stop()
        bare_server.stop()


TWO_WORKER_RUN = "2-worker run"


def phase_two_workers(b: Bench) -> None:
    """2 workers (per-worker sockets, and uvicorn's shared socket) against the bare endpoint with 2 workers, and
    against the 1-worker service started again beside them (same database), all interleaved: the 2-worker target
    compares points measured side by side."""
    svc = service(b.workdir, 2, b.workdir / "bench.db")
    svc_reuse = service(
        b.workdir, 2, b.workdir / "bench.db", "-reuse-port", ("--reuse-port",)
    )
    one = service(b.workdir, 1, b.workdir / "bench.db")
    # The pair: `one` and a second 1-worker service with a database file of its own.
    other = service(b.workdir, 1, b.workdir / "bench-other.db", label="-other")
    bare_server = bare(b.workdir, 2)
    try:
        svc.start(workers=2)
        b.run.ready["service, 2 workers, database at head"] = svc.ready_seconds
        svc_reuse.start(workers=2)
        b.run.ready["service, 2 workers, --reuse-port, database at head"] = (
            svc_reuse.ready_seconds
        )
        one.start()
        other.start()
        bare_server.start(workers=2)
        for name in ("patient-view-150k", "order-sign-stent-ivus"):
            b.interleaved(
                [
                    (bare_server, "bare", 2),
                    (svc_reuse, REUSE_PORT, 2),
                    (svc, "service", 2),
                    (one, "service", 1),
                    (Pair((one, other)), PAIR, 1),
                ],
                name,
                32,
                group=TWO_WORKER_RUN,
            )
    finally:
        svc.stop()
        svc_reuse.stop()
        one.stop()
        other.stop()
        bare_server.stop()


def start_fhir(b: Bench) -> Server | None:
    if not b.cfg.with_fhir:
        b.run.fhir_note = "Skipped (--no-fhir)."
        return None
    script = REPO / "scripts" / "fhir-server-venv.sh"
    if not fhirserver.available() and script.exists():
        log("creating .venv-fhir with scripts/fhir-server-venv.sh")
        subprocess.run(["bash", str(script)], check=False)
    if not fhirserver.available():
        b.run.fhir_note = "Not run: sekmet-fhir is not installed (.venv-fhir, scripts/fhir-server-venv.sh)."
        return None
    server = fhirserver.start(b.workdir)
    b.run.ready["sekmet-fhir"] = server.ready_seconds
    fhirserver.load(server.base_url + "/fhir", workloads.typical_record())
    return server


def run_all(cfg: Config, workdir: Path) -> Run:
    b = Bench(cfg, workdir)
    for body in (
        workloads.patient_view(),
        workloads.order_sign(),
        workloads.large(500),
        workloads.large(2000),
    ):
        b.add_body(body)
    fhir = start_fhir(b)
    fhir_name = None
    try:
        if fhir is not None:
            fhir_body = workloads.no_prefetch(fhir.base_url + "/fhir")
            b.add_body(fhir_body)
            fhir_name = fhir_body.name
            b.fhir_url = fhir.base_url + "/fhir"
            log("checking that the FHIR server answers the prefetch batch")
            fhirserver.time_queries(b.fhir_url, 1)
        phase_one_worker(
            b,
            ["patient-view-150k", "order-sign-stent-ivus", "patient-view-2000"],
            fhir_name,
        )
        phase_two_workers(b)
    finally:
        if fhir is not None:
            fhir.stop()
    failures = audit_failures(workdir)
    if failures:
        b.run.notes.append(
            f"{failures} audit writes failed during the run (`audit_write_failed` in the service log)."
        )
    log("micro-benchmarks")
    b.run.micro = micro.run_micro(
        list(b.bodies.values())[:4], seconds=cfg.micro_seconds
    )
    b.run.checks = evaluate(b.run, fhir_name)
    return b.run


def _ratio(run: Run, workload: str, workers: int, c: int) -> float:
    svc = run.find(workload, "service", workers, c)
    bare_point = run.find(workload, "bare", workers, c)
    if svc is None or bare_point is None or not bare_point.result.rps:
        return math.nan
    return svc.result.rps / bare_point.result.rps


def evaluate(run: Run, fhir_name: str | None) -> list[Check]:
    w1 = "patient-view-150k"
    checks = []
    for c in (1, 32):
        r = _ratio(run, w1, 1, c)
        checks.append(
            Check(
                f"(1) throughput >= 0.25x bare, 1 worker, c{c}", f"{r:.2f}x", r >= 0.25
            )
        )
    p = run.find(w1, "service", 1, 1)
    if p:
        checks.append(
            Check(
                "(1) p99 <= 10 ms at c1",
                f"{p.result.p99_ms:.2f} ms",
                p.result.p99_ms <= 10,
            )
        )
    # The 1-worker point measured beside the 2-worker one (phase two), else the first run's.
    one = run.find(w1, "service", 1, 32, TWO_WORKER_RUN) or run.find(
        w1, "service", 1, 32
    )
    two = run.find(w1, REUSE_PORT, 2, 32, TWO_WORKER_RUN)
    shared = run.find(w1, "service", 2, 32, TWO_WORKER_RUN)
    pair = run.find(w1, PAIR, 1, 32, TWO_WORKER_RUN)
    if one and two and one.result.rps:
        scale = two.result.rps / one.result.rps
        also = []
        if shared is not None:
            also.append(
                f"uvicorn's shared socket: {shared.result.rps / one.result.rps:.2f}x"
            )
        if pair is not None:
            also.append(
                f"two independent 1-worker services, {pair.connections // 2} connections each: "
                f"{pair.result.rps / one.result.rps:.2f}x, the machine's own scaling"
            )
        measured = f"{scale:.2f}x" + (f" ({'; '.join(also)})" if also else "")
        checks.append(
            Check(
                "(1) 2 workers (--reuse-port) >= 1.7x 1 worker at c32",
                measured,
                scale >= 1.7,
            )
        )
    big, small = (
        run.find("patient-view-2000", "service", 1, 1),
        run.find("patient-view-500", "service", 1, 1),
    )
    stalled = [q for q in (big, small) if q is not None and not q.result.requests]
    if stalled:
        names = ", ".join(q.workload for q in stalled)
        checks.append(
            Check(
                "(3) 2,000 resources: p50 <= 50 ms, linear cost",
                f"no request completed ({names})",
                False,
            )
        )
        big = small = None
    if big:
        checks.append(
            Check(
                "(3) 2,000 resources: p50 <= 50 ms",
                f"{big.result.p50_ms:.1f} ms",
                big.result.p50_ms <= 50,
            )
        )
    if big and small:
        growth = big.result.p50_ms / small.result.p50_ms
        checks.append(
            Check(
                "(3) 4x the resources -> <= 4.5x the time (p50, c1)",
                f"{growth:.2f}x (500 -> 2,000)",
                growth <= 4.5,
            )
        )
    checks.extend(_fhir_checks(run, fhir_name))
    checks.extend(_rss_and_ready_checks(run))
    return checks


def _fhir_checks(run: Run, fhir_name: str | None) -> list[Check]:
    hook = run.find(fhir_name, "service", 1, 1) if fhir_name else None
    if hook is not None and not hook.result.requests:
        return [
            Check(
                "(4) latency <= 1.3x the slowest single FHIR query",
                "no request completed",
                False,
            )
        ]
    if hook is None or not run.fhir:
        return [
            Check("(4) latency <= 1.3x the slowest single FHIR query", "not run", None)
        ]
    slowest = max(run.fhir, key=lambda q: q.p50_ms)
    ratio = hook.result.p50_ms / slowest.p50_ms
    return [
        Check(
            "(4) latency <= 1.3x the slowest single FHIR query (p50, c1)",
            f"{hook.result.p50_ms:.1f} ms vs {slowest.key} {slowest.p50_ms:.1f} ms = {ratio:.2f}x",
            ratio <= 1.3,
        )
    ]


def _rss_and_ready_checks(run: Run) -> list[Check]:
    checks = []
    if len(run.rss_series) >= 2:
        first, last = run.rss_series[0][1], run.rss_series[-1][1]
        growth = (last - first) / first
        checks.append(
            Check(
                f"RSS flat (< 10 % growth) over {run.rss_series[-1][0]:,} requests",
                f"{first:.1f} -> {last:.1f} MB ({growth:+.1%})",
                growth < 0.10,
            )
        )
    for name, seconds in run.ready.items():
        if name.startswith("service"):
            checks.append(
                Check(
                    f"service ready <= 2 s ({name})", f"{seconds:.2f} s", seconds <= 2.0
                )
            )
    return checks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="3 s per point, 2,000 requests for RSS"
    )
    parser.add_argument(
        "--seconds", type=float, help="seconds per measured point (default 10, quick 3)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results.md")
    parser.add_argument(
        "--no-fhir", action="store_true", help="skip workload 4 (the FHIR server)"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the temporary directory (logs, bodies)",
    )
    args = parser.parse_args(argv)
    cfg = Config(
        seconds=args.seconds or (3.0 if args.quick else 10.0),
        rss_requests=2_000 if args.quick else 10_000,
        fhir_repeats=20 if args.quick else 100,
        micro_seconds=0.3 if args.quick else 1.0,
        out=args.out,
        with_fhir=not args.no_fhir,
    )
    workdir = Path(tempfile.mkdtemp(prefix="iliac-bench-"))
    log(f"working directory {workdir}")
    try:
        run = run_all(cfg, workdir)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    cfg.out.write_text(report.render(run))
    log(f"wrote {cfg.out}")
    for c in run.checks:
        verdict = "n/a " if c.ok is None else ("PASS" if c.ok else "FAIL")
        log(f"{verdict}  {c.target}: {c.measured}")


if __name__ == "__main__":
    main()

"""wrk (Debian package) driven through post.lua; results parsed from the script's JSON line."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path

LUA = Path(__file__).with_name("post.lua")
# The line post.lua prints once its thread has stopped at the request limit.
LIMIT_REACHED = "WRK_LIMIT_REACHED"


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    non_2xx: int
    wrk_cpu_seconds: float
    # The latency distribution at every 0.1 % (p0.1 ... p99.9), for merging slices.
    quantiles_ms: tuple[float, ...] = ()

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def ensure_wrk() -> str:
    """Path of wrk; installs the Debian package when missing (needs root and apt)."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: apt-get install -y wrk", flush=True)  # noqa: T201
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed and could not be installed")
    return found


def wrk_version(wrk: str) -> str:
    out = subprocess.run(
        [wrk, "--version"], capture_output=True, text=True, check=False
    )
    return (out.stdout or out.stderr).splitlines()[0].split(" Copyright")[0].strip()


def run(
    wrk: str,
    url: str,
    body_file: Path,
    *,
    connections: int,
    seconds: float,
    max_requests: int = 0,
    timeout_seconds: float = 10.0,
) -> WrkResult:
    """One wrk run on one thread. `max_requests` > 0 stops after that many responses (or `seconds`)."""
    cmd = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_seconds:g}s",
        "--latency",
        "-s",
        str(LUA),
        url,
        "--",
        str(body_file),
        str(max_requests),
    ]
    # wrk's main thread sleeps the whole -d even after the script has stopped its thread at the limit (and then
    # counts the idle time into its duration): SIGINT wakes it, and it reports at once.
    stdout, stderr, cpu_seconds = _run_counting_cpu(
        cmd, timeout=seconds + 60, interrupt_on=LIMIT_REACHED if max_requests else None
    )
    line = next((ln for ln in stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{stdout}\n{stderr}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    lat = data["latency_us"]
    err = data["errors"]
    return WrkResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        errors=int(err["connect"] + err["read"] + err["write"] + err["timeout"]),
        non_2xx=int(err["status"]),
        wrk_cpu_seconds=cpu_seconds,
        quantiles_ms=tuple(q / 1000 for q in data.get("quantiles_us", ())),
    )


def _run_counting_cpu(
    cmd: list[str], *, timeout: float, interrupt_on: str | None = None
) -> tuple[str, str, float]:
    """Run `cmd` to its end; returns its stdout, stderr and the CPU seconds of that process alone.

    The CPU comes from wait4(2) on the child itself, not from a difference of RUSAGE_CHILDREN, which also counts
    any other child reaped meanwhile (two wrk runs at once would bill each other's CPU). When the child prints a
    line equal to `interrupt_on`, it is sent SIGINT (and still awaited to its end).
    """
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        # Signals go through a pidfd: it names this child even once reaped (then ESRCH), never a reused pid.
        pidfd = os.pidfd_open(proc.pid)
        lines: list[bytes] = []
        reader = threading.Thread(
            target=_read_lines, args=(proc, pidfd, lines, interrupt_on), daemon=True
        )
        reader.start()
        timer = threading.Timer(timeout, _signal, (pidfd, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
            timer.join()
            reader.join()
            os.close(pidfd)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        err.seek(0)
        stdout, stderr = b"".join(lines).decode(), err.read().decode()
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, stdout, stderr)
    return stdout, stderr, usage.ru_utime + usage.ru_stime


def _read_lines(
    proc: subprocess.Popen[bytes],
    pidfd: int,
    lines: list[bytes],
    interrupt_on: str | None,
) -> None:
    """Collects the child's stdout to its end; sends SIGINT once on the line `interrupt_on` (post.lua prints it
    per wrk thread: run() starts wrk with one)."""
    assert proc.stdout is not None
    marker = None if interrupt_on is None else interrupt_on.encode() + b"\n"
    with proc.stdout:
        for line in proc.stdout:
            lines.append(line)
            if line == marker:
                marker = None
                _signal(pidfd, signal.SIGINT)


def _signal(pidfd: int, sig: signal.Signals) -> None:
    # Not proc.send_signal or proc.kill: they poll, and could reap the child before wait4 sees its usage.
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(pidfd, sig)


def concurrent(parts: list[WrkResult]) -> WrkResult:
    """One result from wrk runs that loaded different servers over the same seconds: counts add up, the time is
    the longest run's (not the sum, as for slices taken one after another), latencies pool as in `merge`."""
    merged = merge(parts)
    return replace(merged, seconds=max(p.seconds for p in parts))


def merge(parts: list[WrkResult]) -> WrkResult:
    """One result from slices of one point: counts and times add up, latency quantiles come from the slices'
    distributions pooled by their request counts (each slice's 999 quantiles stand for equal shares of it)."""
    if len(parts) == 1:
        return parts[0]
    pooled = sorted(
        (q, part.requests / len(part.quantiles_ms))
        for part in parts
        if part.requests and part.quantiles_ms
        for q in part.quantiles_ms
    )
    total = sum(weight for _, weight in pooled)

    def quantile(p: float) -> float:
        if not pooled:
            return math.nan
        seen = 0.0
        for value, weight in pooled:
            seen += weight
            if seen >= p * total:
                return value
        return pooled[-1][0]

    return WrkResult(
        requests=sum(p.requests for p in parts),
        seconds=sum(p.seconds for p in parts),
        p50_ms=quantile(0.50),
        p90_ms=quantile(0.90),
        p99_ms=quantile(0.99),
        max_ms=max(p.max_ms for p in parts),
        errors=sum(p.errors for p in parts),
        non_2xx=sum(p.non_2xx for p in parts),
        wrk_cpu_seconds=sum(p.wrk_cpu_seconds for p in parts),
        quantiles_ms=tuple(quantile(i / 1000) for i in range(1, 1000)),
    )

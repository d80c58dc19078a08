"""Server processes under test: start, wait for readiness, CPU time and RSS of the whole process tree."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Field 4 (ppid) follows the parenthesised command name, which may itself hold spaces.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (uvicorn's supervisor and its workers)."""
    children = _children_map()
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the live processes, from /proc/<pid>/stat (fields 14 and 15)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat), to tell how busy others kept the box."""
    fields = [
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def rss_kb(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
    except OSError:
        return 0


@dataclass
class Server:
    """A server process started by the benchmark; stop() ends it and its workers."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    ready_seconds: float = 0.0
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(
        self, *, health_path: str = "/healthz", timeout: float = 60.0, workers: int = 1
    ) -> None:
        self._log = self.log_path.open("ab")
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            self.cmd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}; see {self.log_path}"
                )
            if _answers(self.base_url + health_path) and len(self.workers()) >= workers:
                self.ready_seconds = time.perf_counter() - started
                return
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(
            f"{self.name} not ready after {timeout:g} s; see {self.log_path}"
        )

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid) if self.proc else []

    def workers(self) -> list[int]:
        """The processes that serve requests: the leaves of the tree (the single process when 1 worker)."""
        if self.proc is None:
            return []
        children = _children_map()
        tree = process_tree(self.proc.pid)
        leaves = [p for p in tree if not children.get(p) and p != self.proc.pid]
        return leaves or [self.proc.pid]

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pids())

    def rss_kb(self) -> int:
        return sum(rss_kb(pid) for pid in self.pids())

    def wait_idle(self, *, timeout: float = 60.0, window: float = 0.5) -> float:
        """Wait until the server uses < 10 % of a core over `window` s: requests wrk gave up on (its
        timeout) are still being served and would be billed to the next point. Returns seconds waited."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            before = self.cpu_seconds()
            time.sleep(window)
            if self.cpu_seconds() - before < 0.1 * window:
                break
        return time.perf_counter() - started

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

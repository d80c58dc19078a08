"""`iliac-cds serve --workers N --reuse-port`: one listening socket per worker, balanced by the kernel.

By default uvicorn's workers share the supervisor's one listening socket and race to accept from it. A burst
of new connections (a client opening its keep-alive pool) then splits unevenly: wrk's 32 connections over 2
workers, in 13 runs, from 15:17 to 0:32, 9 of them beyond 22:10; the worker with few connections idles while
the other queues (2 workers served 1.31x one worker where two independent services served 1.71x). With
SO_REUSEPORT each worker has a listening socket of its own on the same address and Linux spreads new
connections over them by a hash of the client's address and port: in 12 runs, from 16:16 to 25:7, 10 of them
within 20:12 (2 workers: 1.73x one worker, the shared socket 1.48x, side by side in one `make bench`).

The cost: a worker that stops (a restart on HUP, a scale-down on TTOU, a crash) resets the connections still
waiting in its own accept queue, where a shared socket leaves them to the other workers, unless the kernel
migrates them (`net.ipv4.tcp_migrate_req = 1`, Linux 5.14+). Hence opt-in, with a warning at start when the
migration is off.

How: the supervisor binds the address once with SO_REUSEPORT (so a port in use fails before any fork, and the
port stays held between restarts) but never listens on it; every worker, right after its fork, binds a socket
of its own in the same group and puts it in place of the inherited one (same file descriptor number), so
uvicorn listens on that. A worker joins the group only when its server starts listening, after its startup.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path
from typing import Any

MIGRATE_SYSCTL = Path("/proc/sys/net/ipv4/tcp_migrate_req")


class ReusePortError(RuntimeError):
    """The platform or the address cannot have a listening socket per worker."""


def supported() -> bool:
    return sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def bind(host: str, port: int) -> socket.socket:
    """The supervisor's socket: bound with SO_REUSEPORT, never listened on, inherited by the workers."""
    if not supported():
        raise ReusePortError(
            "--reuse-port needs Linux (SO_REUSEPORT spreads connections over sockets only there)"
        )
    try:
        return _bound(_family(host), (host, port))
    except OSError as exc:
        raise ReusePortError(f"cannot bind {host}:{port}: {exc.strerror}") from None


def rebind_after_fork(shared: socket.socket) -> None:
    """Have every process forked from this one replace `shared` with a socket of its own, same address."""
    supervisor = os.getpid()
    address = shared.getsockname()

    def rebind() -> None:
        if os.getppid() != supervisor or shared.fileno() < 0:
            return  # not a worker (forked by a worker), or the supervisor closed the socket
        own = _bound(shared.family, address)
        try:
            os.dup2(own.fileno(), shared.fileno())
        finally:
            own.close()

    os.register_at_fork(after_in_child=rebind)


def run(config: Any, shared: socket.socket) -> None:
    """Run uvicorn's supervisor (signals, health pings, restarts, as `uvicorn.run`) over per-worker sockets."""
    from uvicorn.supervisors import Multiprocess

    rebind_after_fork(shared)
    # As uvicorn.run: an interrupt reaching here has already stopped the workers.
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[shared]).run()


def migration_off() -> bool:
    """True when the kernel resets (rather than hands over) a stopping worker's queued connections."""
    try:
        return MIGRATE_SYSCTL.read_text().strip() == "0"
    except OSError:
        return False  # not readable here: say nothing rather than guess


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bound(family: socket.AddressFamily, address: Any) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


__all__ = [
    "MIGRATE_SYSCTL",
    "ReusePortError",
    "bind",
    "migration_off",
    "rebind_after_fork",
    "run",
    "supported",
]

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

How: the supervisor binds the address once with SO_REUSEPORT but never listens on it; every worker, right
after its fork, binds a socket of its own in the same group and puts it in place of the inherited one (same
file descriptor number), so uvicorn listens on that. A worker joins the group only when its server starts
listening, after its startup. A worker that cannot bind its own socket exits at once as a failed start (it
must never listen on the supervisor's socket, which outlives it). Before binding, a probe without SO_REUSEPORT
checks that nothing listens on the port yet: SO_REUSEPORT alone would let a second instance of the same user
join the group and share the traffic. While no worker listens (start-up, all of them restarting), connections
are refused, not queued.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from pathlib import Path
from typing import Any

MIGRATE_SYSCTL = Path("/proc/sys/net/ipv4/tcp_migrate_req")
# uvicorn's exit status for a worker that failed to start: the supervisor stops rather than respawning it.
STARTUP_FAILURE = 3


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
    family = _family(host)
    shown = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    try:
        # The probe conflicts with any socket listening there, a reuse-port group's included; it stays bound
        # until the real socket is, so that nothing takes the port in between.
        with _bound(family, (host, port), reuse_port=False) as probe:
            return _bound(family, probe.getsockname())
    except OSError as exc:
        raise ReusePortError(f"cannot bind {shown}: {exc.strerror}") from None


def rebind_after_fork(shared: socket.socket) -> None:
    """Have every process forked from this one replace `shared` with a socket of its own, same address."""
    supervisor = os.getpid()
    address = shared.getsockname()

    def rebind() -> None:
        if os.getppid() != supervisor or shared.fileno() < 0:
            return  # not a worker (forked by a worker), or the supervisor closed the socket
        try:
            own = _bound(shared.family, address)
            try:
                os.dup2(own.fileno(), shared.fileno())
            finally:
                own.close()
        except BaseException as exc:
            # An exception in an at-fork hook is only printed: exit, or this worker would listen on the
            # supervisor's socket. os._exit: nothing of the supervisor's may run on in this process.
            os.write(2, f"iliac-cds worker: cannot bind its socket: {exc}\n".encode())
            os._exit(STARTUP_FAILURE)

    os.register_at_fork(after_in_child=rebind)


def run(config: Any, shared: socket.socket) -> None:
    """Run uvicorn's supervisor (signals, health pings, restarts, as `uvicorn.run`) over per-worker sockets."""
    from uvicorn.supervisors import Multiprocess

    rebind_after_fork(shared)
    # As uvicorn.run: an interrupt reaching here has already stopped the workers.
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[shared]).run()


def migration_off() -> bool:
    """True unless the kernel hands a stopping worker's queued connections to the others (the sysctl is 1; a
    kernel without it, before 5.14, always resets them)."""
    try:
        return MIGRATE_SYSCTL.read_text().strip() != "1"
    except OSError:
        return True


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bound(
    family: socket.AddressFamily, address: Any, *, reuse_port: bool = True
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


__all__ = [
    "MIGRATE_SYSCTL",
    "STARTUP_FAILURE",
    "ReusePortError",
    "bind",
    "migration_off",
    "rebind_after_fork",
    "run",
    "supported",
]

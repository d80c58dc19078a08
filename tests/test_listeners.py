"""app.listeners: the per-worker SO_REUSEPORT sockets of `serve --reuse-port`."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from app import listeners

pytestmark = pytest.mark.skipif(not listeners.supported(), reason="Linux only")
REPO = Path(__file__).resolve().parents[1]

# Run in a fresh interpreter: the at-fork hook stays registered in the process that sets it up.
FORK = """
import os, sys
from app import listeners
shared = listeners.bind("127.0.0.1", 0)
address = shared.getsockname()
listeners.rebind_after_fork(shared)
if sys.argv[1] == "failing":
    def refuse(*_args, **_kwargs):
        raise OSError(98, "Address already in use")
    listeners._bound = refuse
pid = os.fork()
if pid == 0:
    shared.listen()
    print(os.fstat(shared.fileno()).st_ino, shared.getsockname() == address, flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print(os.fstat(shared.fileno()).st_ino, os.waitstatus_to_exitcode(status), flush=True)
"""


def run_fork(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", FORK, mode],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_forked_worker_listens_on_a_socket_of_its_own() -> None:
    done = run_fork("binding")
    assert done.returncode == 0, done.stderr
    child, parent = done.stdout.splitlines()
    child_inode, same_address = child.split()
    parent_inode, exit_code = parent.split()
    assert same_address == "True"
    assert child_inode != parent_inode
    assert exit_code == "0"


def test_a_worker_that_cannot_bind_its_own_socket_exits_as_a_failed_start() -> None:
    done = run_fork("failing")
    assert done.returncode == 0, done.stderr
    # The child never reached its listen(): it exited in the fork hook, with uvicorn's start-up failure.
    [parent] = done.stdout.splitlines()
    assert parent.split()[1] == str(listeners.STARTUP_FAILURE)
    assert "cannot bind its socket" in done.stderr


def test_the_supervisor_socket_holds_the_port_without_listening() -> None:
    shared = listeners.bind("127.0.0.1", 0)
    try:
        with socket.socket() as probe:
            assert (
                probe.connect_ex(shared.getsockname()) != 0
            )  # refused: nobody listens
        # But a socket outside the group cannot take it.
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.bind(shared.getsockname())
    finally:
        shared.close()


def test_bind_shows_an_ipv6_address_in_brackets() -> None:
    # (IPv4, a port in use, another instance's group: tests/test_cli.py, through `serve`.)
    with socket.socket(socket.AF_INET6) as taken:
        try:
            taken.bind(("::1", 0))
            taken.listen()
            port = taken.getsockname()[1]
        except OSError:
            port = 8000  # no IPv6 loopback here: binding it fails all the same
        with pytest.raises(listeners.ReusePortError, match=rf"\[::1\]:{port}"):
            listeners.bind("::1", port)


@pytest.mark.parametrize(
    ("content", "off"), [("0\n", True), ("1\n", False), (None, True)]
)
def test_migration_off_reads_the_sysctl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, off: bool
) -> None:
    sysctl = tmp_path / "tcp_migrate_req"
    if content is not None:  # else a kernel before 5.14: no such sysctl, always reset
        sysctl.write_text(content)
    monkeypatch.setattr(listeners, "MIGRATE_SYSCTL", sysctl)
    assert listeners.migration_off() is off

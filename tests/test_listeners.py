"""app.listeners: the per-worker SO_REUSEPORT sockets of `serve --reuse-port`."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from app import listeners

pytestmark = pytest.mark.skipif(not listeners.supported(), reason="Linux only")


def test_a_forked_child_listens_on_a_socket_of_its_own() -> None:
    shared = listeners.bind("127.0.0.1", 0)
    address = shared.getsockname()
    listeners.rebind_after_fork(shared)
    read, write = os.pipe()
    pid = os.fork()
    if (
        pid == 0
    ):  # the child: report whether its fd now holds a different socket, bound alike
        try:
            shared.listen()
            same_address = shared.getsockname() == address
            os.write(
                write, f"{os.fstat(shared.fileno()).st_ino} {same_address}".encode()
            )
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as said:
        inode, same_address = said.read().split()
    os.waitpid(pid, 0)
    try:
        assert same_address == "True"
        assert int(inode) != os.fstat(shared.fileno()).st_ino
    finally:
        shared.close()


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


def test_bind_names_the_address_it_could_not_take() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(listeners.ReusePortError, match=f"127.0.0.1:{port}"):
            listeners.bind("127.0.0.1", port)


@pytest.mark.parametrize(
    ("content", "off"), [("0\n", True), ("1\n", False), (None, False)]
)
def test_migration_off_reads_the_sysctl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, off: bool
) -> None:
    sysctl = tmp_path / "tcp_migrate_req"
    if content is not None:
        sysctl.write_text(content)
    monkeypatch.setattr(listeners, "MIGRATE_SYSCTL", sysctl)
    assert listeners.migration_off() is off

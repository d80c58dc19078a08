"""The iliac-cds command line: check, export-openapi, migrate, clients add/list/remove, serve."""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner, Result

from app.catalog.loader import CatalogError, load_catalog
from app.cli import ACCEPT_ENV, app, local_base_url
from app.config import get_settings

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
OPENAPI = REPO / "openapi" / "openapi.json"


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv(
        "ILIAC_CDS_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    )
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def serve_leaves_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An in-process `serve` sets ILIAC_CDS_BIND_HOST and ILIAC_CDS_PUBLIC_BASE_URL for its workers; undone after
    each test, so that no test sees another's."""
    for name in ("ILIAC_CDS_BIND_HOST", "ILIAC_CDS_PUBLIC_BASE_URL"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
        if not os.environ[name]:
            monkeypatch.delenv(name)


@pytest.fixture
def serve_env(sqlite_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sqlite_env for an in-process `serve`: auth disabled, and gc.freeze stubbed so that this test process's heap
    stays collectable."""
    monkeypatch.setenv("ILIAC_CDS_AUTH_MODE", "disabled")
    monkeypatch.setattr(gc, "freeze", lambda: None)
    return sqlite_env


def invoke_with_fresh_settings(args: list[str]) -> Result:
    """Run the CLI with settings read anew from the environment this test set."""
    get_settings.cache_clear()
    try:
        return runner.invoke(app, args)
    finally:
        get_settings.cache_clear()


def test_check_prints_what_was_loaded() -> None:
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    assert "cards" in result.output.lower()


def test_check_names_a_broken_card_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cards = tmp_path / "cards"
    cards.mkdir()
    for source in (REPO / "cards").glob("*.yaml"):
        (cards / source.name).write_text(source.read_text())
    broken = sorted(cards.glob("R0*.yaml"))[0]
    broken.write_text("rule: [unterminated\n")
    monkeypatch.setenv("ILIAC_CDS_CARDS_DIR", str(cards))
    result = invoke_with_fresh_settings(["check"])
    assert result.exit_code == 1
    assert broken.name in result.output


def test_export_openapi_writes_the_committed_document(tmp_path: Path) -> None:
    out = tmp_path / "openapi.json"
    result = runner.invoke(app, ["export-openapi", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == json.loads(OPENAPI.read_text())


def test_clients_add_list_remove(sqlite_env: Path) -> None:
    jwks = sqlite_env / "jwks.json"
    key = ECKey.generate_key("P-384", parameters={"kid": "k1"})
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    added = runner.invoke(
        app,
        [
            "clients",
            "add",
            "--issuer",
            "https://ehr.example.org",
            "--jwks-file",
            str(jwks),
            "--fhir-server",
            "https://ehr.example.org/fhir",
        ],
    )
    assert added.exit_code == 0, added.output
    listed = runner.invoke(app, ["clients", "list", "--json"])
    assert json.loads(listed.output) == [
        {
            "issuer": "https://ehr.example.org",
            "jwksUrl": None,
            "fhirServers": ["https://ehr.example.org/fhir"],
            "jkuAllowlist": [],
            "tenant": None,
        }
    ]
    removed = runner.invoke(app, ["clients", "remove", "https://ehr.example.org"])
    assert removed.exit_code == 0, removed.output
    again = runner.invoke(app, ["clients", "remove", "https://ehr.example.org"])
    assert again.exit_code == 1


@pytest.mark.usefixtures("sqlite_env")
def test_clients_add_refuses_plain_http_keys() -> None:
    result = runner.invoke(
        app,
        [
            "clients",
            "add",
            "--issuer",
            "x",
            "--jwks-url",
            "http://keys.example.org/jwks",
        ],
    )
    assert result.exit_code == 1
    assert "https" in result.output


def test_migrate(sqlite_env: Path) -> None:
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 0, result.output
    assert (sqlite_env / "cli.db").exists()


def copy_cards(tmp_path: Path) -> Path:
    cards = tmp_path / "cards"
    cards.mkdir()
    for source in (REPO / "cards").glob("*.yaml"):
        (cards / source.name).write_text(source.read_text())
    return cards


def test_serve_refuses_a_broken_catalog_before_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cards = copy_cards(tmp_path)
    broken = sorted(cards.glob("R0*.yaml"))[0]
    broken.write_text("rule: [unterminated\n")
    monkeypatch.setenv("ILIAC_CDS_CARDS_DIR", str(cards))
    monkeypatch.setenv("ILIAC_CDS_AUTH_MODE", "disabled")
    served: list[dict[str, Any]] = []
    monkeypatch.setattr("uvicorn.run", lambda *_, **options: served.append(options))
    result = invoke_with_fresh_settings(["serve", "--workers", "2", "--skip-migrate"])
    assert result.exit_code == 1
    assert broken.name in result.output
    assert served == []
    assert gc.isenabled()


def test_serve_refuses_a_broken_catalog_before_touching_the_database(
    sqlite_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cards = copy_cards(tmp_path)
    sorted(cards.glob("R0*.yaml"))[0].write_text("rule: [unterminated\n")
    monkeypatch.setenv("ILIAC_CDS_CARDS_DIR", str(cards))
    monkeypatch.setenv("ILIAC_CDS_AUTH_MODE", "disabled")
    monkeypatch.setattr("uvicorn.run", lambda *_, **__: pytest.fail("served"))
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 1
    assert not (sqlite_env / "cli.db").exists()  # not migrated: checked first


@pytest.mark.usefixtures("sqlite_env")
def test_serve_stops_with_the_reason_when_the_migration_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unwritable(*_: object, **__: object) -> None:
        raise OperationalError(
            "CREATE TABLE alembic_version",
            {},
            Exception("unable to open database file"),
        )

    monkeypatch.setenv("ILIAC_CDS_AUTH_MODE", "disabled")
    monkeypatch.setattr("app.db.migrate.upgrade_database", unwritable)
    monkeypatch.setattr("uvicorn.run", lambda *_, **__: pytest.fail("served"))
    for command in (["serve"], ["migrate"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, command
        said = " ".join(result.output.split())
        assert "database migration failed: OperationalError" in said, command
        assert "unable to open database file" in said, command


def test_a_failed_migration_never_shows_the_database_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "postgresql+asyncpg://cds:s3cret-pw@db.example/cds"
    monkeypatch.setenv("ILIAC_CDS_DATABASE_URL", url)

    def refused(database_url: str, **_: object) -> None:
        raise ConnectionError(f"could not connect to {database_url}")

    monkeypatch.setattr("app.db.migrate.upgrade_database", refused)
    result = invoke_with_fresh_settings(["migrate"])
    assert result.exit_code == 1
    said = " ".join(result.output.split())  # the console wraps long lines
    assert "could not connect to postgresql+asyncpg://cds:***@db.example/cds" in said
    assert "s3cret-pw" not in "".join(result.output.split())


def test_serve_checks_then_runs_uvicorn_with_collection_on(
    serve_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[tuple[str, bool, dict[str, Any]]] = []
    monkeypatch.setattr(
        "uvicorn.run",
        lambda target, **options: served.append((target, gc.isenabled(), options)),
    )
    result = runner.invoke(app, ["serve", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert (serve_env / "cli.db").exists()  # migrated first
    [(target, collecting, options)] = served
    assert target == "app.main:create_app"
    assert collecting
    assert options["factory"] is True
    assert (options["port"], options["workers"]) == (8123, 1)
    assert options["ws"] == "none"  # no WebSocket route: no WebSocket protocol loaded


@pytest.mark.usefixtures("serve_env")
@pytest.mark.parametrize(
    ("configured", "public"),
    [
        (None, "http://127.0.0.1:8123"),
        ("https://cds.hospital.example", "https://cds.hospital.example"),
    ],
)
def test_serve_uses_the_configured_public_url_else_where_it_listens(
    monkeypatch: pytest.MonkeyPatch, configured: str | None, public: str
) -> None:
    if configured is not None:
        monkeypatch.setenv("ILIAC_CDS_PUBLIC_BASE_URL", configured)
    monkeypatch.setattr("uvicorn.run", lambda *_, **__: None)
    result = invoke_with_fresh_settings(["serve", "--skip-migrate", "--port", "8123"])
    assert result.exit_code == 0, result.output
    # The JWT audience and the cards' links: the workers read it from the environment.
    assert os.environ["ILIAC_CDS_PUBLIC_BASE_URL"] == public
    assert get_settings().public_base_url == public
    assert f"public URL {public}" in result.output


@pytest.mark.usefixtures("serve_env")
def test_serve_on_port_0_says_the_public_url_must_be_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("uvicorn.run", lambda *_, **__: None)
    result = runner.invoke(app, ["serve", "--skip-migrate", "--port", "0"])
    assert result.exit_code == 0, result.output
    assert "ILIAC_CDS_PUBLIC_BASE_URL" not in os.environ
    assert "with --port 0 the system picks the port" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [
        ("127.0.0.1", 8000, "http://127.0.0.1:8000"),
        ("0.0.0.0", 9000, "http://127.0.0.1:9000"),
        ("::", 9000, "http://[::1]:9000"),
        ("::1", 9001, "http://[::1]:9001"),
        ("cds.internal", 8443, "http://cds.internal:8443"),
        ("127.0.0.1", 0, None),
    ],
)
def test_the_local_base_url_of_a_bind(host: str, port: int, url: str | None) -> None:
    assert local_base_url(host, port) == url


def test_the_catalog_is_reused_only_while_its_files_are_unchanged(
    tmp_path: Path,
) -> None:
    cards = copy_cards(tmp_path)
    settings = get_settings()

    def load() -> object:
        return load_catalog(
            cards_dir=cards,
            mappings_dir=settings.mappings_dir,
            local_system=settings.local_code_system,
        )

    first = load()
    assert load() is first
    card = sorted(cards.glob("R0*.yaml"))[0]
    card.write_text(card.read_text() + "\n# reviewed\n")
    assert load() is not first
    card.write_text("rule: [unterminated\n")
    with pytest.raises(CatalogError, match=card.name):
        load()
    card.unlink()
    with pytest.raises(CatalogError):
        load()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, NotADirectoryError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def caught_signals(pid: int) -> set[int]:
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(status.split("SigCgt:")[1].split()[0], 16)
    return {sig for sig in range(1, 65) if mask & (1 << (sig - 1))}


def start_serve(tmp_path: Path, port: int, *options: str) -> subprocess.Popen[bytes]:
    """`iliac-cds serve` in a process of its own, on SQLite under `tmp_path`, quiet."""
    env = {
        **os.environ,
        "ILIAC_CDS_AUTH_MODE": "disabled",
        "ILIAC_CDS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/serve.db",
        "ILIAC_CDS_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), *options],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_serve_with_two_workers_forks_them_and_stops_gracefully(
    tmp_path: Path,
) -> None:
    port = free_port()
    process = start_serve(tmp_path, port, "--workers", "2")
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        assert process.poll() is None
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
        workers = children(process.pid)
        # It forked from a single thread (the supervisor starts none; migrations joined theirs).
        assert "Threads:\t1\n" in Path(f"/proc/{process.pid}/status").read_text()
        assert (
            len(workers) == 2
        )  # no multiprocessing helper (resource tracker) beside them
        parent_cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        for worker in workers:
            # Forked, not spawned: a spawned worker runs `python -c 'from multiprocessing.spawn ...'`.
            assert Path(f"/proc/{worker}/cmdline").read_bytes() == parent_cmdline
            # The worker's own server catches INT and TERM; the supervisor's HUP/TTIN/... handlers
            # did not leak into it.
            caught = caught_signals(worker)
            assert {signal.SIGINT, signal.SIGTERM} <= caught
            assert not caught & {
                signal.SIGHUP,
                signal.SIGTTIN,
                signal.SIGTTOU,
                signal.SIGUSR1,
            }
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert not [w for w in workers if Path(f"/proc/{w}").exists()]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.usefixtures("serve_env")
def test_serve_with_workers_has_them_accept_one_connection_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("app.cli._fork_workers", lambda _options: None)
    seen: list[str | None] = []
    monkeypatch.setattr(
        "uvicorn.run", lambda *_, **__: seen.append(os.environ.get(ACCEPT_ENV))
    )
    monkeypatch.delenv(ACCEPT_ENV, raising=False)
    assert runner.invoke(app, ["serve", "--skip-migrate"]).exit_code == 0
    assert (
        runner.invoke(app, ["serve", "--skip-migrate", "--workers", "2"]).exit_code == 0
    )
    # An operator's own choice is kept.
    monkeypatch.setenv(ACCEPT_ENV, "0")
    assert (
        runner.invoke(app, ["serve", "--skip-migrate", "--workers", "2"]).exit_code == 0
    )
    assert seen == [None, "1", "0"]


def listening_sockets(port: int) -> set[str]:
    """Inodes of the IPv4 sockets listening on `port` (state 0A in /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            found.add(fields[9])
    return found


def socket_inodes(pid: int) -> set[str]:
    found: set[str] = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except FileNotFoundError:
        return found  # exited meanwhile
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[len("socket:[") : -1])
    return found


def wait_for_workers(
    process: subprocess.Popen[bytes],
    port: int,
    *,
    not_in: frozenset[int] = frozenset(),
) -> list[int]:
    """The supervisor's two workers once both listen on `port` (and none of them is in `not_in`)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        workers = children(process.pid)
        listening = listening_sockets(port)
        if (
            len(workers) == 2
            and not set(workers) & not_in
            and all(socket_inodes(w) & listening for w in workers)
            and len(listening) == 2
        ):
            return workers
        time.sleep(0.1)
    raise AssertionError(f"no two listening workers (exit code {process.poll()})")


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc")
def test_serve_with_reuse_port_gives_each_worker_its_own_listening_socket(
    tmp_path: Path,
) -> None:
    port = free_port()
    process = start_serve(tmp_path, port, "--workers", "2", "--reuse-port")
    try:
        workers = wait_for_workers(process, port)
        listening = listening_sockets(port)
        # One socket each, not the supervisor's (it holds the port bound but does not listen).
        owned = [socket_inodes(w) & listening for w in workers]
        assert owned[0]
        assert owned[1]
        assert not owned[0] & owned[1]
        assert not socket_inodes(process.pid) & listening
        base = f"http://127.0.0.1:{port}"
        for _ in range(4):
            with httpx.Client() as fresh:  # new connections, spread by the kernel
                assert fresh.get(f"{base}/healthz", timeout=5).status_code == 200
        # uvicorn's supervisor restarts the workers on HUP: the new ones bind sockets of their own too.
        process.send_signal(signal.SIGHUP)
        restarted = wait_for_workers(process, port, not_in=frozenset(workers))
        assert len(listening_sockets(port)) == 2
        assert httpx.get(f"{base}/readyz", timeout=5).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert not [w for w in restarted if Path(f"/proc/{w}").exists()]
        assert not listening_sockets(port)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# Also another instance's reuse-port worker (same user, SO_REUSEPORT, listening): joining its group would
# share its traffic.
@pytest.mark.parametrize("holder_reuses_port", [False, True])
def test_serve_with_reuse_port_refuses_a_port_in_use_before_migrating(
    sqlite_env: Path, monkeypatch: pytest.MonkeyPatch, holder_reuses_port: bool
) -> None:
    monkeypatch.setenv("ILIAC_CDS_AUTH_MODE", "disabled")
    monkeypatch.setattr("app.listeners.run", lambda *_: pytest.fail("served"))
    with socket.socket() as taken:
        if holder_reuses_port:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(
            app, ["serve", "--workers", "2", "--reuse-port", "--port", str(port)]
        )
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert f"cannot bind 127.0.0.1:{port}: Address already in use" in said
    assert not (sqlite_env / "cli.db").exists()


@pytest.mark.usefixtures("sqlite_env")
def test_serve_with_reuse_port_refuses_a_platform_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ILIAC_CDS_AUTH_MODE", "disabled")
    monkeypatch.setattr("app.listeners.supported", lambda: False)
    monkeypatch.setattr("app.listeners.run", lambda *_: pytest.fail("served"))
    result = runner.invoke(
        app, ["serve", "--skip-migrate", "--workers", "2", "--reuse-port"]
    )
    assert result.exit_code == 1
    assert "--reuse-port needs Linux" in " ".join(result.output.split())


@pytest.mark.usefixtures("serve_env")
@pytest.mark.parametrize(
    ("sysctl", "noted"), [("0\n", True), ("1\n", False), (None, True)]
)
def test_serve_with_reuse_port_says_when_queued_connections_would_be_reset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sysctl: str | None, noted: bool
) -> None:
    monkeypatch.setattr("app.cli._fork_workers", lambda _options: True)
    monkeypatch.delenv(ACCEPT_ENV, raising=False)
    if sysctl is not None:  # else a kernel before 5.14: no such sysctl, always reset
        (tmp_path / "tcp_migrate_req").write_text(sysctl)
    monkeypatch.setattr("app.listeners.MIGRATE_SYSCTL", tmp_path / "tcp_migrate_req")
    served: list[tuple[Any, socket.socket, int]] = []

    def run(config: Any, shared: socket.socket) -> None:
        reuse = shared.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        served.append((config, shared, reuse))

    monkeypatch.setattr("app.listeners.run", run)
    monkeypatch.setattr("uvicorn.run", lambda *_, **__: pytest.fail("shared socket"))
    result = runner.invoke(
        app,
        ["serve", "--skip-migrate", "--workers", "2", "--reuse-port", "--port", "0"],
    )
    assert result.exit_code == 0, result.output
    assert ("tcp_migrate_req is not 1" in " ".join(result.output.split())) is noted
    [(config, shared, reuse)] = served
    assert (config.app, config.factory, config.workers) == (
        "app.main:create_app",
        True,
        2,
    )
    assert reuse == 1
    assert shared.fileno() == -1  # closed once serving ended
    # --port 0: the port the system gave the workers' address is the one announced and used for JWTs.
    port = int(os.environ["ILIAC_CDS_PUBLIC_BASE_URL"].rsplit(":", 1)[1])
    assert port > 0
    assert f"serving on http://127.0.0.1:{port}" in result.output
    assert "--port 0" not in result.output
    # Each worker has a socket of its own: the one-accept-at-a-time setting is for a shared one.
    assert ACCEPT_ENV not in os.environ


@pytest.mark.usefixtures("serve_env")
def test_serve_with_reuse_port_refuses_workers_that_would_not_be_forked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A uvicorn that spawns its workers: they would inherit the supervisor's socket and share it.
    monkeypatch.setattr("app.cli._fork_workers", lambda _options: False)
    monkeypatch.setattr("app.listeners.run", lambda *_: pytest.fail("served"))
    result = runner.invoke(
        app,
        ["serve", "--skip-migrate", "--workers", "2", "--reuse-port", "--port", "0"],
    )
    assert result.exit_code == 1
    assert "--reuse-port needs forked workers" in " ".join(result.output.split())


@pytest.mark.usefixtures("serve_env")
def test_serve_says_reuse_port_does_nothing_with_one_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: list[dict[str, Any]] = []
    monkeypatch.setattr("uvicorn.run", lambda *_, **options: served.append(options))
    monkeypatch.setattr(
        "app.listeners.run", lambda *_: pytest.fail("per-worker sockets")
    )
    result = runner.invoke(app, ["serve", "--skip-migrate", "--reuse-port"])
    assert result.exit_code == 0, result.output
    assert "--reuse-port has no effect with one worker" in result.output
    assert [options["workers"] for options in served] == [1]

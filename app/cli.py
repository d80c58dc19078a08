"""Command line: `iliac-cds serve | migrate | export-openapi | check | clients ...`."""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession

from app import listeners
from app.config import REPO_ROOT, AuthMode, Settings, get_settings
from app.sandbox import sandbox_app

app = typer.Typer(
    help="iliac-cds: CDS Hooks 2.0 service for iliofemoral venous obstruction workup.",
    no_args_is_help=True,
)
clients_app = typer.Typer(
    help="Register the EHR clients allowed to call the service.", no_args_is_help=True
)
app.add_typer(clients_app, name="clients")
app.add_typer(sandbox_app, name="sandbox")
console = Console()
err_console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=1)


@app.command()
def migrate() -> None:
    """Apply the Alembic migrations to the configured database (ILIAC_CDS_DATABASE_URL)."""
    _upgrade(get_settings())
    console.print("database is at the latest revision")


def _upgrade(settings: Settings) -> None:
    """Migrate the configured database to head; a failure is one line naming it, not a traceback."""
    from app.db.migrate import upgrade_database

    try:
        upgrade_database(settings.database_url, schema=settings.database_schema)
    except Exception as exc:
        # An unreachable database, refused DDL, an unknown revision: the message names it, never the password.
        said = str(exc).replace(
            settings.database_url, _without_password(settings.database_url)
        )
        raise _fail(
            f"database migration failed: {type(exc).__name__}: {said}"
        ) from None


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<ILIAC_CDS_DATABASE_URL>"


@app.command()
def check() -> None:
    """Validate cards/ and fhir_mappings/ and print what was loaded."""
    from app.catalog.loader import CatalogError, load_catalog
    from app.workup.engine import check_registry

    settings = get_settings()
    try:
        catalog = load_catalog(
            cards_dir=settings.cards_dir,
            mappings_dir=settings.mappings_dir,
            local_system=settings.local_code_system,
        )
        check_registry(catalog)
    except (CatalogError, ValueError) as exc:
        raise _fail(str(exc)) from None
    table = Table(title="Loaded clinical catalogue")
    for column in ("file", "section", "items", "codes"):
        table.add_column(
            column, justify="right" if column in ("items", "codes") else "left"
        )
    for row in catalog.describe():
        table.add_row(row.path, row.section, str(row.items), str(row.codes))
    console.print(table)
    console.print("[green]cards/ and fhir_mappings/ are valid[/]")


@app.command("export-openapi")
def export_openapi(
    output: Annotated[
        Path, typer.Option(help="Where to write the document")
    ] = REPO_ROOT / "openapi" / "openapi.json",
) -> None:
    """Write the OpenAPI document of the service (openapi/openapi.json)."""
    from app.main import create_app

    document = create_app(Settings(auth_mode=AuthMode.DISABLED)).openapi()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    console.print(f"wrote {output}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
    skip_migrate: Annotated[
        bool, typer.Option(help="Do not apply migrations first")
    ] = False,
    reuse_port: Annotated[
        bool,
        typer.Option(
            help="With several workers (Linux): a listening socket per worker (SO_REUSEPORT), so that "
            "connections spread evenly over them; a stopping worker resets its queued connections unless "
            "sysctl net.ipv4.tcp_migrate_req=1"
        ),
    ] = False,
) -> None:
    """Apply migrations, check the data files, and serve the CDS service."""
    import uvicorn

    if reuse_port and workers == 1:
        console.print("[yellow]note: --reuse-port has no effect with one worker[/]")
    # Before the checks and migrations: a port in use or a platform without it fails at once.
    shared = _bind_per_worker(host, port) if reuse_port and workers > 1 else None
    if shared is not None:
        # --port 0: the port the system gave, for the banner and the public URL.
        port = shared.getsockname()[1]
    with contextlib.ExitStack() as cleanup:
        if shared is not None:
            cleanup.enter_context(contextlib.closing(shared))
        # Everything up to serving allocates long-lived objects (modules, classes, the catalogue): collecting
        # meanwhile is wasted time (about 11 % of the imports, measured). What exists when serving starts is
        # frozen out of later collections: the workers' collections stay short and leave it shared.
        with _collection_paused():
            options = _prepare_serve(host, port, workers, skip_migrate)
            if workers > 1:
                if shared is None:
                    _share_accepts(os.environ)
                if not _fork_workers(options) and shared is not None:
                    # Spawned workers inherit the supervisor's socket itself, without the rebind at fork.
                    raise _fail(
                        "--reuse-port needs forked workers, and this uvicorn spawns them"
                    )
            if shared is not None and listeners.migration_off():
                console.print(
                    "[bold yellow]note: net.ipv4.tcp_migrate_req is not 1: a worker that stops resets "
                    "the connections waiting in its queue (set it to 1 to hand them to the other workers)[/]"
                )
            gc.freeze()
        if shared is not None:
            listeners.run(uvicorn.Config(APP_FACTORY, **options), shared)
        else:
            uvicorn.run(APP_FACTORY, **options)


def local_base_url(host: str, port: int) -> str | None:
    """`http://host:port` as a client on this machine reaches `serve --host host --port port` (loopback for a
    wildcard host); None for port 0, whose number is known only once bound."""
    if port == 0:
        return None
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _bind_per_worker(host: str, port: int) -> socket.socket:
    try:
        return listeners.bind(host, port)
    except listeners.ReusePortError as exc:
        raise _fail(str(exc)) from None


@contextmanager
def _collection_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _prepare_serve(
    host: str, port: int, workers: int, skip_migrate: bool
) -> dict[str, Any]:
    """Import the service, run the startup checks and the migrations; return uvicorn's options."""
    from app.api.cds.services import SERVICES
    from app.catalog.loader import CatalogError, load_catalog
    from app.main import StartupError, check_startup_settings
    from app.workup.engine import check_registry

    # Workers read their settings from the environment, so the bind host travels that way.
    os.environ["ILIAC_CDS_BIND_HOST"] = host
    get_settings.cache_clear()
    settings = get_settings()
    derived = local_base_url(host, port)
    configured = "public_base_url" in settings.model_fields_set
    if not configured and derived is not None:
        # Not configured: the URL this serve answers at on this machine, so that the JWT audience and the cards'
        # links name the port it listens on rather than the default's 8000 (and the workers read it too).
        os.environ["ILIAC_CDS_PUBLIC_BASE_URL"] = derived
        get_settings.cache_clear()
        settings = get_settings()
    try:
        check_startup_settings(settings)
        catalog = load_catalog(
            cards_dir=settings.cards_dir,
            mappings_dir=settings.mappings_dir,
            local_system=settings.local_code_system,
        )
        check_registry(catalog)
    except (StartupError, CatalogError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if not skip_migrate:
        _upgrade(settings)
    base = f"http://{host}:{port}"
    console.print(
        f"iliac-cds serving on [bold]{base}[/] (discovery: {base}/cds-services)"
    )
    for service in SERVICES:
        console.print(
            f"  service [bold]{service.id}[/]  hook={service.hook}  POST {base}/cds-services/{service.id}"
        )
    console.print(
        f"  public URL [bold]{settings.public_base_url}[/] (JWT audience and card links; "
        "ILIAC_CDS_PUBLIC_BASE_URL)"
    )
    if derived is None and not configured:
        console.print(
            "[yellow]note: with --port 0 the system picks the port as uvicorn binds; set "
            "ILIAC_CDS_PUBLIC_BASE_URL to it, or EHR JWTs and card links name the one above[/]"
        )
    if settings.auth_mode is AuthMode.DISABLED:
        console.print(
            "[bold yellow]WARNING: EHR authentication is DISABLED (development only, loopback only)[/]"
        )
    if settings.now is not None:
        console.print(
            f"[bold yellow]Clock fixed by ILIAC_CDS_NOW at {settings.now.isoformat()}[/]"
        )
    return {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "log_level": "warning",
        "access_log": False,
        "proxy_headers": True,
        # No route is a WebSocket: an upgrade request is answered as plain HTTP, and uvicorn does not import
        # a WebSocket implementation at start (about 40 ms).
        "ws": "none",
    }


APP_FACTORY = "app.main:create_app"

# libuv (uvloop, the workers' event loop) reads this when a worker starts listening on the shared socket.
ACCEPT_ENV = "UV_TCP_SINGLE_ACCEPT"


def _share_accepts(environ: MutableMapping[str, str]) -> None:
    """Have each worker accept one connection at a time from the shared socket, unless the operator chose.

    By default a libuv worker that wakes on the listening socket accepts every pending connection before
    it yields, so a burst of new connections (a client opening its keep-alive pool, an EHR reconnecting
    after a network blip) lands on one worker while the others idle: measured with 2 workers and 32
    connections opened at once, about 30 of them on one worker. With one accept per wake-up (libuv then
    yields the CPU between accepts) the split ranged from 12:32 to 20:24, and throughput at 2 workers rose
    from 1.2x to 1.3-1.6x one worker in short runs (bench/README.md).
    """
    environ.setdefault(ACCEPT_ENV, "1")


def _fork_workers(options: dict[str, Any]) -> bool:
    """Have uvicorn's supervisor fork its workers from this process instead of spawning interpreters; False
    when this uvicorn makes its workers in a way this cannot change (they then spawn).

    A spawned worker imports the whole service again (about 1.5 s of CPU each, two at once on a
    2-core machine); a forked one starts with this process's modules and only builds its app and runs
    the lifespan (settings, catalogue, registry and client checks, its own DB engine and HTTP client).
    Everything else stays uvicorn's: its supervisor handles the signals (TERM/INT: graceful stop; HUP:
    restart; TTIN/TTOU), pings the workers, replaces dead ones and stops when a worker fails to start.
    """
    import multiprocessing
    from multiprocessing.context import BaseContext

    import uvicorn
    from uvicorn import _subprocess

    if not isinstance(getattr(_subprocess, "spawn", None), BaseContext):
        return False  # this uvicorn makes its workers some other way: they spawn (slower, same behaviour)
    # A worker must start with this process's signal dispositions, as a spawned one would, not with
    # the handlers the supervisor is about to install here (they only queue signals for the parent).
    dispositions = {
        sig: handler
        for sig in signal.valid_signals()
        if (handler := signal.getsignal(sig)) is not None
    }

    def restore_signals() -> None:
        for sig, handler in dispositions.items():
            if signal.getsignal(sig) != handler:
                signal.signal(sig, handler)

    os.register_at_fork(after_in_child=restore_signals)
    _subprocess.spawn = multiprocessing.get_context("fork")  # type: ignore[assignment]
    # Import here, once, what each worker would import while loading: the protocol, lifespan and
    # event-loop modules, and httpcore, which httpx imports when the lifespan makes the FHIR client (about
    # 35 ms a worker). Each worker still builds its own app (per-process state such as the SMART
    # cookie key stays per process).
    warm = uvicorn.Config(_no_app, **{**options, "factory": False, "workers": 1})
    warm.load()
    warm.get_loop_factory()
    importlib.import_module("httpcore")
    return True


async def _no_app(scope: Any, receive: Any, send: Any) -> None:
    """Stands in for the app while _fork_workers imports uvicorn's modules; never called."""


@app.command()
def explain(
    case: Annotated[
        Path,
        typer.Argument(
            help="Scenario file or bare CDS Hooks request with prefetch",
            exists=True,
            dir_okay=False,
        ),
    ],
    hook: Annotated[
        str | None, typer.Option(help="patient-view, order-select or order-sign")
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(
            help="ISO 8601 with zone; default the scenario's now, else the current time"
        ),
    ] = None,
) -> None:
    """Run one case through the engine and print the per-leg workup state and the cards."""
    from app.catalog.loader import CatalogError
    from app.review import explain_command

    try:
        explain_command(case, hook, now)
    except (CatalogError, ValueError) as exc:
        raise _fail(str(exc)) from None


@app.command("rules-doc")
def rules_doc(
    output: Annotated[
        Path, typer.Option(help="Markdown catalogue to write")
    ] = REPO_ROOT / "docs" / "rules.md",
    html: Annotated[
        Path | None, typer.Option(help="Also write the self-contained HTML page here")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Only fail when the Markdown file is stale")
    ] = False,
) -> None:
    """Generate the rules catalogue (docs/rules.md, optional HTML) from cards/ and the rule registry."""
    from app.catalog.loader import CatalogError
    from app.review import rules_doc_command

    try:
        current = rules_doc_command(output, html, check=check)
    except (CatalogError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if not current:
        raise _fail(f"{output} is stale: run `iliac-cds rules-doc`")


T = TypeVar("T")


def _in_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Migrate, then run `work` in one committed session on the configured database."""
    from app.db.migrate import upgrade_database
    from app.db.session import run_in_session

    settings = get_settings()
    upgrade_database(settings.database_url, schema=settings.database_schema)
    return run_in_session(settings.database_url, work, schema=settings.database_schema)


@clients_app.command("add")
def clients_add(
    issuer: Annotated[str, typer.Option(help="The `iss` the EHR puts in its JWTs")],
    jwks_url: Annotated[
        str | None, typer.Option(help="URL of the EHR's JWK Set")
    ] = None,
    jwks_file: Annotated[
        Path | None, typer.Option(help="A JWK Set file, instead of a URL")
    ] = None,
    fhir_server: Annotated[
        list[str] | None, typer.Option(help="Allowed FHIR base URL (repeat)")
    ] = None,
    jku: Annotated[
        list[str] | None, typer.Option(help="Allowed `jku` header URL (repeat)")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Required `tenant` claim")] = None,
) -> None:
    """Register an EHR client (issuer, keys, allowed FHIR servers)."""
    from app.services.clients import InvalidClient, add_client

    if (jwks_url is None) == (jwks_file is None):
        raise _fail("give exactly one of --jwks-url or --jwks-file")
    try:
        jwks = json.loads(jwks_file.read_text()) if jwks_file else None
    except (OSError, json.JSONDecodeError) as exc:
        raise _fail(f"cannot read the JWK Set file: {exc}") from None

    async def work(session: AsyncSession) -> None:
        await add_client(
            session,
            issuer=issuer,
            jwks_url=jwks_url,
            jwks=jwks,
            fhir_servers=fhir_server or [],
            jku_allowlist=jku or [],
            tenant=tenant,
        )

    try:
        _in_session(work)
    except InvalidClient as exc:
        raise _fail(exc.message) from None
    console.print(f"registered client [bold]{issuer}[/]")


@clients_app.command("list")
def clients_list(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of a table")
    ] = False,
) -> None:
    """List registered EHR clients."""
    from app.services.clients import list_clients

    clients = _in_session(list_clients)
    if as_json:
        rows = [
            {
                "issuer": c.issuer,
                "jwksUrl": c.jwks_url,
                "fhirServers": list(c.fhir_servers),
                "jkuAllowlist": list(c.jku_allowlist),
                "tenant": c.tenant,
            }
            for c in clients
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="Registered EHR clients")
    for column in ("issuer", "keys", "FHIR servers", "jku allow-list", "tenant"):
        table.add_column(column, overflow="fold")
    for c in clients:
        keys = c.jwks_url or "inline JWKS"
        table.add_row(
            c.issuer,
            keys,
            "\n".join(c.fhir_servers),
            "\n".join(c.jku_allowlist),
            c.tenant or "",
        )
    console.print(table)


@clients_app.command("remove")
def clients_remove(
    issuer: Annotated[str, typer.Argument(help="Issuer to remove")],
) -> None:
    """Remove a registered EHR client."""
    from app.services.clients import remove_client

    async def work(session: AsyncSession) -> bool:
        return await remove_client(session, issuer=issuer)

    if not _in_session(work):
        raise _fail(f"no client with issuer {issuer!r}")
    console.print(f"removed client [bold]{issuer}[/]")


def main() -> None:
    app()


if __name__ == "__main__":
    main()

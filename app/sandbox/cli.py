"""`iliac-cds sandbox load|run`: the typer commands and their tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from app.sandbox.client import UploadResult, discover_services, upload_scenario
from app.sandbox.matching import RunResult, card_rule, card_side, run_scenario
from app.sandbox.scenarios import (
    DEFAULT_SCENARIOS_DIR,
    HTTP_TIMEOUT_SECONDS,
    SandboxError,
    Scenario,
    load_scenarios,
)

sandbox_app = typer.Typer(
    help="Try the service against a real FHIR server with the synthetic patient library.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)


def _select(
    scenarios: Sequence[Scenario], patients: Sequence[str], hooks: Sequence[str]
) -> list[Scenario]:
    chosen = [
        s
        for s in scenarios
        if (not patients or s.patient_id in patients or s.id in patients)
        and (not hooks or s.hook in hooks)
    ]
    if not chosen:
        raise SandboxError("no scenario matches --patient / --hook")
    return chosen


ScenariosOpt = Annotated[
    Path,
    typer.Option(
        "--scenarios",
        help="Directory of scenario files (the synthetic patient library)",
    ),
]
FhirServerOpt = Annotated[
    str,
    typer.Option(
        "--fhir-server", help="FHIR R4 base URL, e.g. http://127.0.0.1:8090/fhir"
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Bearer token for the FHIR server",
        envvar="ILIAC_CDS_SANDBOX_TOKEN",
    ),
]


@sandbox_app.command("load")
def load_command(
    fhir_server: FhirServerOpt,
    token: TokenOpt = None,
    scenarios_dir: ScenariosOpt = DEFAULT_SCENARIOS_DIR,
) -> None:
    """Upload the synthetic patient library (one transaction Bundle of PUTs per patient; re-running is safe)."""
    try:
        scenarios = load_scenarios(scenarios_dir)
    except SandboxError as exc:
        raise _fail(str(exc)) from None
    results: list[UploadResult] = []
    failures: list[str] = []
    with (
        httpx.Client(timeout=HTTP_TIMEOUT_SECONDS, trust_env=False) as client,
        Progress(console=console, transient=True) as progress,
    ):
        task = progress.add_task("loading patients", total=len(scenarios))
        for scenario in scenarios:
            try:
                results.append(upload_scenario(client, fhir_server, scenario, token))
            except SandboxError as exc:
                failures.append(str(exc))
            progress.advance(task)
    table = Table(title=f"Loaded into {fhir_server}")
    for column in ("scenario", "patient", "hook", "created", "updated"):
        table.add_column(column)
    for r in results:
        table.add_row(
            r.scenario.id,
            r.scenario.patient_id,
            r.scenario.hook,
            str(r.created),
            str(r.updated),
        )
    console.print(table)
    console.print(
        f"{len(results)} patient(s) loaded, "
        f"{sum(r.created for r in results)} resource(s) created, "
        f"{sum(r.updated for r in results)} updated"
    )
    if failures:
        for failure in failures:
            err_console.print(f"[red]failed:[/] {failure}")
        raise typer.Exit(code=1)


@sandbox_app.command("run")
def run_command(
    fhir_server: FhirServerOpt,
    service: Annotated[
        str,
        typer.Option(
            "--service", help="Base URL of the CDS service, e.g. http://127.0.0.1:8000"
        ),
    ],
    token: TokenOpt = None,
    patient: Annotated[
        list[str] | None,
        typer.Option("--patient", help="Only this patient id or scenario id (repeat)"),
    ] = None,
    hook: Annotated[
        list[str] | None,
        typer.Option("--hook", help="Only scenarios of this hook (repeat)"),
    ] = None,
    scenarios_dir: ScenariosOpt = DEFAULT_SCENARIOS_DIR,
) -> None:
    """Call the service for each patient with fhirServer only (no prefetch) and check the expected cards."""
    try:
        scenarios = _select(load_scenarios(scenarios_dir), patient or [], hook or [])
        with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS, trust_env=False) as client:
            services = discover_services(client, service)
            results = []
            for scenario in scenarios:
                service_id = services.get(scenario.hook)
                if service_id is None:
                    raise SandboxError(f"the service has no {scenario.hook} hook")
                results.append(
                    run_scenario(
                        client,
                        service_url=service,
                        service_id=service_id,
                        scenario=scenario,
                        fhir_server=fhir_server,
                        token=token,
                    )
                )
    except SandboxError as exc:
        raise _fail(str(exc)) from None
    console.print(_results_table(results))
    failed = [r for r in results if not r.ok]
    for r in failed:
        what = r.error or ", ".join(f"missing {e.describe()}" for e in r.missing)
        console.print(
            f"[red]FAIL[/] {r.scenario.patient_id} ({r.scenario.id}): {what}",
            soft_wrap=True,
        )
    console.print(
        f"{len(results) - len(failed)} of {len(results)} patient(s) got every expected card"
    )
    if failed:
        raise typer.Exit(code=1)


def _results_table(results: Sequence[RunResult]) -> Table:
    table = Table(title="Cards per patient (service called without prefetch)")
    for column in (
        "patient",
        "scenario",
        "hook",
        "cards",
        "expected, missing",
        "result",
    ):
        table.add_column(column)
    for r in results:
        cards = "\n".join(
            f"{card_rule(c) or '?'} {c.get('indicator', '')} {card_side(c) or ''}: {c.get('summary', '')}"
            for c in r.cards
        )
        notes = [f"missing {e.describe()}" for e in r.missing]
        notes += [f"unexpected {e.describe()}" for e in r.unexpected]
        if r.error:
            verdict = f"[red]{r.error}[/]"
        elif r.missing:
            verdict = "[red]FAIL[/]"
        else:
            verdict = "[green]ok[/]"
        table.add_row(
            r.scenario.patient_id,
            r.scenario.id,
            r.scenario.hook,
            cards or "(no cards)",
            "\n".join(notes),
            verdict,
        )
    return table


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=1)

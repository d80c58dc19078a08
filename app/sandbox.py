"""Sandbox: load the synthetic patient library into a FHIR server and call the service as an EHR would.

`iliac-cds sandbox load` PUTs every scenario's record into a FHIR R4 server as a transaction Bundle;
`iliac-cds sandbox run` then calls the CDS service for each patient with `fhirServer` only (no prefetch),
so the service fetches the record itself, and checks each scenario's expected cards (`expect.must`).

Scenario files (tests/scenarios/*.json) are complete CDS Hooks requests with prefetch; their resource ids
(`cond-1`, `obs-2`) repeat from one scenario to the next, so before loading, every resource other than the
Patient is renamed `{patientId}-{id}` and the references to it are rewritten. The same renamed request is
what `Scenario.request` holds, so prefetch and server always hold the same record.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from app.config import REPO_ROOT

DEFAULT_SCENARIOS_DIR = REPO_ROOT / "tests" / "scenarios"
FHIR_JSON = "application/fhir+json"
HTTP_TIMEOUT_SECONDS = 30.0
LATERALITY_CODES = {"7771000": "left", "24028007": "right", "51440002": "bilateral"}
_MAX_ID_LENGTH = 64
_REFERENCE = re.compile(
    r"^(?P<prefix>(?:.*/)?)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?P<history>/_history/[^/]+)?$"
)
_REFERENCE_KEYS = frozenset({"reference", "fullUrl"})

sandbox_app = typer.Typer(
    help="Try the service against a real FHIR server with the synthetic patient library.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)

JsonDict = dict[str, Any]


class SandboxError(Exception):
    """A scenario file is unusable, or the FHIR server or CDS service refused a call; the message says which."""


@dataclass(frozen=True)
class Expectation:
    """One entry of a scenario's `expect.must` / `expect.mustNot`."""

    rule: str
    side: str | None = None
    indicator: str | None = None
    suggestion_codes: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [self.rule]
        if self.side:
            parts.append(self.side)
        if self.indicator:
            parts.append(self.indicator)
        return " ".join(parts)


@dataclass(frozen=True)
class Scenario:
    """A synthetic patient: a CDS Hooks request (ids namespaced per patient) and the cards it must yield."""

    id: str
    path: Path
    description: str
    now: datetime | None
    request: JsonDict
    must: tuple[Expectation, ...]
    must_not: tuple[Expectation, ...]

    @property
    def hook(self) -> str:
        return str(self.request["hook"])

    @property
    def context(self) -> JsonDict:
        context: JsonDict = self.request["context"]
        return context

    @property
    def patient_id(self) -> str:
        return str(self.context["patientId"])

    @property
    def prefetch(self) -> JsonDict:
        prefetch: JsonDict = self.request.get("prefetch") or {}
        return prefetch

    def resources_by_key(self) -> dict[str, list[JsonDict]]:
        """The prefetch as resources per key (a Bundle's entries, a single resource, or nothing for null)."""
        return {key: _resources_of(value) for key, value in self.prefetch.items()}

    def resources(self) -> list[JsonDict]:
        """Every prefetch resource once (same type and id counts once), the Patient first."""
        seen: set[tuple[str, str]] = set()
        ordered: list[JsonDict] = []
        groups = sorted(
            self.resources_by_key().items(), key=lambda item: item[0] != "patient"
        )
        for _, resources in groups:
            for resource in resources:
                identity = (str(resource["resourceType"]), str(resource["id"]))
                if identity not in seen:
                    seen.add(identity)
                    ordered.append(resource)
        return ordered


def load_scenarios(directory: Path) -> list[Scenario]:
    """Read every `*.json` scenario in directory, sorted by file name, with ids namespaced per patient.

    Raises:
        SandboxError: a file is not a scenario, or two scenarios use the same patient id.
    """
    if not directory.is_dir():
        raise SandboxError(f"{directory} is not a directory")
    scenarios = [load_scenario(path) for path in sorted(directory.glob("*.json"))]
    owners: dict[str, Path] = {}
    for scenario in scenarios:
        other = owners.setdefault(scenario.patient_id, scenario.path)
        if other != scenario.path:
            raise SandboxError(
                f"{scenario.path.name} and {other.name} both use patient id {scenario.patient_id!r}; "
                "each scenario needs its own patient"
            )
    return scenarios


def load_scenario(path: Path) -> Scenario:
    """Read one scenario file (format: tests/scenarios/README.md).

    Raises:
        SandboxError: naming the file and what is wrong.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SandboxError(f"{path.name}: cannot read it ({exc})") from None
    if not isinstance(document, dict):
        raise SandboxError(f"{path.name}: not a JSON object")
    request = document.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("hook"), str):
        raise SandboxError(f"{path.name}: `request` must be a CDS Hooks request")
    context = request.get("context")
    if not isinstance(context, dict) or not isinstance(context.get("patientId"), str):
        raise SandboxError(f"{path.name}: `request.context.patientId` is missing")
    prefetch = request.get("prefetch") or {}
    if not isinstance(prefetch, dict):
        raise SandboxError(f"{path.name}: `request.prefetch` must be an object")
    for key, value in prefetch.items():
        try:
            _resources_of(value)
        except ValueError as exc:
            raise SandboxError(f"{path.name}: prefetch key {key!r}: {exc}") from None
    expect = document.get("expect") or {}
    if not isinstance(expect, dict):
        raise SandboxError(f"{path.name}: `expect` must be an object")
    try:
        must = _expectations(expect.get("must"))
        must_not = _expectations(expect.get("mustNot"))
        now = _parse_now(document.get("now"))
    except ValueError as exc:
        raise SandboxError(f"{path.name}: {exc}") from None
    return Scenario(
        id=str(document.get("id") or path.stem),
        path=path,
        description=str(document.get("description") or ""),
        now=now,
        request=namespace_ids(request),
        must=must,
        must_not=must_not,
    )


def _parse_now(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("`now` must be an ISO 8601 string")
    now = datetime.fromisoformat(value)
    if now.tzinfo is None:
        raise ValueError("`now` must carry a time zone")
    return now


def _expectations(value: object) -> tuple[Expectation, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError("expect.must / expect.mustNot must be lists")
    out: list[Expectation] = []
    for item in value:
        if isinstance(item, str):
            out.append(Expectation(rule=item))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("rule"), str):
            raise ValueError("each expectation needs a `rule`")
        codes = item.get("suggestionCodes") or []
        out.append(
            Expectation(
                rule=item["rule"],
                side=item.get("side"),
                indicator=item.get("indicator"),
                suggestion_codes=tuple(str(code) for code in codes),
            )
        )
    return tuple(out)


def _resources_of(value: object) -> list[JsonDict]:
    if value is None:
        return []
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise ValueError("not a FHIR resource")
    if value["resourceType"] != "Bundle":
        resources = [value]
    else:
        resources = []
        for entry in value.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                raise ValueError("a Bundle entry has no resource")
            if resource.get("resourceType") != "OperationOutcome":
                resources.append(resource)
    for resource in resources:
        if not isinstance(resource.get("id"), str) or not resource["id"]:
            raise ValueError(f"a {resource.get('resourceType')} has no id")
    return resources


def namespace_ids(request: Mapping[str, Any]) -> JsonDict:
    """Copy a CDS Hooks request, renaming each prefetch resource but the Patient `{patientId}-{id}`.

    References and fullUrls naming a renamed resource (relative, absolute or versioned) are rewritten
    everywhere in the request, draft orders included, so the record stays linked. Renaming twice is a no-op.
    """
    copy: JsonDict = json.loads(json.dumps(request))
    patient_id = str(copy["context"]["patientId"])
    renames: dict[tuple[str, str], str] = {}
    for value in (copy.get("prefetch") or {}).values():
        for resource in _resources_of(value):
            resource_type = str(resource["resourceType"])
            if resource_type == "Patient":
                continue
            old_id = str(resource["id"])
            new_id = _namespaced_id(patient_id, old_id)
            renames[(resource_type, old_id)] = new_id
            resource["id"] = new_id
    if renames:
        _rewrite_references(copy, renames)
    return copy


def _namespaced_id(patient_id: str, resource_id: str) -> str:
    prefix = f"{patient_id}-"
    if resource_id.startswith(prefix):
        return resource_id
    candidate = prefix + resource_id
    if len(candidate) <= _MAX_ID_LENGTH:
        return candidate
    return hashlib.sha256(candidate.encode()).hexdigest()[:_MAX_ID_LENGTH]


def _rewrite_references(node: object, renames: Mapping[tuple[str, str], str]) -> None:
    if isinstance(node, list):
        for item in node:
            _rewrite_references(item, renames)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in _REFERENCE_KEYS and isinstance(value, str):
            match = _REFERENCE.match(value)
            if match is not None:
                new_id = renames.get((match["type"], match["id"]))
                if new_id is not None:
                    history = match["history"] or ""
                    node[key] = f"{match['prefix']}{match['type']}/{new_id}{history}"
        else:
            _rewrite_references(value, renames)


def transaction_bundle(scenario: Scenario) -> JsonDict:
    """A transaction Bundle that PUTs every record resource to `{type}/{id}`, so loading twice duplicates nothing.

    Draft orders stay out: they live in the hook context, not in the record.
    """
    entries = []
    for resource in scenario.resources():
        resource_type, resource_id = resource["resourceType"], resource["id"]
        stored = {k: v for k, v in resource.items() if k != "meta"}
        entries.append(
            {
                "resource": stored,
                "request": {"method": "PUT", "url": f"{resource_type}/{resource_id}"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def fhir_headers(token: str | None) -> dict[str, str]:
    headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


@dataclass(frozen=True)
class UploadResult:
    scenario: Scenario
    created: int
    updated: int


def upload_scenario(
    client: httpx.Client, fhir_server: str, scenario: Scenario, token: str | None
) -> UploadResult:
    """POST the scenario's transaction Bundle to the server base.

    Raises:
        SandboxError: the server refused the transaction (status and, for an OperationOutcome, its first issue).
    """
    try:
        response = client.post(
            fhir_server.rstrip("/"),
            content=json.dumps(transaction_bundle(scenario)),
            headers=fhir_headers(token),
        )
    except httpx.HTTPError as exc:
        raise SandboxError(
            f"{scenario.id}: FHIR server unreachable ({type(exc).__name__})"
        ) from None
    if not response.is_success:
        raise SandboxError(
            f"{scenario.id}: FHIR server answered HTTP {response.status_code}{_outcome_text(response)}"
        )
    created = updated = 0
    for entry in _json_object(response).get("entry") or []:
        status = str((entry.get("response") or {}).get("status", ""))
        if status.startswith("201"):
            created += 1
        elif status.startswith("200"):
            updated += 1
    return UploadResult(scenario=scenario, created=created, updated=updated)


def _json_object(response: httpx.Response) -> JsonDict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _outcome_text(response: httpx.Response) -> str:
    body = _json_object(response)
    issues = (
        body.get("issue") if body.get("resourceType") == "OperationOutcome" else None
    )
    if isinstance(issues, list) and issues and isinstance(issues[0], dict):
        diagnostics = issues[0].get("diagnostics") or issues[0].get("code")
        if diagnostics:
            return f": {str(diagnostics)[:300]}"
    detail = body.get("detail")
    return f": {str(detail)[:300]}" if detail else ""


def hook_request(
    scenario: Scenario, *, fhir_server: str, token: str | None
) -> JsonDict:
    """The request an EHR that sends only fhirServer (no prefetch) would make for this scenario."""
    request: JsonDict = {
        "hook": scenario.hook,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir_server.rstrip("/"),
        "context": scenario.context,
    }
    if token:
        request["fhirAuthorization"] = fhir_authorization(token, scenario.patient_id)
    return request


def fhir_authorization(token: str, patient_id: str) -> JsonDict:
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "iliac-cds-sandbox",
        "patient": patient_id,
    }


def discover_services(client: httpx.Client, service_url: str) -> dict[str, str]:
    """Map each hook to the id of the service answering it, from the service's discovery endpoint.

    Raises:
        SandboxError: discovery failed.
    """
    url = f"{service_url.rstrip('/')}/cds-services"
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        raise SandboxError(
            f"CDS service unreachable at {url} ({type(exc).__name__})"
        ) from None
    services = _json_object(response).get("services")
    if not response.is_success or not isinstance(services, list):
        raise SandboxError(
            f"CDS discovery at {url} answered HTTP {response.status_code}"
        )
    return {
        str(s["hook"]): str(s["id"])
        for s in services
        if isinstance(s, dict) and "hook" in s and "id" in s
    }


def card_rule(card: Mapping[str, Any]) -> str | None:
    """The rule a card comes from: `source.topic.code`."""
    topic = (card.get("source") or {}).get("topic") or {}
    code = topic.get("code")
    return str(code) if code is not None else None


def card_side(card: Mapping[str, Any]) -> str | None:
    """The leg a card concerns as far as its JSON tells: None when it does not say.

    Read from a `side` member of the card's `extension`, else the laterality codes of its suggested resources,
    else the words left / right / bilateral in its summary. A card for the pelvis (CT venography) names no leg.
    """
    extension = card.get("extension")
    if isinstance(extension, dict):
        for key, value in extension.items():
            if key.lower().endswith("side") and isinstance(value, str):
                return value
    coded = {
        LATERALITY_CODES[code]
        for code in suggestion_codes(card)
        if code in LATERALITY_CODES
    }
    if coded:
        return coded.pop() if len(coded) == 1 else "bilateral"
    summary = str(card.get("summary", "")).lower()
    words = {
        w for w in ("left", "right", "bilateral") if re.search(rf"\b{w}\b", summary)
    }
    if "bilateral" in words or {"left", "right"} <= words:
        return "bilateral"
    return words.pop() if words else None


def suggestion_codes(card: Mapping[str, Any]) -> list[str]:
    """Every `code` inside the card's suggested resources, in order (order codes, body sites, laterality)."""
    codes: list[str] = []
    for suggestion in card.get("suggestions") or []:
        for action in suggestion.get("actions") or []:
            _collect_codes(action.get("resource"), codes)
    return codes


def _collect_codes(node: object, codes: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _collect_codes(item, codes)
    elif isinstance(node, dict):
        code = node.get("code")
        if isinstance(code, str) and "system" in node:
            codes.append(code)
        for value in node.values():
            _collect_codes(value, codes)


def card_matches(
    card: Mapping[str, Any], expectation: Expectation, *, unknown_side_matches: bool
) -> bool:
    """True when the card meets the expectation (rule, indicator, side, suggestion codes).

    A card whose JSON names no side (see card_side) meets an expected side only if unknown_side_matches.
    """
    if card_rule(card) != expectation.rule:
        return False
    if expectation.indicator and card.get("indicator") != expectation.indicator:
        return False
    if expectation.side:
        side = card_side(card)
        if side is None and not unknown_side_matches:
            return False
        if side is not None and side != expectation.side:
            return False
    codes = set(suggestion_codes(card))
    return all(code in codes for code in expectation.suggestion_codes)


def missing_expectations(
    cards: Sequence[Mapping[str, Any]], expectations: Iterable[Expectation]
) -> list[Expectation]:
    """The expectations that no card meets; a card that names no side may meet an expected side."""
    return [
        e
        for e in expectations
        if not any(card_matches(c, e, unknown_side_matches=True) for c in cards)
    ]


@dataclass(frozen=True)
class RunResult:
    scenario: Scenario
    status_code: int | None
    cards: tuple[JsonDict, ...]
    error: str | None
    missing: tuple[Expectation, ...]
    unexpected: tuple[Expectation, ...]

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missing


def run_scenario(
    client: httpx.Client,
    *,
    service_url: str,
    service_id: str,
    scenario: Scenario,
    fhir_server: str,
    token: str | None,
) -> RunResult:
    """Call the service for one scenario without prefetch and check its expected cards."""
    url = f"{service_url.rstrip('/')}/cds-services/{service_id}"
    body = hook_request(scenario, fhir_server=fhir_server, token=token)
    try:
        response = client.post(url, json=body)
    except httpx.HTTPError as exc:
        return RunResult(
            scenario,
            None,
            (),
            f"service unreachable ({type(exc).__name__})",
            scenario.must,
            (),
        )
    payload = _json_object(response)
    if response.status_code != 200 or not isinstance(payload.get("cards"), list):
        detail = payload.get("detail") or payload.get("error") or ""
        return RunResult(
            scenario,
            response.status_code,
            (),
            f"HTTP {response.status_code} {detail}".strip(),
            scenario.must,
            (),
        )
    cards = tuple(c for c in payload["cards"] if isinstance(c, dict))
    missing = tuple(missing_expectations(cards, scenario.must))
    unexpected = tuple(
        e
        for e in scenario.must_not
        if any(card_matches(c, e, unknown_side_matches=False) for c in cards)
    )
    return RunResult(scenario, 200, cards, None, missing, unexpected)


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

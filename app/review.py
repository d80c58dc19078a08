"""Clinician review tools: `iliac-cds explain` (one case through the engine) and the rules catalogue (`rules-doc`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from app.catalog.index import Catalog
from app.catalog.loader import load_catalog
from app.config import REPO_ROOT, get_settings
from app.rules_catalogue import render_rules_html, render_rules_markdown
from app.workup.engine import (
    LinkConfig,
    WorkupInput,
    WorkupResult,
    check_registry,
    run_workup,
)
from app.workup.jsontypes import JsonObject, JsonValue, child, children, obj, string

RULES_DOC = REPO_ROOT / "docs" / "rules.md"
__all__ = [
    "RULES_DOC",
    "explain_command",
    "load_case",
    "render_rules_html",
    "render_rules_markdown",
    "rules_doc_command",
]
HOOKS = ("patient-view", "order-select", "order-sign")


def load_service_catalog() -> Catalog:
    """The catalogue the service would load (settings paths), with the registry checked against it."""
    settings = get_settings()
    catalog = load_catalog(
        cards_dir=settings.cards_dir,
        mappings_dir=settings.mappings_dir,
        local_system=settings.local_code_system,
    )
    check_registry(catalog)
    return catalog


# -- explain -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A scenario file (`request` + `now` + `expect`) or a bare CDS Hooks request, ready for the engine."""

    name: str
    request: JsonObject
    now: datetime | None
    expect: JsonObject | None


def load_case(path: Path) -> Case:
    """Read a scenario file or a bare CDS Hooks request.

    Raises:
        ValueError: the file is not JSON or is neither format.
    """
    try:
        data: JsonValue = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    root = obj(data)
    if root is None:
        raise ValueError(f"{path}: expected a JSON object")
    request = child(root, "request")
    if request is not None:
        return Case(
            string(root, "id") or path.stem,
            request,
            _parse_now(string(root, "now")),
            child(root, "expect"),
        )
    if "hook" in root and "context" in root:
        return Case(path.stem, root, None, None)
    raise ValueError(f"{path}: neither a scenario (`request`) nor a CDS Hooks request")


def _parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"--now {value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise ValueError(
            f"--now {value!r} must carry a time zone, e.g. 2026-03-02T10:00:00Z"
        )
    return parsed


def _resources(value: JsonValue) -> list[JsonObject]:
    """Resources of a Bundle (OperationOutcome entries dropped) or a single resource."""
    resource = obj(value)
    if resource is None:
        return []
    if string(resource, "resourceType") != "Bundle":
        return [resource]
    found = [child(entry, "resource") for entry in children(resource, "entry")]
    return [
        r
        for r in found
        if r is not None and string(r, "resourceType") != "OperationOutcome"
    ]


def workup_input(
    case: Case, hook: str | None, now: str | None, links: LinkConfig
) -> WorkupInput:
    """The engine input of a case; `hook` and `now` override the case's own."""
    chosen = hook or string(case.request, "hook") or ""
    if chosen not in HOOKS:
        raise ValueError(f"hook {chosen!r} is not one of {', '.join(HOOKS)}")
    context = child(case.request, "context")
    prefetch = child(case.request, "prefetch") or {}
    resources = [r for value in prefetch.values() for r in _resources(value)]
    patient = string(context, "patientId") or "unknown"
    raw_selections = context.get("selections") if context is not None else None
    selections = (
        [s for s in raw_selections if isinstance(s, str)]
        if isinstance(raw_selections, list)
        else []
    )
    return WorkupInput(
        hook=chosen,
        now=_parse_now(now) or case.now or datetime.now(UTC),
        patient_id=patient,
        resources=tuple(resources),
        draft_orders=tuple(_resources(context.get("draftOrders") if context else None)),
        selections=tuple(selections),
        links=links,
    )


def explain_command(
    case: Path, hook: str | None, now: str | None, *, console: Console | None = None
) -> None:
    """Print the per-leg workup state and the cards of one case (`iliac-cds explain CASE.json`).

    Args:
        case: a scenario file of tests/scenarios/ or a bare CDS Hooks request (prefetch inline).
        hook: run this hook instead of the case's (patient-view, order-select, order-sign).
        now: the clock (ISO 8601 with zone); default the scenario's `now`, else the current time.
        console: where to print (default stdout).

    Raises:
        ValueError: unreadable case, unknown hook or bad `now`.
    """
    out = console or Console()
    loaded = load_case(case)
    catalog = load_service_catalog()
    base = get_settings().public_base_url.rstrip("/")
    inp = workup_input(loaded, hook, now, LinkConfig(rules_url=f"{base}/rules"))
    result = run_workup(inp, catalog)
    out.print(
        Text(
            f"{loaded.name}: {inp.hook} at {inp.now.isoformat()} "
            f"({len(inp.resources)} resources, {len(inp.draft_orders)} draft orders)",
            style="bold",
        )
    )
    out.print(_state_table(result))
    out.print(Text(_patient_line(result)))
    out.print(_cards_table(result))
    if loaded.expect is not None and inp.hook == string(loaded.request, "hook"):
        out.print(_expect_table(loaded.expect, result))
    elif loaded.expect is not None:
        out.print(Text("Scenario expectations not checked: the hook was overridden."))


def _yes(flag: bool) -> str:
    return "yes" if flag else "-"


def _state_table(result: WorkupResult) -> Table:
    table = Table(title="Workup state per leg", show_lines=True)
    for column in (
        "leg",
        "stage",
        "symptoms",
        "DVT",
        "pelvic imaging",
        "IVUS",
        "stent",
        "missing",
        "next",
    ):
        table.add_column(column)
    for leg in result.state.legs:
        dvt = "active" if leg.dvt_active else "excluded" if leg.dvt_excluded else "-"
        stent = (
            "in situ" if leg.stent_in_situ else "drafted" if leg.stent_drafted else "-"
        )
        table.add_row(
            Text(leg.side.value),
            Text(leg.stage.value),
            Text(_yes(leg.symptomatic)),
            Text(dvt),
            Text(_yes(leg.pelvic_imaging)),
            Text(_yes(leg.ivus)),
            Text(stent),
            Text("\n".join(leg.missing) or "-"),
            Text("\n".join(leg.next_steps) or "-"),
        )
    return table


def _patient_line(result: WorkupResult) -> str:
    state = result.state
    parts = [
        f"pregnant: {_yes(state.pregnant)}",
        f"systemic edema causes: {', '.join(state.systemic_edema_causes) or '-'}",
        f"anticoagulated: {_yes(state.anticoagulated)}",
        f"anticoagulation contraindicated: {_yes(state.anticoagulation_contraindicated)}",
        f"VTE history: {_yes(state.vte_history)}",
        f"unlateralised: {', '.join(state.unlateralised) or '-'}",
        f"stale results: {len(state.stale)}",
        f"invalid resources: {state.invalid_resources}",
    ]
    return "Patient: " + "; ".join(parts)


def card_codes(card: JsonObject) -> list[str]:
    """Codes of the resources a card's suggestions create (and `delete <id>` for deletions)."""
    codes: list[str] = []
    for suggestion in children(card, "suggestions"):
        for action in children(suggestion, "actions"):
            resource = child(action, "resource")
            if resource is None:
                codes.append(f"delete {string(action, 'resourceId') or '?'}")
                continue
            for key in ("code", "medicationCodeableConcept", "codeCodeableConcept"):
                codes += [
                    string(c, "code") or "?"
                    for c in children(child(resource, key), "coding")
                ]
    return list(dict.fromkeys(codes))


def _rule_of(card: JsonObject) -> str:
    return string(child(child(card, "source"), "topic"), "code") or "?"


def _cards_table(result: WorkupResult) -> Table:
    table = Table(title=f"Cards ({len(result.cards)})", show_lines=True)
    for column in ("rule", "side", "indicator", "summary", "suggestion codes"):
        table.add_column(column)
    for card in result.cards:
        side = result.card_sides.get(string(card, "uuid") or "")
        table.add_row(
            Text(_rule_of(card)),
            Text(side or "-"),
            Text(string(card, "indicator") or "?"),
            Text(string(card, "summary") or ""),
            Text(", ".join(card_codes(card)) or "-"),
        )
    return table


def _expect_table(expect: JsonObject, result: WorkupResult) -> Table:
    """The scenario's must / mustNot entries checked against the cards (rule, side, indicator, codes)."""
    got = [
        (_rule_of(c), result.card_sides.get(string(c, "uuid") or ""), c)
        for c in result.cards
    ]
    table = Table(title="Scenario expectations", show_lines=False)
    for column in ("expect", "rule", "side", "result"):
        table.add_column(column)
    for kind in ("must", "mustNot"):
        for want in children(expect, kind):
            rule, side = string(want, "rule") or "?", string(want, "side")
            hits = [
                card
                for r, s, card in got
                if r == rule
                and side in (None, s)
                and (
                    kind == "mustNot"
                    or string(want, "indicator") in (None, string(card, "indicator"))
                )
            ]
            wanted = want.get("suggestionCodes")
            codes = (
                {c for c in wanted if isinstance(c, str)}
                if isinstance(wanted, list)
                else set()
            )
            present = set().union(*(card_codes(c) for c in hits)) if hits else set()
            ok = (bool(hits) and codes <= present) if kind == "must" else not hits
            table.add_row(
                kind,
                rule,
                side or "any",
                Text("ok" if ok else "FAIL", style="green" if ok else "bold red"),
            )
    return table


def rules_doc_command(
    output: Path = RULES_DOC, html_output: Path | None = None, *, check: bool = False
) -> bool:
    """Write docs/rules.md (and optionally the HTML page); with `check`, only report whether it is current.

    Returns:
        True when the Markdown file is (now) up to date.
    """
    catalog = load_service_catalog()
    markdown = render_rules_markdown(catalog)
    current = output.exists() and output.read_text(encoding="utf-8") == markdown
    if check:
        return current
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(markdown, encoding="utf-8")
    if html_output is not None:
        html_output.parent.mkdir(parents=True, exist_ok=True)
        html_output.write_text(render_rules_html(catalog), encoding="utf-8")
    return True

"""Engine entry point (docs/architecture.md): raw FHIR in, CDS Hooks cards and per-leg state out."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from app.catalog.index import Catalog
from app.workup.derived import Derived
from app.workup.extract import extract_facts
from app.workup.facts import LEGS, Side
from app.workup.jsontypes import JsonObject
from app.workup.render import LinkConfig, RenderContext, render_card
from app.workup.rules import REGISTRY, Finding, Rule, RuleContext
from app.workup.rules.base import PATIENT_VIEW
from app.workup.state import STAGE_TEXT, WorkupState, build_state
from app.workup.suppression import apply_suppression

__all__ = ["LinkConfig", "WorkupInput", "WorkupResult", "check_registry", "run_workup"]


@dataclass(frozen=True)
class WorkupInput:
    """One hook call, already reduced to raw FHIR JSON (see docs/architecture.md)."""

    hook: str
    now: datetime
    patient_id: str
    resources: tuple[JsonObject, ...]
    draft_orders: tuple[JsonObject, ...]
    selections: tuple[str, ...]
    links: LinkConfig


@dataclass(frozen=True)
class WorkupResult:
    """Cards (CDS Hooks 2.0 JSON), the per-leg state, fired rule ids and each card's side.

    `card_sides` maps card uuid -> "left" | "right" | "bilateral", or None for patient-level cards.
    """

    cards: list[JsonObject]
    state: WorkupState
    rule_ids: tuple[str, ...]
    card_sides: dict[str, str | None]
    invalid_resources: int


def run_workup(inp: WorkupInput, catalog: Catalog) -> WorkupResult:
    """Evaluate every registered rule for one hook call.

    Args:
        inp: the hook call (raw FHIR resources, draft orders, selections, clock, link bases).
        catalog: the catalogue loaded once at startup by `load_catalog`.

    Returns:
        The cards in rule evaluation order, one per rule per leg, plus the workup state.
    """
    facts = extract_facts(
        resources=inp.resources,
        draft_orders=inp.draft_orders,
        selections=inp.selections,
        catalog=catalog,
        now=inp.now,
    )
    derived = Derived(facts, catalog, inp.now)
    ctx = RuleContext(
        inp.hook, inp.now, facts, derived, catalog, frozenset(inp.selections)
    )
    findings = _evaluate(ctx)
    titles = {card.id: card.title for card in catalog.cards.values()}
    state = build_state(derived, findings, titles)
    render = RenderContext(catalog, inp.patient_id, inp.links)
    cards: list[JsonObject] = []
    sides: dict[str, str | None] = {}
    for finding in findings:
        card = render_card(finding, render)
        cards.append(card)
        sides[str(card["uuid"])] = finding.side.value if finding.side else None
    if inp.hook == PATIENT_VIEW and state.under_way:
        state_finding = _state_finding(catalog, state)
        card = render_card(state_finding, render)
        cards.append(card)
        sides[str(card["uuid"])] = (
            state_finding.side.value if state_finding.side else None
        )
    rule_ids = tuple(dict.fromkeys(f.rule_id for f in findings))
    return WorkupResult(cards, state, rule_ids, sides, facts.invalid_resources)


def _evaluate(ctx: RuleContext) -> list[Finding]:
    order = {rule_id: i for i, rule_id in enumerate(ctx.catalog.settings.rules)}
    rules = [r for r in REGISTRY if ctx.hook in ctx.catalog.card(r.id).hooks]
    findings = _run([r for r in rules if not r.after_others], ctx)
    findings = apply_suppression(findings, ctx)
    late_ctx = replace(ctx, findings=tuple(findings))
    findings += apply_suppression(
        _run([r for r in rules if r.after_others], late_ctx), late_ctx
    )
    findings = _merge(findings, ctx)
    return sorted(findings, key=lambda f: order[f.rule_id])


def _run(rules: list[Rule], ctx: RuleContext) -> list[Finding]:
    return [finding for rule in rules for finding in rule.evaluate(ctx)]


def _merge(findings: list[Finding], ctx: RuleContext) -> list[Finding]:
    """One card per rule per leg: merge left+right into bilateral where the card allows it."""
    out: dict[tuple[str, Side | None, str | None], Finding] = {}
    for finding in findings:
        key = (finding.rule_id, finding.side, finding.key)
        out.setdefault(key, finding)
    for rule_id in {f.rule_id for f in findings}:
        if not ctx.catalog.card(rule_id).merge_bilateral:
            continue
        sided = {
            side: out.get((rule_id, side, None)) for side in (*LEGS, Side.BILATERAL)
        }
        left, right, both = sided[Side.LEFT], sided[Side.RIGHT], sided[Side.BILATERAL]
        if left is None or right is None:
            if both is not None:
                out.pop((rule_id, Side.LEFT, None), None)
                out.pop((rule_id, Side.RIGHT, None), None)
            continue
        base = both or left
        params = dict(base.params)
        if params.get("side") in ("left", "right"):
            params["side"] = "bilateral"
        merged = replace(
            base,
            side=Side.BILATERAL,
            params=params,
            evidence=tuple(dict.fromkeys((*left.evidence, *right.evidence))),
            reasons=tuple(dict.fromkeys((*left.reasons, *right.reasons))),
            targets=tuple(dict.fromkeys((*left.targets, *right.targets))),
        )
        out.pop((rule_id, Side.LEFT, None))
        out.pop((rule_id, Side.RIGHT, None))
        out[(rule_id, Side.BILATERAL, None)] = merged
    return list(out.values())


def _state_finding(catalog: Catalog, state: WorkupState) -> Finding:
    affected = [leg for leg in state.legs if leg.affected]
    parts = []
    for leg in affected:
        text = f"{leg.side.value} leg {STAGE_TEXT[leg.stage]}"
        if leg.next_steps:
            text += f", next {leg.next_steps[0].split(':')[0]}"
        parts.append(text)
    side = affected[0].side if len(affected) == 1 else Side.BILATERAL
    notes = tuple(
        f"{leg.side.value.capitalize()} leg: {STAGE_TEXT[leg.stage]}"
        + (f"; missing: {', '.join(leg.missing)}" if leg.missing else "")
        + (f"; next: {'; '.join(leg.next_steps)}" if leg.next_steps else "")
        for leg in affected
    )
    return Finding(
        catalog.settings.state_card_id,
        side,
        params={"legs": "; ".join(parts)},
        notes=notes,
    )


def check_registry(catalog: Catalog) -> None:
    """Fail fast when a registered rule has no card, is out of order, or cites other sources.

    Raises:
        ValueError: naming the rule.
    """
    order = list(catalog.settings.rules)
    positions = []
    for rule in REGISTRY:
        if rule.id not in order:
            raise ValueError(f"rule {rule.id} is not listed in cards/_catalog.yaml")
        if tuple(catalog.card(rule.id).sources) != rule.sources:
            raise ValueError(
                f"rule {rule.id}: sources differ from cards/{rule.id}.yaml"
            )
        positions.append(order.index(rule.id))
    if positions != sorted(positions):
        raise ValueError(
            "REGISTRY is not in the evaluation order of cards/_catalog.yaml"
        )

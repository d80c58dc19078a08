"""Central suppression of clinical-rules.md §2.5, driven by each card's `suppress` entries."""

from __future__ import annotations

from app.catalog.models import SuppressEntry
from app.workup.facts import LEGS, Side
from app.workup.rules.base import Finding, RuleContext


def apply_suppression(findings: list[Finding], ctx: RuleContext) -> list[Finding]:
    """Drop findings whose card lists a suppression condition that holds now."""
    return [f for f in findings if not _suppressed(f, findings, ctx)]


def _suppressed(finding: Finding, findings: list[Finding], ctx: RuleContext) -> bool:
    for entry in ctx.catalog.card(finding.rule_id).suppress:
        if entry.hooks and ctx.hook not in entry.hooks:
            continue
        if _holds(entry, finding, findings, ctx):
            return True
    return False


def _holds(
    entry: SuppressEntry, finding: Finding, findings: list[Finding], ctx: RuleContext
) -> bool:
    d = ctx.derived
    if entry.when == "dvt-active":
        # An acute thrombus is managed first: no NIVL-pathway advice on that leg.
        return finding.side is not None and any(
            d.dvt_active(leg) for leg in finding.side.legs
        )
    if entry.when == "systemic-edema-bilateral":
        if not (d.systemic_edema_causes and d.bilateral_symptoms()):
            return False
        return not (
            entry.unless_cfv_abnormal and any(d.cfv_abnormal(leg) for leg in LEGS)
        )
    return any(
        other.rule_id in entry.rules and _overlap(other.side, finding.side)
        for other in findings
        if other is not finding
    )


def _overlap(a: Side | None, b: Side | None) -> bool:
    if a is None or b is None:
        return True
    return bool(set(a.legs) & set(b.legs))

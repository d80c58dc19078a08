"""R09: venography with IVUS of the same leg is mandatory before an iliac vein stent."""

from __future__ import annotations

from collections.abc import Iterator

from app.workup.facts import LEGS
from app.workup.rules.base import Finding, Rule, RuleContext


def ivus_before_stent(ctx: RuleContext) -> Iterator[Finding]:
    """R09: stent drafted with no IVUS of that leg within W_IVUS and no IVUS order in the set."""
    d = ctx.derived
    for leg in LEGS:
        drafts = [s for s in d.stent_drafts(leg) if ctx.triggering(s.order)]
        if not drafts or d.ivus(leg) is not None or d.ivus_ordered(leg):
            continue
        yield Finding(
            "R09",
            leg,
            params={"side": leg.value},
            evidence=tuple(s.order.source for s in drafts),
            reasons=ctx.conditions(d.symptom_facts(leg)),
            # The stent draft is kept; venography is added only if none was done in W_IVUS.
            suggestion_set="ivus-only" if d.venogram(leg) else "default",
        )


RULES = (
    Rule(
        "R09",
        ("SEED-001", "SEED-003", "SIR-2023", "VIDIO", "AETNA-0382"),
        ivus_before_stent,
    ),
)

"""Rule registry in evaluation order (clinical-rules.md §2.5); add one line per new rule module."""

from __future__ import annotations

from app.workup.rules import (
    r00_data_quality,
    r01_dvt_exclusion,
    r02_r04_pelvic_imaging,
    r09_stent_ivus,
)
from app.workup.rules.base import Finding, Rule, RuleContext

REGISTRY: tuple[Rule, ...] = (
    *r00_data_quality.RULES,
    *r01_dvt_exclusion.RULES,
    *r02_r04_pelvic_imaging.RULES,
    *r09_stent_ivus.RULES,
)

__all__ = ["REGISTRY", "Finding", "Rule", "RuleContext"]

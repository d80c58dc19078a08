"""Rule registry in evaluation order (clinical-rules.md §2.5); add one line per new rule module."""

from __future__ import annotations

from app.workup.rules import (
    r00_data_quality,
    r01_dvt_exclusion,
    r02_r04_pelvic_imaging,
    r05_dvt_safety,
    r06_r07_systemic_mass,
    r08_xsec_alone,
    r09_stent_ivus,
    r10_r15_stent_checks,
    r12_symptom_gate,
    r16_r17_followup,
    r18_ivus_candidates,
    r19_pregnancy,
)
from app.workup.rules.base import Finding, Rule, RuleContext

REGISTRY: tuple[Rule, ...] = (
    *r00_data_quality.RULES,
    *r05_dvt_safety.RULES,
    *r01_dvt_exclusion.RULES,
    *r06_r07_systemic_mass.RULES,
    *r02_r04_pelvic_imaging.RULES,
    *r08_xsec_alone.RULES,
    *r18_ivus_candidates.RULES,
    *r09_stent_ivus.RULES,
    *r10_r15_stent_checks.RULES,
    *r12_symptom_gate.RULES,
    *r16_r17_followup.RULES,
    *r19_pregnancy.RULES,
)

__all__ = ["REGISTRY", "Finding", "Rule", "RuleContext"]

"""The CDS services this product offers, as published by the discovery endpoint."""

from __future__ import annotations

from dataclasses import dataclass

from app.fhir.prefetch import PREFETCH_TEMPLATES


@dataclass(frozen=True)
class ServiceDef:
    id: str
    hook: str
    title: str
    description: str


SERVICES: tuple[ServiceDef, ...] = (
    ServiceDef(
        id="iliac-workup-patient-view",
        hook="patient-view",
        title="Iliofemoral venous obstruction workup",
        description=(
            "Next step in the workup of a swollen or painful leg for iliac vein compression, iliac DVT or "
            "compression by a pelvic mass, per leg. Decision support, not a diagnosis."
        ),
    ),
    ServiceDef(
        id="iliac-workup-order-select",
        hook="order-select",
        title="Iliac venous imaging and stent order check (selection)",
        description=(
            "Checks selected venous imaging, IVUS, stent, filter, lysis and anticoagulant orders against the "
            "iliofemoral workup rules while they are being chosen."
        ),
    ),
    ServiceDef(
        id="iliac-workup-order-sign",
        hook="order-sign",
        title="Iliac venous imaging and stent order check (signing)",
        description=(
            "Final check before signing: IVUS before iliac vein stenting, stent length and sizing, symptom gate, "
            "DVT safety and pregnancy overlays."
        ),
    ),
)
SERVICES_BY_ID = {s.id: s for s in SERVICES}


def discovery_document() -> dict[str, object]:
    return {
        "services": [
            {
                "hook": s.hook,
                "title": s.title,
                "description": s.description,
                "id": s.id,
                "prefetch": dict(PREFETCH_TEMPLATES),
            }
            for s in SERVICES
        ]
    }

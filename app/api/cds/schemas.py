"""CDS Hooks 2.0 wire models: https://cds-hooks.hl7.org/2.0/ (request, response, discovery, feedback)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

JsonObject = dict[str, object]
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=512)]
HOOKS = ("patient-view", "order-select", "order-sign")


def _uuid_text(value: str) -> str:
    """hookInstance is a UUID (CDS Hooks 2.0); the audit stores it as text."""
    try:
        uuid.UUID(value)
    except ValueError:
        raise ValueError("must be a UUID") from None
    return value


def _plausible_year(value: datetime) -> datetime:
    if not 1900 <= value.year <= 2200:
        raise ValueError("year must be between 1900 and 2200")
    return value


class CdsModel(BaseModel):
    """Spec names through camelCase aliases; unknown members are tolerated (forward compatibility)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore"
    )


class FhirAuthorization(BaseModel):
    """https://cds-hooks.hl7.org/2.0/#passing-the-access-token-to-the-cds-service (members are snake_case)."""

    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    access_token: Annotated[str, StringConstraints(min_length=1, max_length=8192)]
    token_type: Literal["Bearer"]
    expires_in: int
    scope: NonEmpty
    subject: NonEmpty
    patient: NonEmpty | None = None


class CdsRequest(CdsModel):
    """https://cds-hooks.hl7.org/2.0/#http-request-1"""

    model_config = ConfigDict(hide_input_in_errors=True)

    hook: NonEmpty
    hook_instance: Annotated[str, AfterValidator(_uuid_text)]
    fhir_server: (
        Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None
    ) = None
    fhir_authorization: FhirAuthorization | None = None
    context: JsonObject
    prefetch: dict[str, JsonObject | None] | None = None

    @field_validator("fhir_authorization")
    @classmethod
    def _authorization_needs_server(
        cls, value: FhirAuthorization | None, info: ValidationInfo
    ) -> FhirAuthorization | None:
        if value is not None and info.data.get("fhir_server") is None:
            raise ValueError("fhirAuthorization requires fhirServer")
        return value


class PatientViewContext(CdsModel):
    """https://cds-hooks.org/hooks/patient-view/"""

    model_config = ConfigDict(hide_input_in_errors=True)

    user_id: NonEmpty
    patient_id: NonEmpty
    encounter_id: NonEmpty | None = None


class OrderSignContext(PatientViewContext):
    """https://cds-hooks.org/hooks/order-sign/"""

    draft_orders: JsonObject

    @field_validator("draft_orders")
    @classmethod
    def _draft_orders_is_bundle(cls, value: JsonObject) -> JsonObject:
        if value.get("resourceType") != "Bundle":
            raise ValueError("must be a FHIR Bundle")
        entries = value.get("entry", [])
        if not isinstance(entries, list):
            raise ValueError("entry must be a list")
        for i, entry in enumerate(entries):
            # An entry without a resource would be silently left unchecked.
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict) or not isinstance(
                resource.get("resourceType"), str
            ):
                raise ValueError(f"entry[{i}] has no FHIR resource")
        return value


class OrderSelectContext(OrderSignContext):
    """https://cds-hooks.org/hooks/order-select/"""

    selections: list[NonEmpty] = Field(min_length=1)

    @model_validator(mode="after")
    def _selections_name_draft_orders(self) -> OrderSelectContext:
        # A selection that names no draft order would make the check silently look at nothing.
        entries = self.draft_orders.get("entry")
        drafts = {
            f"{r.get('resourceType')}/{r.get('id')}"
            for e in (entries if isinstance(entries, list) else [])
            if isinstance(e, dict) and isinstance(r := e.get("resource"), dict)
        }
        unknown = [s for s in self.selections if s not in drafts]
        if unknown:
            raise ValueError(
                f"selections {unknown[:5]} name no resource in draftOrders"
            )
        return self


class Coding(CdsModel):
    """https://cds-hooks.hl7.org/2.0/#coding"""

    code: str
    system: str | None = None
    display: str | None = None


class Source(CdsModel):
    """https://cds-hooks.hl7.org/2.0/#source"""

    label: str
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(CdsModel):
    """https://cds-hooks.hl7.org/2.0/#action"""

    type: Literal["create", "update", "delete"]
    description: str
    resource: JsonObject | None = None
    resource_id: str | None = None

    @model_validator(mode="after")
    def _resource_by_type(self) -> Action:
        if self.type in ("create", "update") and self.resource is None:
            raise ValueError(f"a {self.type} action needs a resource")
        if self.type == "delete" and self.resource_id is None:
            raise ValueError("a delete action needs a resourceId")
        return self


class Suggestion(CdsModel):
    """https://cds-hooks.hl7.org/2.0/#suggestion"""

    label: str
    uuid: str | None = None
    is_recommended: bool | None = None
    actions: list[Action] | None = None


class Link(CdsModel):
    """https://cds-hooks.hl7.org/2.0/#link"""

    label: str
    url: str
    type: Literal["absolute", "smart"]
    app_context: str | None = None

    @model_validator(mode="after")
    def _app_context_only_for_smart(self) -> Link:
        if self.app_context is not None and self.type != "smart":
            raise ValueError("appContext is only allowed on smart links")
        return self


class Card(CdsModel):
    """https://cds-hooks.hl7.org/2.0/#card-attributes"""

    uuid: str | None = None
    summary: Annotated[str, StringConstraints(min_length=1, max_length=140)]
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selection_behavior: Literal["at-most-one", "any"] | None = None
    override_reasons: list[Coding] | None = None
    links: list[Link] | None = None

    @model_validator(mode="after")
    def _selection_behavior_with_suggestions(self) -> Card:
        if self.suggestions and self.selection_behavior is None:
            raise ValueError(
                "selectionBehavior is required when suggestions are present"
            )
        return self


class CdsResponse(CdsModel):
    """https://cds-hooks.hl7.org/2.0/#cds-service-response"""

    cards: list[Card]
    system_actions: list[Action] | None = None


class CdsService(CdsModel):
    """https://cds-hooks.hl7.org/2.0/#response"""

    hook: str
    title: str
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usage_requirements: str | None = None


class DiscoveryResponse(CdsModel):
    services: list[CdsService]


class AcceptedSuggestion(CdsModel):
    id: NonEmpty


class OverrideReason(CdsModel):
    """https://cds-hooks.hl7.org/2.0/#overridereason"""

    model_config = ConfigDict(hide_input_in_errors=True)

    reason: Coding | None = None
    user_comment: Annotated[str, StringConstraints(max_length=4000)] | None = None


class Feedback(CdsModel):
    """https://cds-hooks.hl7.org/2.0/#feedback"""

    model_config = ConfigDict(hide_input_in_errors=True)

    card: NonEmpty
    outcome: Literal["accepted", "overridden"]
    accepted_suggestions: list[AcceptedSuggestion] | None = None
    override_reason: OverrideReason | None = None
    outcome_timestamp: Annotated[AwareDatetime, AfterValidator(_plausible_year)]

    @field_validator("override_reason")
    @classmethod
    def _reason_only_when_overridden(
        cls, value: OverrideReason | None, info: ValidationInfo
    ) -> OverrideReason | None:
        if value is not None and info.data.get("outcome") == "accepted":
            raise ValueError("an accepted outcome cannot carry an overrideReason")
        return value


class FeedbackRequest(CdsModel):
    model_config = ConfigDict(hide_input_in_errors=True)

    feedback: list[Feedback] = Field(min_length=1, max_length=500)


class FeedbackResponse(CdsModel):
    stored: int
    duplicates: int


class ErrorResponse(BaseModel):
    error: str
    detail: str

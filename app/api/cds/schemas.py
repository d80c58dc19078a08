"""CDS Hooks 2.0 wire models: https://cds-hooks.hl7.org/2.0/ (request, response, discovery, feedback)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.alias_generators import to_camel

JsonObject = dict[str, object]
NonEmpty = Annotated[str, StringConstraints(min_length=1, max_length=512)]
HOOKS = ("patient-view", "order-select", "order-sign")


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
    hook_instance: NonEmpty
    fhir_server: (
        Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None
    ) = None
    fhir_authorization: FhirAuthorization | None = None
    context: JsonObject
    prefetch: dict[str, JsonObject | None] | None = None

    @model_validator(mode="after")
    def _authorization_needs_server(self) -> CdsRequest:
        if self.fhir_authorization is not None and self.fhir_server is None:
            raise ValueError("fhirAuthorization requires fhirServer")
        return self


class PatientViewContext(CdsModel):
    """https://cds-hooks.org/hooks/patient-view/"""

    model_config = ConfigDict(hide_input_in_errors=True)

    user_id: NonEmpty
    patient_id: NonEmpty
    encounter_id: NonEmpty | None = None


class OrderSignContext(PatientViewContext):
    """https://cds-hooks.org/hooks/order-sign/"""

    draft_orders: JsonObject

    @model_validator(mode="after")
    def _draft_orders_is_bundle(self) -> OrderSignContext:
        if self.draft_orders.get("resourceType") != "Bundle":
            raise ValueError("context.draftOrders must be a FHIR Bundle")
        return self


class OrderSelectContext(OrderSignContext):
    """https://cds-hooks.org/hooks/order-select/"""

    selections: list[NonEmpty] = Field(min_length=1)


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
    outcome_timestamp: AwareDatetime


class FeedbackRequest(CdsModel):
    model_config = ConfigDict(hide_input_in_errors=True)

    feedback: list[Feedback] = Field(min_length=1, max_length=500)


class FeedbackResponse(CdsModel):
    stored: int
    duplicates: int


class ErrorResponse(BaseModel):
    error: str
    detail: str

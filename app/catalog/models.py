"""Pydantic schemas of the data files in fhir_mappings/ and cards/ (extra keys are errors)."""

from __future__ import annotations

import re
import string
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Side = Literal["left", "right", "bilateral"]
Hook = Literal["patient-view", "order-select", "order-sign"]
Indicator = Literal["info", "warning", "critical"]
CodeStatus = Literal["V", "V1", "U", "X", "local"]
Category = Literal[
    "condition",
    "finding",
    "measurement",
    "lab",
    "imaging",
    "procedure",
    "device",
    "medication",
]
SuppressWhen = Literal["dvt-active", "systemic-edema-bilateral", "rule-fires"]

_RANGE = re.compile(r"^[A-Z0-9]{1,3}-[A-Z0-9]{1,3}$")
_KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


class StrictModel(BaseModel):
    """Base for every data-file model: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _require_str(value: object) -> object:
    # YAML turns unquoted codes into ints (and 0123 into octal 83), so codes must be quoted strings.
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"code {value!r} must be a quoted string in YAML")
    return value


class CodeEntry(StrictModel):
    """One code (exact, `PREFIX*`, or a category range like C81-C88) that identifies a concept."""

    system: str
    code: str | None = None
    range: str | None = None
    status: CodeStatus
    display: str | None = None
    side: Side | None = None
    side_digit: bool = False
    segment: str | None = None
    requires_site: str | None = None
    tags: tuple[str, ...] = ()

    _code_is_str = field_validator("code", mode="before")(_require_str)

    @model_validator(mode="after")
    def _one_selector(self) -> CodeEntry:
        if (self.code is None) == (self.range is None):
            raise ValueError("give exactly one of `code` or `range`")
        if self.range is not None and not _RANGE.match(self.range):
            raise ValueError(f"range {self.range!r} must look like C81-C88")
        if self.code is not None and "*" in self.code[:-1]:
            raise ValueError(
                f"code {self.code!r}: `*` is allowed only at the end (prefix match)"
            )
        if self.side is not None and self.side_digit:
            raise ValueError("give either `side` or `side_digit`, not both")
        return self


class Concept(StrictModel):
    """A fact kind and the codes that identify it."""

    kind: str
    label: str
    category: Category
    side_specific: bool = False
    unit: str | None = None
    tags: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    codes: tuple[CodeEntry, ...] = Field(min_length=1)

    @field_validator("kind")
    @classmethod
    def _kebab(cls, value: str) -> str:
        if not _KEBAB.match(value):
            raise ValueError(f"kind {value!r} must be kebab-case")
        return value


class ValueEntry(StrictModel):
    """Standard codes that mean one coded result value (e.g. 373140001 -> no-thrombus)."""

    token: str
    codes: tuple[CodeEntry, ...] = Field(min_length=1)


class BodySite(StrictModel):
    """A body structure, the site token it becomes, and the groups it belongs to."""

    site: str
    groups: tuple[str, ...] = ()
    codes: tuple[CodeEntry, ...] = Field(min_length=1)


class LateralityCode(StrictModel):
    side: Side
    system: str
    code: str
    status: CodeStatus

    _code_is_str = field_validator("code", mode="before")(_require_str)


class Laterality(StrictModel):
    """Where laterality is read from: qualifier extensions, laterality codes, CPT modifiers."""

    extensions: tuple[str, ...]
    codes: tuple[LateralityCode, ...]
    modifiers: dict[str, Side] = {}


class MethodEntry(StrictModel):
    """Codes for a measuring method or modality (ivus, ct, mr, us, venography)."""

    tag: str
    codes: tuple[CodeEntry, ...] = Field(min_length=1)


class UnitFamily(StrictModel):
    """UCUM units accepted for one kind of quantity and their factor to the canonical unit."""

    canonical: str
    factors: dict[str, Decimal]

    @model_validator(mode="after")
    def _canonical_listed(self) -> UnitFamily:
        if self.factors.get(self.canonical) != Decimal(1):
            raise ValueError(f"canonical unit {self.canonical!r} must have factor 1")
        return self


class MappingFile(StrictModel):
    """One file of fhir_mappings/; every section is optional and sections merge across files."""

    systems: dict[str, str] = {}
    concepts: tuple[Concept, ...] = ()
    values: tuple[ValueEntry, ...] = ()
    body_sites: tuple[BodySite, ...] = ()
    laterality: Laterality | None = None
    methods: tuple[MethodEntry, ...] = ()
    units: dict[str, UnitFamily] = {}
    extensions: dict[str, str] = {}


class Coding(StrictModel):
    system: str
    code: str
    display: str

    _code_is_str = field_validator("code", mode="before")(_require_str)


class OrderTemplate(StrictModel):
    """A ServiceRequest (or MedicationRequest) a card may suggest; codes per side (`any` applies to every side)."""

    resource_type: Literal["ServiceRequest", "MedicationRequest"] = "ServiceRequest"
    text: str
    codes: dict[Literal["any", "left", "right", "bilateral"], tuple[Coding, ...]]
    body_sites: tuple[Coding, ...] = ()
    lateralise: bool = True
    category: Coding | None = None
    note: str | None = None


class OrdersFile(StrictModel):
    orders: dict[str, OrderTemplate]


class SourcesFile(StrictModel):
    sources: dict[str, str]


class Windows(StrictModel):
    """Time windows of clinical-rules.md §2.3, in days relative to `now`."""

    acute_dvt_days: int
    duplex_days: int
    xsec_days: int
    ivus_days: int
    stale_days: int
    conflict_days: int
    symptom_recent_days: int
    dvt_recent_days: int
    surveil_days: int
    surveil_stent_min_days: int
    repeat_us_days: int


class Thresholds(StrictModel):
    """Design thresholds used by the derived facts (clinical-rules.md §2.4)."""

    albumin_low_g_dl: Decimal
    ceap_symptomatic_class: int
    villalta_symptomatic: int


class CatalogSettingsFile(StrictModel):
    """cards/_catalog.yaml: rule order, rules code system, windows and thresholds."""

    rules_system: str
    summary_max_chars: int = 140
    state_card_id: str
    rules: tuple[str, ...]
    windows: Windows
    thresholds: Thresholds


class Variant(StrictModel):
    indicator: Indicator
    summary: str


class SuggestionAction(StrictModel):
    type: Literal["create", "delete"]
    description: str
    order: str | None = None

    @model_validator(mode="after")
    def _order_for_create(self) -> SuggestionAction:
        if (self.type == "create") != (self.order is not None):
            raise ValueError(
                "a create action names an `order`; a delete action does not"
            )
        return self


class SuggestionTemplate(StrictModel):
    id: str
    label: str
    actions: tuple[SuggestionAction, ...] = Field(min_length=1)


class OverrideReason(StrictModel):
    code: str
    display: str


class SuppressEntry(StrictModel):
    """A central suppression condition (clinical-rules.md §2.5) that removes this card."""

    when: SuppressWhen
    rules: tuple[str, ...] = ()
    hooks: tuple[Hook, ...] = ()
    unless_cfv_abnormal: bool = False


class CardTemplate(StrictModel):
    """cards/<rule-id>.yaml: wording, indicator, sources, suggestions and parameters of one rule."""

    id: str
    title: str
    # When the rule fires, in words (rules catalogue, docs/rules.md); every rule card has one (tests/test_review.py).
    condition: str | None = None
    hooks: tuple[Hook, ...] = Field(min_length=1)
    sources: tuple[str, ...] = Field(min_length=1)
    label_sources: tuple[str, ...] = Field(min_length=1)
    leg_specific: bool
    merge_bilateral: bool = False
    facts: tuple[str, ...] = ()
    stale_facts: tuple[str, ...] = ()
    variants: dict[str, Variant]
    detail: str
    selection_behavior: Literal["at-most-one", "any"] | None = None
    suggestion_sets: dict[str, tuple[SuggestionTemplate, ...]] = {}
    override_reasons: tuple[OverrideReason, ...] = ()
    suppress: tuple[SuppressEntry, ...] = ()
    params: dict[str, Decimal] = {}

    @model_validator(mode="after")
    def _consistent(self) -> CardTemplate:
        if "default" not in self.variants:
            raise ValueError("variants must include `default`")
        if bool(self.suggestion_sets) != (self.selection_behavior is not None):
            raise ValueError(
                "selection_behavior is required exactly when suggestion_sets exist"
            )
        if self.suggestion_sets and "default" not in self.suggestion_sets:
            raise ValueError("suggestion_sets must include `default`")
        if not set(self.label_sources) <= set(self.sources):
            raise ValueError("label_sources must be a subset of sources")
        if not set(self.stale_facts) <= set(self.facts):
            raise ValueError("stale_facts must be a subset of facts")
        for name, variant in self.variants.items():
            _check_placeholders(f"variant {name}", variant.summary)
        return self


def _check_placeholders(where: str, template: str) -> None:
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is not None and (not field.isidentifier() or spec or conversion):
            raise ValueError(f"{where}: placeholder {{{field}}} must be a plain name")


def placeholders(template: str) -> tuple[str, ...]:
    """Names of the `{placeholders}` in a summary template."""
    return tuple(f for _, f, _, _ in string.Formatter().parse(template) if f)

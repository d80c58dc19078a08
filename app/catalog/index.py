"""The loaded catalogue: a code index built once at startup, card templates and settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from app.catalog.models import (
    CardTemplate,
    CatalogSettingsFile,
    CodeEntry,
    Concept,
    OrderTemplate,
    Side,
    UnitFamily,
)

_SIDE_DIGITS: dict[str, Side] = {"1": "right", "2": "left", "3": "bilateral"}


@dataclass(frozen=True)
class ConceptMatch:
    """A code resolved to its concept, with the side and segment the code itself implies."""

    kind: str
    label: str
    category: str
    side_specific: bool
    unit: str | None
    tags: frozenset[str]
    side: Side | None
    segment: str | None
    requires_site: str | None


@dataclass(frozen=True)
class SiteInfo:
    site: str
    groups: frozenset[str]


KNOWN_CODES_MAX = 4096


@dataclass
class CodeIndex:
    """Exact, prefix and range lookups of (system URI, code); built by the loader only."""

    exact: dict[tuple[str, str], list[tuple[Concept, CodeEntry]]] = field(
        default_factory=dict
    )
    prefixes: dict[str, list[tuple[str, Concept, CodeEntry]]] = field(
        default_factory=dict
    )
    ranges: dict[str, list[tuple[str, str, Concept, CodeEntry]]] = field(
        default_factory=dict
    )
    values: dict[tuple[str, str], str] = field(default_factory=dict)
    sites: dict[tuple[str, str], SiteInfo] = field(default_factory=dict)
    site_tokens: dict[str, SiteInfo] = field(default_factory=dict)
    laterality: dict[tuple[str, str], Side] = field(default_factory=dict)
    methods: dict[tuple[str, str], str] = field(default_factory=dict)
    local_system: str = ""
    # knows() per (system, code): a record repeats the same few dozen lab and vital codes thousands of times, and
    # a miss tries every prefix and range of its system. Codes come from requests, so the memo is bounded.
    _known: dict[tuple[str, str], bool] = field(
        default_factory=dict, repr=False, compare=False
    )

    def add(self, system: str, concept: Concept, entry: CodeEntry) -> None:
        self._known.clear()
        if entry.range is not None:
            low, high = entry.range.split("-")
            self.ranges.setdefault(system, []).append((low, high, concept, entry))
        elif entry.code is not None and entry.code.endswith("*"):
            bucket = self.prefixes.setdefault(system, [])
            bucket.append((entry.code[:-1], concept, entry))
            # Longest prefix first, so I82.52* wins over I82.5*.
            bucket.sort(key=lambda item: -len(item[0]))
        elif entry.code is not None:
            self.exact.setdefault((system, entry.code), []).append((concept, entry))

    def lookup(self, system: str, code: str) -> tuple[ConceptMatch, ...]:
        """Concepts a coding denotes: exact codes, then the longest prefix and the ranges of other kinds.

        One code may mean several kinds (O22.3x is both a DVT and a pregnancy), so every kind is returned once.
        """
        found = [(c, e) for c, e in self.exact.get((system, code), ())]
        for prefix, concept, entry in self.prefixes.get(system, ()):
            if code.startswith(prefix):
                found.append((concept, entry))
        for low, high, concept, entry in self.ranges.get(system, ()):
            if low <= code[: len(low)] <= high:
                found.append((concept, entry))
        seen: set[str] = set()
        matches: list[ConceptMatch] = []
        for concept, entry in found:
            if concept.kind not in seen:
                seen.add(concept.kind)
                matches.append(_match(concept, entry, code))
        return tuple(matches)

    def knows(self, system: str, code: str) -> bool:
        """Cheap membership test used to select resources before validating them (remembered per code)."""
        pair = (system, code)
        known = self._known.get(pair)
        if known is None:
            known = self._lookup_known(system, code)
            if len(self._known) >= KNOWN_CODES_MAX:
                self._known.clear()
            self._known[pair] = known
        return known

    def _lookup_known(self, system: str, code: str) -> bool:
        if (system, code) in self.exact:
            return True
        if any(
            code.startswith(prefix) for prefix, _, _ in self.prefixes.get(system, ())
        ):
            return True
        return any(
            low <= code[: len(low)] <= high
            for low, high, _, _ in self.ranges.get(system, ())
        )

    def value(self, system: str, code: str) -> str | None:
        """Result-value token of a coding; local codes are their own token."""
        if system == self.local_system:
            return code
        return self.values.get((system, code))

    def site(self, system: str, code: str) -> SiteInfo | None:
        return self.sites.get((system, code))

    def site_groups(self, token: str) -> frozenset[str]:
        """Groups of a site token (`civ` -> civ, iliac, pelvic-region ...); unknown tokens stand alone."""
        info = self.site_tokens.get(token)
        return info.groups if info is not None else frozenset({token})

    def side(self, system: str, code: str) -> Side | None:
        return self.laterality.get((system, code))

    def method(self, system: str, code: str) -> str | None:
        return self.methods.get((system, code))


def _match(concept: Concept, entry: CodeEntry, code: str) -> ConceptMatch:
    side = entry.side
    if entry.side_digit:
        side = _SIDE_DIGITS.get(code[-1:])
    return ConceptMatch(
        kind=concept.kind,
        label=concept.label,
        category=concept.category,
        side_specific=concept.side_specific,
        unit=concept.unit,
        tags=frozenset(concept.tags) | frozenset(entry.tags),
        side=side,
        segment=entry.segment,
        requires_site=entry.requires_site,
    )


@dataclass(frozen=True)
class FileSummary:
    """One row of `Catalog.describe()`: a data file and what it contributed."""

    path: str
    section: str
    items: int
    codes: int


@dataclass(frozen=True)
class Catalog:
    """Everything the engine needs from the data files; immutable after `load_catalog`."""

    local_system: str
    settings: CatalogSettingsFile
    systems: Mapping[str, str]
    index: CodeIndex
    concepts: Mapping[str, Concept]
    cards: Mapping[str, CardTemplate]
    orders: Mapping[str, OrderTemplate]
    sources: Mapping[str, str]
    units: Mapping[str, UnitFamily]
    laterality_extensions: frozenset[str]
    modifiers: Mapping[str, Side]
    extensions: Mapping[str, str]
    files: tuple[FileSummary, ...]

    def card(self, rule_id: str) -> CardTemplate:
        return self.cards[rule_id]

    def param(self, rule_id: str, name: str) -> Decimal:
        """A numeric threshold from cards/<rule_id>.yaml `params`."""
        return self.cards[rule_id].params[name]

    def system(self, alias: str) -> str:
        """Resolve a system alias (`loinc`, `sct`, `local` ...) to its URI."""
        return self.local_system if alias == "local" else self.systems[alias]

    def describe(self) -> tuple[FileSummary, ...]:
        """Counts per data file, for `iliac-cds check`."""
        return self.files

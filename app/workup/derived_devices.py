"""IVUS(side), STENT_DRAFT(side), STENT_IN_SITU(side) of clinical-rules.md §2.4 (mixed into Derived)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from app.catalog.index import Catalog
from app.catalog.models import Windows
from app.workup.facts import Fact, FactSet, Measure, Side, Status
from app.workup.memo import per_call

_NO_DATE = datetime(1, 1, 1, tzinfo=UTC)


def date_key(fact: Fact) -> tuple[datetime, str]:
    """Sort key: undated facts first, then by date, then by reference (deterministic)."""
    return (fact.date or _NO_DATE, fact.source)


@dataclass(frozen=True)
class Ivus:
    """IVUS(side): the latest IVUS evidence within W_IVUS and its measurements."""

    date: datetime | None
    sources: tuple[str, ...]
    stenosis: Measure | None
    mld: Measure | None
    reference: Measure | None
    behavior: str | None


@dataclass(frozen=True)
class StentDraft:
    """STENT_DRAFT(side): a drafted iliac vein stent and its planned dimensions."""

    order: Fact
    lengths: tuple[Measure | None, ...]
    diameters: tuple[Measure | None, ...]
    extension: bool


class DevicePredicates:
    """IVUS and stent predicates; `Derived` provides the attributes declared here."""

    facts: FactSet
    catalog: Catalog
    now: datetime
    windows: Windows
    _answers: dict[tuple[object, ...], object]

    def within(self, fact: Fact, days: int) -> bool:
        raise NotImplementedError

    def groups(self, fact: Fact) -> frozenset[str]:
        raise NotImplementedError

    def _record(self, *kinds: str) -> tuple[Fact, ...]:
        raise NotImplementedError

    @per_call
    def ivus(self, leg: Side) -> Ivus | None:
        """IVUS(leg): IVUS evidence on that leg within W_IVUS (stale IVUS never counts)."""
        days = self.windows.ivus_days
        evidence = [
            f
            for f in self.facts.facts
            if not f.draft
            and f.is_result
            and f.on(leg)
            and (f.kind == "ivus" or "ivus" in f.methods)
            and self.within(f, days)
        ]
        if not evidence:
            return None
        latest = max(evidence, key=date_key)

        def pick(kind: str, role: str | None = None) -> Measure | None:
            found = [
                f for f in evidence if f.kind == kind and f.measure and _role(f) == role
            ]
            return max(found, key=date_key).measure if found else None

        behavior = [f for f in evidence if f.kind == "lesion-behavior" and f.value]
        return Ivus(
            date=latest.date,
            sources=tuple(sorted({f.source for f in evidence})),
            stenosis=pick("diameter-stenosis"),
            mld=pick("lumen-diameter", "mld"),
            reference=pick("lumen-diameter", "reference"),
            behavior=max(behavior, key=date_key).value if behavior else None,
        )

    @per_call
    def ivus_ordered(self, leg: Side) -> tuple[Fact, ...]:
        """IVUS orders for that leg in the same draftOrders (a doNotPerform order is not an order to do it)."""
        return tuple(
            f
            for f in self.facts.of("ivus")
            if f.draft and f.status is not Status.DO_NOT_PERFORM and f.on(leg)
        )

    @per_call
    def venogram(self, leg: Side) -> tuple[Fact, ...]:
        return tuple(
            f
            for f in self._record("venography")
            if f.is_result and f.on(leg) and self.within(f, self.windows.ivus_days)
        )

    @per_call
    def stent_drafts(self, leg: Side) -> tuple[StentDraft, ...]:
        """STENT_DRAFT(leg): drafted stents with their planned length/diameter (DeviceRequest or extension)."""
        drafts = [
            f for f in self.facts.of("stent", "stent-device") if f.draft and f.on(leg)
        ]
        # A doNotPerform stent order (and the device planned for it) is not a stent to check.
        refused = {f.source for f in drafts if f.status is Status.DO_NOT_PERFORM}
        drafts = [
            f
            for f in drafts
            if f.status is not Status.DO_NOT_PERFORM and not set(f.links) & refused
        ]
        orders = {f.source for f in drafts if f.kind == "stent"}
        devices = [f for f in drafts if f.kind == "stent-device"]
        result = []
        for order in (f for f in drafts if f.kind == "stent"):
            linked = {d.source for d in devices if order.source in d.links}
            result.append(self._stent(order, {order.source} | linked))
        for device in devices:
            if not set(device.links) & orders:
                result.append(self._stent(device, {device.source}))
        return tuple(result)

    def _stent(self, order: Fact, parts: set[str]) -> StentDraft:
        measures = [f for f in self.facts.facts if f.part_of in parts]
        return StentDraft(
            order=order,
            lengths=tuple(f.measure for f in measures if f.kind == "stent-length"),
            diameters=tuple(f.measure for f in measures if f.kind == "stent-diameter"),
            extension=any(
                f.kind == "stent-extension" and f.value == "true" for f in measures
            ),
        )

    @per_call
    def stent_in_situ(self, leg: Side) -> Fact | None:
        """STENT_IN_SITU(leg): completed iliac/CFV stent procedure or implant status (never stale)."""
        placed = [
            f
            for f in (*self.facts.facts, *self.facts.stale)
            if not f.draft
            and f.on(leg)
            and (
                (f.kind == "stent" and f.status is Status.COMPLETED)
                or (
                    f.kind == "stent-status"
                    and f.is_active
                    and "stent-site" in self.groups(f)
                )
            )
        ]
        return max(placed, key=date_key) if placed else None


def _role(fact: Fact) -> str | None:
    if fact.kind != "lumen-diameter":
        return None
    if "reference" in fact.tags or ("eiv" in fact.sites and "mld" not in fact.tags):
        return "reference"
    return "mld"

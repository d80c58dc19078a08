"""The pathway page's view model: patient banner, per-leg stages with evidence, cards, imaging timeline.

Pure data shaping from the engine's WorkupState and card JSON; the templates only lay it out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from app.smart.oauth import AppContext
from app.workup.jsontypes import JsonObject
from app.workup.state import STAGE_TEXT, FactRef, LegState, WorkupState


class StageStatus(StrEnum):
    """done: evidence on record; current: the next step; missing: skipped although a later stage is done;
    upcoming: not reached yet."""

    DONE = "done"
    CURRENT = "current"
    MISSING = "missing"
    UPCOMING = "upcoming"


STATUS_TEXT = {
    StageStatus.DONE: "Done",
    StageStatus.CURRENT: "Next step",
    StageStatus.MISSING: "Missing",
    StageStatus.UPCOMING: "Not yet",
}

SYMPTOM_KINDS = frozenset(
    {
        "leg-edema",
        "leg-pain",
        "swelling-extent",
        "ceap-c",
        "varicose-veins",
        "villalta-total",
        "lymphedema",
    }
)
DVT_KINDS = frozenset(
    {"duplex-leg", "cfv-waveform", "dvt", "thrombus", "iliac-visualization"}
)
PELVIC_KINDS = frozenset({"cross-sectional-study", "pelvic-mass", "characterised-mass"})
LESION_KINDS = frozenset(
    {"diameter-stenosis", "lumen-diameter", "lesion-behavior", "obstruction-etiology"}
)
INVASIVE_KINDS = frozenset({"ivus", "venography"})
STENT_KINDS = frozenset({"stent", "stent-status"})
IMAGING_KINDS = DVT_KINDS | PELVIC_KINDS | LESION_KINDS | INVASIVE_KINDS | STENT_KINDS


@dataclass(frozen=True)
class Evidence:
    label: str
    value: str | None
    date: str | None
    source: str
    status: str


@dataclass(frozen=True)
class StageView:
    key: str
    title: str
    status: StageStatus
    evidence: tuple[Evidence, ...]

    @property
    def status_text(self) -> str:
        return STATUS_TEXT[self.status]


@dataclass(frozen=True)
class LegView:
    side: str
    title: str
    summary: str
    affected: bool
    focused: bool
    stages: tuple[StageView, ...]
    missing: tuple[str, ...]
    next_steps: tuple[str, ...]


@dataclass(frozen=True)
class CardView:
    rule: str
    summary: str
    indicator: str
    side: str | None
    source_label: str
    paragraphs: tuple[tuple[str, tuple[str, ...]], ...]  # (kind "p" | "ul", lines)
    rule_url: str | None
    focused: bool


@dataclass(frozen=True)
class PatientBanner:
    id: str
    name: str
    birth_date: str | None
    gender: str | None


def patient_banner(
    patient_id: str, resources: Iterable[Mapping[str, object]]
) -> PatientBanner:
    """Name, birth date and gender of the Patient resource (synthetic in tests; never logged)."""
    for resource in resources:
        if (
            resource.get("resourceType") == "Patient"
            and resource.get("id") == patient_id
        ):
            birth = resource.get("birthDate")
            gender = resource.get("gender")
            return PatientBanner(
                patient_id,
                _human_name(resource.get("name")) or "Name not recorded",
                birth if isinstance(birth, str) else None,
                gender if isinstance(gender, str) else None,
            )
    return PatientBanner(patient_id, "Name not recorded", None, None)


def _human_name(value: object) -> str | None:
    if not isinstance(value, list):
        return None
    names = [n for n in value if isinstance(n, dict)]
    official = [n for n in names if n.get("use") == "official"] or names
    for name in official:
        text = name.get("text")
        if isinstance(text, str) and text.strip():
            return text.strip()
        given = name.get("given")
        family = name.get("family")
        parts = (
            [g for g in given if isinstance(g, str)] if isinstance(given, list) else []
        )
        if isinstance(family, str):
            parts.append(family)
        if parts:
            return " ".join(parts)
    return None


def leg_views(state: WorkupState, focus: AppContext) -> tuple[LegView, ...]:
    return tuple(_leg_view(leg, focus) for leg in state.legs)


def _leg_view(leg: LegState, focus: AppContext) -> LegView:
    side = leg.side.value
    facts = leg.facts
    invasive_dates = {f.date[:10] for f in facts if f.kind in INVASIVE_KINDS and f.date}

    def lesion_at_ivus(fact: FactRef) -> bool:
        return (
            fact.kind in LESION_KINDS
            and bool(fact.date)
            and (fact.date or "")[:10] in invasive_dates
        )

    def pick(predicate: Callable[[FactRef], bool]) -> tuple[Evidence, ...]:
        return tuple(_evidence(f) for f in facts if predicate(f))

    dvt_done = leg.dvt_excluded or leg.dvt_active
    dvt_title = "DVT confirmed" if leg.dvt_active else "DVT excluded or confirmed"
    if leg.dvt_excluded and not leg.dvt_active:
        dvt_title = "DVT excluded"
    stents = [f for f in facts if f.kind in STENT_KINDS]
    plan = [
        (
            "symptoms",
            "Symptoms",
            leg.symptomatic,
            pick(lambda f: f.kind in SYMPTOM_KINDS),
        ),
        ("dvt", dvt_title, dvt_done, pick(lambda f: f.kind in DVT_KINDS)),
        (
            "pelvic-imaging",
            "Pelvic imaging (CT or MR venography)",
            leg.pelvic_imaging,
            pick(
                lambda f: (
                    f.kind in PELVIC_KINDS
                    or (f.kind in LESION_KINDS and not lesion_at_ivus(f))
                )
            ),
        ),
        (
            "venography-ivus",
            "Venography and IVUS",
            leg.ivus,
            pick(lambda f: f.kind in INVASIVE_KINDS or lesion_at_ivus(f)),
        ),
        (
            "treatment-decision",
            "Treatment decision",
            leg.stent_drafted or leg.stent_in_situ,
            tuple(_evidence(f) for f in stents if f.status == "draft"),
        ),
        (
            "post-stent",
            "Post-stent follow-up",
            leg.stent_in_situ,
            tuple(_evidence(f) for f in stents if f.status != "draft"),
        ),
    ]
    furthest = max((i for i, stage in enumerate(plan) if stage[2]), default=-1)
    affected = leg.symptomatic or bool(facts)
    current = next((i for i in range(furthest + 1, len(plan)) if not plan[i][2]), None)
    stages = []
    for i, (key, title, done, evidence) in enumerate(plan):
        if done:
            status = StageStatus.DONE
        elif i < furthest:
            status = StageStatus.MISSING
        elif affected and i == current:
            status = StageStatus.CURRENT
        else:
            status = StageStatus.UPCOMING
        stages.append(StageView(key, title, status, evidence))
    return LegView(
        side,
        f"{side.capitalize()} leg",
        STAGE_TEXT[leg.stage],
        leg.affected,
        focus.leg in (side, "bilateral"),
        tuple(stages),
        leg.missing,
        leg.next_steps,
    )


def _evidence(fact: FactRef) -> Evidence:
    return Evidence(
        fact.label, _humanise(fact.value), _day(fact.date), fact.source, fact.status
    )


def _humanise(value: str | None) -> str | None:
    if value is None:
        return None
    return (
        value.replace("-", " ") if re.fullmatch(r"[a-z]+(-[a-z]+)+", value) else value
    )


def _day(value: str | None) -> str | None:
    return value[:10] if value else None


def card_views(
    cards: Sequence[JsonObject], sides: Mapping[str, str | None], focus: AppContext
) -> tuple[CardView, ...]:
    out = []
    for card in cards:
        source = card.get("source")
        topic = source.get("topic") if isinstance(source, dict) else None
        rule = topic.get("code") if isinstance(topic, dict) else None
        label = source.get("label") if isinstance(source, dict) else None
        rule_url = None
        links = card.get("links")
        for link in links if isinstance(links, list) else []:
            if isinstance(link, dict) and link.get("type") == "absolute":
                url = link.get("url")
                rule_url = url if isinstance(url, str) else None
        side = sides.get(str(card.get("uuid")))
        out.append(
            CardView(
                str(rule or ""),
                str(card.get("summary", "")),
                str(card.get("indicator", "info")),
                side,
                str(label or ""),
                detail_blocks(str(card.get("detail", ""))),
                rule_url,
                bool(focus.rule) and focus.rule == rule,
            )
        )
    return tuple(out)


def detail_blocks(markdown: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The card detail's small Markdown subset (paragraphs, `- ` lists) as blocks; `**` is dropped."""
    blocks: list[tuple[str, tuple[str, ...]]] = []
    for chunk in re.split(r"\n\s*\n", markdown.strip()):
        lines = [ln.strip() for ln in chunk.splitlines() if ln.strip()]
        if not lines:
            continue
        plain = [ln.replace("**", "") for ln in lines]
        if all(ln.startswith("- ") for ln in plain):
            blocks.append(("ul", tuple(ln[2:] for ln in plain)))
        else:
            blocks.append(("p", (" ".join(plain),)))
    return tuple(blocks)


# --- timeline -------------------------------------------------------------------------------------------

TIMELINE_WIDTH = 960
_LEFT_PAD = 90
_RIGHT_PAD = 30
_ROW_HEIGHT = 56
_TOP = 34


@dataclass(frozen=True)
class TimelineMarker:
    x: float
    y: float
    shape: str  # "circle" | "square" | "diamond" | "triangle"
    css: str
    title: str
    points: str = ""


@dataclass(frozen=True)
class TimelineTick:
    x: float
    label: str


@dataclass(frozen=True)
class TimelineRow:
    label: str
    y: float


@dataclass(frozen=True)
class TimelineEvent:
    day: str
    leg: str
    kinds: str
    details: str


@dataclass(frozen=True)
class Timeline:
    width: int
    height: int
    axis_y: float
    x0: float
    x1: float
    rows: tuple[TimelineRow, ...]
    ticks: tuple[TimelineTick, ...]
    markers: tuple[TimelineMarker, ...]
    now_x: float | None
    events: tuple[TimelineEvent, ...]

    @property
    def empty(self) -> bool:
        return not self.markers


def _category(kind: str) -> tuple[str, str]:
    if kind in INVASIVE_KINDS:
        return "diamond", "mk-invasive"
    if kind in STENT_KINDS:
        return "triangle", "mk-stent"
    if kind in PELVIC_KINDS or kind in LESION_KINDS:
        return "square", "mk-pelvic"
    return "circle", "mk-duplex"


_PRIORITY = {"mk-stent": 0, "mk-invasive": 1, "mk-pelvic": 2, "mk-duplex": 3}


def build_timeline(state: WorkupState, now: datetime) -> Timeline:
    """Imaging and measurements per leg on a date axis, grouped by leg and day."""
    legs = [leg for leg in state.legs if leg.affected]
    grouped: dict[tuple[str, date], list[FactRef]] = {}
    for leg in legs:
        for fact in leg.facts:
            if fact.kind in IMAGING_KINDS and fact.date:
                day = date.fromisoformat(fact.date[:10])
                grouped.setdefault((leg.side.value, day), []).append(fact)
    rows = tuple(
        TimelineRow(f"{leg.side.value.capitalize()} leg", _TOP + 20 + i * _ROW_HEIGHT)
        for i, leg in enumerate(legs)
    )
    row_y = {leg.side.value: rows[i].y for i, leg in enumerate(legs)}
    height = int(_TOP + 20 + max(len(rows), 1) * _ROW_HEIGHT)
    axis_y = height - 22.0
    x0, x1 = float(_LEFT_PAD), float(TIMELINE_WIDTH - _RIGHT_PAD)
    if not grouped:
        return Timeline(TIMELINE_WIDTH, height, axis_y, x0, x1, rows, (), (), None, ())
    today = now.date()
    first = min(day for _, day in grouped)
    last = max(max(day for _, day in grouped), today)
    span = max((last - first).days, 30)

    def x_of(day: date) -> float:
        return round(x0 + (x1 - x0) * (day - first).days / span, 1)

    markers = []
    events = []
    for (side, day), facts in sorted(
        grouped.items(), key=lambda item: (item[0][1], item[0][0])
    ):
        shape, css = min(
            (_category(f.kind) for f in facts), key=lambda c: _PRIORITY[c[1]]
        )
        details = "; ".join(
            dict.fromkeys(
                f"{f.label}{': ' + h if (h := _humanise(f.value)) else ''}"
                for f in facts
            )
        )
        kinds = ", ".join(dict.fromkeys(f.label for f in facts))
        x, y = x_of(day), row_y[side]
        markers.append(
            TimelineMarker(
                x,
                y,
                shape,
                css,
                f"{day.isoformat()} {side} leg: {details}",
                _points(shape, x, y),
            )
        )
        events.append(TimelineEvent(day.isoformat(), side, kinds, details))
    ticks = tuple(
        TimelineTick(x_of(d), d.strftime("%b %Y")) for d in _month_starts(first, last)
    )
    return Timeline(
        TIMELINE_WIDTH,
        height,
        axis_y,
        x0,
        x1,
        rows,
        ticks,
        tuple(markers),
        x_of(today),
        tuple(events),
    )


def _points(shape: str, x: float, y: float) -> str:
    r = 8.0
    if shape == "diamond":
        pts = [(x, y - r), (x + r, y), (x, y + r), (x - r, y)]
    elif shape == "triangle":
        pts = [(x, y - r), (x + r, y + r * 0.8), (x - r, y + r * 0.8)]
    else:
        return ""
    return " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)


def _month_starts(first: date, last: date) -> list[date]:
    months = []
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        day = date(year, month, 1)
        if day >= first:
            months.append(day)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    step = max(1, len(months) // 8)
    return months[::step]

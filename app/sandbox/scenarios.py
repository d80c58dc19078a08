"""Scenario files: parsing, expectations, per-patient id namespacing and transaction Bundles."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from app.config import REPO_ROOT

DEFAULT_SCENARIOS_DIR = REPO_ROOT / "tests" / "scenarios"
FHIR_JSON = "application/fhir+json"
HTTP_TIMEOUT_SECONDS = 30.0
LATERALITY_CODES = {"7771000": "left", "24028007": "right", "51440002": "bilateral"}
_MAX_ID_LENGTH = 64
_REFERENCE = re.compile(
    r"^(?P<prefix>(?:.*/)?)(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?P<history>/_history/[^/]+)?$"
)
_REFERENCE_KEYS = frozenset({"reference", "fullUrl"})


JsonDict = dict[str, Any]


class SandboxError(Exception):
    """A scenario file is unusable, or the FHIR server or CDS service refused a call; the message says which."""


@dataclass(frozen=True)
class Expectation:
    """One entry of a scenario's `expect.must` / `expect.mustNot`."""

    rule: str
    side: str | None = None
    indicator: str | None = None
    suggestion_codes: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [self.rule]
        if self.side:
            parts.append(self.side)
        if self.indicator:
            parts.append(self.indicator)
        return " ".join(parts)


@dataclass(frozen=True)
class Scenario:
    """A synthetic patient: a CDS Hooks request (ids namespaced per patient) and the cards it must yield."""

    id: str
    path: Path
    description: str
    now: datetime | None
    request: JsonDict
    must: tuple[Expectation, ...]
    must_not: tuple[Expectation, ...]

    @property
    def hook(self) -> str:
        return str(self.request["hook"])

    @property
    def context(self) -> JsonDict:
        context: JsonDict = self.request["context"]
        return context

    @property
    def patient_id(self) -> str:
        return str(self.context["patientId"])

    @property
    def prefetch(self) -> JsonDict:
        prefetch: JsonDict = self.request.get("prefetch") or {}
        return prefetch

    def resources_by_key(self) -> dict[str, list[JsonDict]]:
        """The prefetch as resources per key (a Bundle's entries, a single resource, or nothing for null)."""
        return {key: _resources_of(value) for key, value in self.prefetch.items()}

    def resources(self) -> list[JsonDict]:
        """Every prefetch resource once (same type and id counts once), the Patient first."""
        seen: set[tuple[str, str]] = set()
        ordered: list[JsonDict] = []
        groups = sorted(
            self.resources_by_key().items(), key=lambda item: item[0] != "patient"
        )
        for _, resources in groups:
            for resource in resources:
                identity = (str(resource["resourceType"]), str(resource["id"]))
                if identity not in seen:
                    seen.add(identity)
                    ordered.append(resource)
        return ordered


def load_scenarios(directory: Path) -> list[Scenario]:
    """Read every `*.json` scenario in directory, sorted by file name, with ids namespaced per patient.

    Raises:
        SandboxError: a file is not a scenario, or two scenarios use the same patient id.
    """
    if not directory.is_dir():
        raise SandboxError(f"{directory} is not a directory")
    scenarios = [load_scenario(path) for path in sorted(directory.glob("*.json"))]
    owners: dict[str, Path] = {}
    for scenario in scenarios:
        other = owners.setdefault(scenario.patient_id, scenario.path)
        if other != scenario.path:
            raise SandboxError(
                f"{scenario.path.name} and {other.name} both use patient id {scenario.patient_id!r}; "
                "each scenario needs its own patient"
            )
    return scenarios


def load_scenario(path: Path) -> Scenario:
    """Read one scenario file (format: tests/scenarios/README.md).

    Raises:
        SandboxError: naming the file and what is wrong.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SandboxError(f"{path.name}: cannot read it ({exc})") from None
    if not isinstance(document, dict):
        raise SandboxError(f"{path.name}: not a JSON object")
    request = document.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("hook"), str):
        raise SandboxError(f"{path.name}: `request` must be a CDS Hooks request")
    context = request.get("context")
    if not isinstance(context, dict) or not isinstance(context.get("patientId"), str):
        raise SandboxError(f"{path.name}: `request.context.patientId` is missing")
    prefetch = request.get("prefetch") or {}
    if not isinstance(prefetch, dict):
        raise SandboxError(f"{path.name}: `request.prefetch` must be an object")
    for key, value in prefetch.items():
        try:
            _resources_of(value)
        except ValueError as exc:
            raise SandboxError(f"{path.name}: prefetch key {key!r}: {exc}") from None
    expect = document.get("expect") or {}
    if not isinstance(expect, dict):
        raise SandboxError(f"{path.name}: `expect` must be an object")
    try:
        must = _expectations(expect.get("must"))
        must_not = _expectations(expect.get("mustNot"))
        now = _parse_now(document.get("now"))
    except ValueError as exc:
        raise SandboxError(f"{path.name}: {exc}") from None
    return Scenario(
        id=str(document.get("id") or path.stem),
        path=path,
        description=str(document.get("description") or ""),
        now=now,
        request=namespace_ids(request),
        must=must,
        must_not=must_not,
    )


def _parse_now(value: object) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("`now` must be an ISO 8601 string")
    now = datetime.fromisoformat(value)
    if now.tzinfo is None:
        raise ValueError("`now` must carry a time zone")
    return now


def _expectations(value: object) -> tuple[Expectation, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError("expect.must / expect.mustNot must be lists")
    out: list[Expectation] = []
    for item in value:
        if isinstance(item, str):
            out.append(Expectation(rule=item))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("rule"), str):
            raise ValueError("each expectation needs a `rule`")
        codes = item.get("suggestionCodes") or []
        out.append(
            Expectation(
                rule=item["rule"],
                side=item.get("side"),
                indicator=item.get("indicator"),
                suggestion_codes=tuple(str(code) for code in codes),
            )
        )
    return tuple(out)


def _resources_of(value: object) -> list[JsonDict]:
    if value is None:
        return []
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise ValueError("not a FHIR resource")
    if value["resourceType"] != "Bundle":
        resources = [value]
    else:
        resources = []
        for entry in value.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                raise ValueError("a Bundle entry has no resource")
            if resource.get("resourceType") != "OperationOutcome":
                resources.append(resource)
    for resource in resources:
        if not isinstance(resource.get("id"), str) or not resource["id"]:
            raise ValueError(f"a {resource.get('resourceType')} has no id")
    return resources


def namespace_ids(request: Mapping[str, Any]) -> JsonDict:
    """Copy a CDS Hooks request, renaming each prefetch resource but the Patient `{patientId}-{id}`.

    References and fullUrls naming a renamed resource (relative, absolute or versioned) are rewritten
    everywhere in the request, draft orders included, so the record stays linked. Renaming twice is a no-op.
    """
    copy: JsonDict = json.loads(json.dumps(request))
    patient_id = str(copy["context"]["patientId"])
    renames: dict[tuple[str, str], str] = {}
    for value in (copy.get("prefetch") or {}).values():
        for resource in _resources_of(value):
            resource_type = str(resource["resourceType"])
            if resource_type == "Patient":
                continue
            old_id = str(resource["id"])
            new_id = _namespaced_id(patient_id, old_id)
            renames[(resource_type, old_id)] = new_id
            resource["id"] = new_id
    if renames:
        _rewrite_references(copy, renames)
    return copy


def _namespaced_id(patient_id: str, resource_id: str) -> str:
    prefix = f"{patient_id}-"
    if resource_id.startswith(prefix):
        return resource_id
    candidate = prefix + resource_id
    if len(candidate) <= _MAX_ID_LENGTH:
        return candidate
    return hashlib.sha256(candidate.encode()).hexdigest()[:_MAX_ID_LENGTH]


def _rewrite_references(node: object, renames: Mapping[tuple[str, str], str]) -> None:
    if isinstance(node, list):
        for item in node:
            _rewrite_references(item, renames)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in _REFERENCE_KEYS and isinstance(value, str):
            match = _REFERENCE.match(value)
            if match is not None:
                new_id = renames.get((match["type"], match["id"]))
                if new_id is not None:
                    history = match["history"] or ""
                    node[key] = f"{match['prefix']}{match['type']}/{new_id}{history}"
        else:
            _rewrite_references(value, renames)


def transaction_bundle(scenario: Scenario) -> JsonDict:
    """A transaction Bundle that PUTs every record resource to `{type}/{id}`, so loading twice duplicates nothing.

    Draft orders stay out: they live in the hook context, not in the record.
    """
    entries = []
    for resource in scenario.resources():
        resource_type, resource_id = resource["resourceType"], resource["id"]
        stored = {k: v for k, v in resource.items() if k != "meta"}
        entries.append(
            {
                "resource": stored,
                "request": {"method": "PUT", "url": f"{resource_type}/{resource_id}"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

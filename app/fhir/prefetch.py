"""Resolve CDS Hooks prefetch: use what the CDS client sent, fetch omitted keys from fhirServer, else 412.

https://cds-hooks.hl7.org/2.0/#providing-fhir-resources-to-a-cds-service
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from app.fhir.bundle import OPERATION_OUTCOME, bundle_resources, is_resource
from app.fhir.client import FhirFetcher, FirstPage
from app.fhir.errors import FhirError, FhirTimeout, InvalidPrefetch, PrefetchUnavailable

PREFETCH_TEMPLATES: dict[str, str] = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "observations": "Observation?patient={{context.patientId}}",
    "imagingStudies": "ImagingStudy?patient={{context.patientId}}",
    "diagnosticReports": "DiagnosticReport?patient={{context.patientId}}",
    "procedures": "Procedure?patient={{context.patientId}}",
    "serviceRequests": "ServiceRequest?patient={{context.patientId}}",
    "medicationRequests": "MedicationRequest?patient={{context.patientId}}",
    "medicationStatements": "MedicationStatement?patient={{context.patientId}}",
}

_TOKEN = re.compile(r"\{\{(.*?)\}\}")
# CDS Hooks 2.0 user tokens, each the id part of context.userId when it names that resource type.
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


@dataclass(frozen=True)
class GatherResult:
    """The record assembled for one hook call and where each prefetch key came from."""

    resources: list[dict[str, Any]]
    fetched_keys: tuple[str, ...]
    prefetched_keys: tuple[str, ...]


def render_template(
    template: str, context: Mapping[str, object], user_practitioner_id: str | None
) -> str:
    """Fill a prefetch template's tokens with URL-encoded values.

    Args:
        template: e.g. `Observation?patient={{context.patientId}}`.
        context: the hook request's context; `{{context.X}}` takes a non-empty string field X.
        user_practitioner_id: the Practitioner id for `{{userPractitionerId}}`; when None it is taken
            from context.userId (`Practitioner/123`), as are the other user tokens.

    Raises:
        PrefetchUnavailable: an unknown token, or a token the context cannot fill.
    """

    def substitute(match: re.Match[str]) -> str:
        value = _token_value(match.group(1).strip(), context, user_practitioner_id)
        # safe="": an id holding "/", "&" or "#" must not change the query's shape.
        return quote(value, safe="")

    rendered = _TOKEN.sub(substitute, template)
    if "{{" in rendered or "}}" in rendered:
        raise PrefetchUnavailable("prefetch template has an unterminated token")
    return rendered


def _token_value(
    token: str, context: Mapping[str, object], user_practitioner_id: str | None
) -> str:
    if token.startswith("context."):
        value = context.get(token.removeprefix("context."))
        if not isinstance(value, str) or not value:
            raise PrefetchUnavailable(
                f"prefetch token {token} has no string value in the hook context"
            )
        return value
    resource_type = _USER_TOKENS.get(token)
    if resource_type is None:
        raise PrefetchUnavailable(f"unknown prefetch token {token}")
    if resource_type == "Practitioner" and user_practitioner_id:
        return user_practitioner_id
    user_id = context.get("userId")
    prefix = f"{resource_type}/"
    if (
        isinstance(user_id, str)
        and user_id.startswith(prefix)
        and len(user_id) > len(prefix)
    ):
        return user_id.removeprefix(prefix)
    raise PrefetchUnavailable(
        f"prefetch token {token} cannot be filled: the user is not a {resource_type}"
    )


def resources_from_prefetch(key: str, value: object) -> list[dict[str, Any]]:
    """Turn one prefetch value into resources: a resource -> [it], a Bundle -> its entries, None -> [].

    Raises:
        InvalidPrefetch: the value is not FHIR JSON (not an object, no resourceType, malformed Bundle).
        PrefetchUnavailable: the value is an OperationOutcome, i.e. the CDS client says it could not get
            the data; treating that as "no data" could hide a prior study from the workup.
    """
    if value is None:
        return []
    if not is_resource(value):
        raise InvalidPrefetch(key, "value is not a FHIR resource (no resourceType)")
    if value["resourceType"] == OPERATION_OUTCOME:
        raise PrefetchUnavailable(
            f"prefetch key '{key}': the CDS client reported an error prefetching it"
        )
    if value["resourceType"] != "Bundle":
        return [value]
    try:
        return bundle_resources(value)
    except ValueError as exc:
        raise InvalidPrefetch(key, str(exc)) from None


async def gather_resources(
    *,
    prefetch: Mapping[str, object] | None,
    templates: Mapping[str, str],
    context: Mapping[str, object],
    user_practitioner_id: str | None,
    fhir: FhirFetcher | None,
    deadline_seconds: float,
) -> GatherResult:
    """Assemble the record for one hook call from prefetch and, for omitted keys, from fhirServer.

    A key present in prefetch is used as sent, and null means "no data". Keys in prefetch that are not in
    templates are ignored. Omitted keys are fetched under one overall deadline: their queries go out as one
    FHIR batch, each search's further pages are then read concurrently; when the server gives no usable
    batch-response, the queries run concurrently one by one, with the same results and errors.

    Raises:
        InvalidPrefetch: a prefetch value is not FHIR JSON (API -> 400).
        PrefetchUnavailable: keys are omitted and there is no fhirServer, or a template cannot be filled.
        FhirError: a fetch failed; `prefetch_key` names the key and the reason includes it.
    """
    supplied = prefetch or {}
    by_key: dict[str, list[dict[str, Any]]] = {}
    missing: list[str] = []
    for key in templates:
        if key in supplied:
            by_key[key] = resources_from_prefetch(key, supplied[key])
        else:
            missing.append(key)
    if missing:
        if fhir is None:
            raise PrefetchUnavailable(
                f"prefetch key(s) {', '.join(missing)} missing and no fhirServer given"
            )
        queries = {
            key: _render_for_key(key, templates[key], context, user_practitioner_id)
            for key in missing
        }
        by_key.update(await _fetch_all(fhir, queries, deadline_seconds))
    prefetched = tuple(key for key in templates if key not in missing)
    return GatherResult(
        resources=_deduplicate(by_key[key] for key in templates),
        fetched_keys=tuple(missing),
        prefetched_keys=prefetched,
    )


def _render_for_key(
    key: str,
    template: str,
    context: Mapping[str, object],
    user_practitioner_id: str | None,
) -> str:
    try:
        return render_template(template, context, user_practitioner_id)
    except PrefetchUnavailable as exc:
        raise PrefetchUnavailable(f"prefetch key '{key}': {exc.reason}") from None


async def _fetch_all(
    fhir: FhirFetcher, queries: Mapping[str, str], deadline_seconds: float
) -> dict[str, list[dict[str, Any]]]:
    tasks: dict[str, asyncio.Task[list[dict[str, Any]]]] = {}
    settled: dict[str, list[dict[str, Any]]] = {}
    paged: dict[str, FirstPage] = {}
    try:
        # One deadline for the whole gather (batch, further pages, or the query-by-query fallback): the EHR
        # waits on one exchange plus the longest search's remaining pages, not on the sum of the queries.
        async with asyncio.timeout(deadline_seconds):
            firsts = await fhir.first_answers(list(queries.values()))
            if firsts is not None:
                # A batch answer that is the whole result needs no task; the first failing one, in template
                # order, is the gather's error (before any further page is asked for).
                for (key, query), first in zip(queries.items(), firsts, strict=True):
                    try:
                        page = fhir.first_page(query, first)
                    except FhirError as failed:
                        failed.prefetch_key = key
                        raise
                    if page.next_url is None:
                        settled[key] = page.resources
                    else:
                        paged[key] = page
            async with asyncio.TaskGroup() as group:
                for key, query in queries.items():
                    if firsts is None:
                        tasks[key] = group.create_task(fhir.search(query))
                    elif key in paged:
                        tasks[key] = group.create_task(fhir.complete(query, paged[key]))
    except TimeoutError:
        late = [
            key
            for key in queries
            if key not in settled and (key not in tasks or tasks[key].cancelled())
        ]
        raise FhirTimeout(
            f"no answer from fhirServer within {deadline_seconds:g} s for prefetch key(s) {', '.join(late)}"
        ) from None
    except ExceptionGroup as group_error:
        # The TaskGroup cancels the other queries on the first failure; report that failure alone.
        _, unexpected = group_error.split(FhirError)
        error = _first_fhir_error(tasks)
        if unexpected is not None or error is None:
            raise
        raise error from group_error
    return {
        key: settled[key] if key in settled else tasks[key].result() for key in queries
    }


def _first_fhir_error(
    tasks: Mapping[str, asyncio.Task[list[dict[str, Any]]]],
) -> FhirError | None:
    """The first failed query in template order, labelled with its prefetch key."""
    for key, task in tasks.items():
        if task.done() and not task.cancelled():
            error = task.exception()
            if isinstance(error, FhirError):
                error.prefetch_key = key
                return error
    return None


def _deduplicate(groups: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Union in order; a resource seen twice (same resourceType and id) is kept once, first wins."""
    seen: set[tuple[str, str]] = set()
    union: list[dict[str, Any]] = []
    for resources in groups:
        for resource in resources:
            resource_id = resource.get("id")
            if isinstance(resource_id, str):
                identity = (str(resource["resourceType"]), resource_id)
                if identity in seen:
                    continue
                seen.add(identity)
            union.append(resource)
    return union

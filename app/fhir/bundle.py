"""Shape checks on raw FHIR JSON shared by prefetch values and server responses."""

from __future__ import annotations

from typing import Any, TypeGuard

OPERATION_OUTCOME = "OperationOutcome"


def is_resource(value: object) -> TypeGuard[dict[str, Any]]:
    """True when value is a JSON object with a non-empty string resourceType."""
    if not isinstance(value, dict):
        return False
    resource_type = value.get("resourceType")
    return isinstance(resource_type, str) and bool(resource_type)


def bundle_resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    """Return a Bundle's entry[].resource, without OperationOutcome entries or entries lacking a resource.

    Args:
        bundle: a resource whose resourceType is Bundle.

    Raises:
        ValueError: entry is not a list, or an entry or its resource is not FHIR JSON. The message names
            positions only, never content, so callers may pass it on.
    """
    entries = bundle.get("entry")
    if entries is None:
        # A searchset with no matches may omit entry altogether.
        return []
    if not isinstance(entries, list):
        raise ValueError("Bundle.entry is not a list")
    resources: list[dict[str, Any]] = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"Bundle.entry[{position}] is not an object")
        if "resourceType" in entry:
            # A resource placed directly in entry[] would otherwise be dropped without a word.
            raise ValueError(f"Bundle.entry[{position}] is a resource, not an entry")
        resource = entry.get("resource")
        if resource is None:
            continue
        if not is_resource(resource):
            raise ValueError(f"Bundle.entry[{position}].resource has no resourceType")
        # Servers and CDS clients report per-search warnings and errors as OperationOutcome entries.
        if resource["resourceType"] == OPERATION_OUTCOME:
            continue
        resources.append(resource)
    return resources

"""Input limits of a CDS request: JSON nesting depth and entry counts, checked before any FHIR parsing or rules.

The body-size cap (app/api/middleware.py) bounds the bytes; these limits bound the shape, which is what
recursive FHIR validation and the engine pay for. Every check is one pass over the parsed JSON with an
explicit stack, so a hostile document cannot exhaust the interpreter's recursion limit here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.api.cds.schemas import CdsRequest
from app.errors import PayloadTooLarge


@dataclass(frozen=True)
class InputLimits:
    """Caps on one CDS request; exceeding any of them is answered 413 with a message naming the cap."""

    # A FHIR R4 resource inside a prefetch Bundle sits at depth 6 of the request and real resources
    # nest about 10 more levels (extensions of codings of components); 64 leaves a wide margin.
    max_depth: int = 64
    max_prefetch_entries: int = 20_000
    max_draft_orders: int = 500


DEFAULT_LIMITS = InputLimits()


def check_cds_request(
    request: CdsRequest, limits: InputLimits = DEFAULT_LIMITS
) -> None:
    """Raise PayloadTooLarge (413) when the request is nested too deep or carries too many entries.

    Depth counts the request object as level 1, so `context` and `prefetch` are level 2. Only the free-form
    members (`context`, `prefetch`) are walked: the typed members are bounded by the wire models.
    """
    entries = count_prefetch_entries(request.prefetch)
    if entries > limits.max_prefetch_entries:
        raise PayloadTooLarge(
            f"prefetch carries {entries} resources, more than the {limits.max_prefetch_entries} allowed"
        )
    orders = count_draft_orders(request.context)
    if orders > limits.max_draft_orders:
        raise PayloadTooLarge(
            f"context.draftOrders carries {orders} entries, more than the {limits.max_draft_orders} allowed"
        )
    free_form = {"context": request.context, "prefetch": request.prefetch}
    if exceeds_depth(free_form, limits.max_depth):
        raise PayloadTooLarge(
            f"request JSON is nested deeper than {limits.max_depth} levels"
        )


def count_prefetch_entries(prefetch: Mapping[str, object] | None) -> int:
    """Resources in a prefetch: each Bundle counts its entries, any other resource counts one."""
    if not prefetch:
        return 0
    return sum(_resource_count(value) for value in prefetch.values())


def count_draft_orders(context: Mapping[str, object]) -> int:
    """Entries of context.draftOrders (order-select, order-sign); 0 when there is none."""
    return _bundle_entries(context.get("draftOrders"))


def exceeds_depth(value: object, max_depth: int) -> bool:
    """True when `value` (itself at level 1) has a JSON object or array deeper than `max_depth` levels."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            values: list[object] = list(node.values())
        elif isinstance(node, list):
            values = node
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((v, depth + 1) for v in values if isinstance(v, dict | list))
    return False


def _resource_count(value: object) -> int:
    if not isinstance(value, dict):
        return 0
    if value.get("resourceType") == "Bundle":
        return _bundle_entries(value)
    return 1


def _bundle_entries(value: object) -> int:
    if not isinstance(value, dict):
        return 0
    entries = value.get("entry")
    return len(entries) if isinstance(entries, list) else 0

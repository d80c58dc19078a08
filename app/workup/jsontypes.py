"""Typed views of decoded JSON, so the engine never handles untyped values."""

from __future__ import annotations

from typing import TypeAlias

JsonValue: TypeAlias = (
    "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"
)
JsonObject: TypeAlias = "dict[str, JsonValue]"


def obj(value: JsonValue) -> JsonObject | None:
    """The value as a JSON object, or None."""
    return value if isinstance(value, dict) else None


def objs(value: JsonValue) -> list[JsonObject]:
    """The JSON objects in a list value (a single object counts as a one-item list)."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []


def text(value: JsonValue) -> str | None:
    """The value as a string, or None."""
    return value if isinstance(value, str) else None


def child(parent: JsonObject | None, key: str) -> JsonObject | None:
    return obj(parent.get(key)) if parent is not None else None


def children(parent: JsonObject | None, key: str) -> list[JsonObject]:
    return objs(parent.get(key)) if parent is not None else []


def string(parent: JsonObject | None, key: str) -> str | None:
    return text(parent.get(key)) if parent is not None else None


def codings(concept: JsonObject | None) -> list[tuple[str, str]]:
    """(system, code) pairs of a CodeableConcept (or of a bare Coding)."""
    if concept is None:
        return []
    items = children(concept, "coding") or ([concept] if "code" in concept else [])
    pairs: list[tuple[str, str]] = []
    for coding in items:
        code = string(coding, "code")
        if code is not None:
            pairs.append((string(coding, "system") or "", code))
    return pairs

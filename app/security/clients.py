"""Registered EHR clients (CDS Hooks callers) and the lookup protocol the database implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class RegisteredClient:
    """An EHR we trust: its issuer, where its keys live, and which FHIR servers it may point us at."""

    issuer: str
    jwks_url: str | None
    jwks: dict[str, object] | None
    jku_allowlist: tuple[str, ...]
    fhir_servers: tuple[str, ...]
    tenant: str | None


class ClientLookup(Protocol):
    """Finds the registered client for a JWT `iss`; None when the issuer is unknown."""

    async def get_client(self, issuer: str) -> RegisteredClient | None: ...

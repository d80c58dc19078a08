"""Replay protection protocol for JWT `jti` values (the database implements it)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class ReplayStore(Protocol):
    """Remembers (issuer, jti) pairs until `expires_at`."""

    async def remember(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """Store the pair; return False when it was already stored (a replay)."""
        ...

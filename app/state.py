"""Long-lived objects built once at startup and shared by every request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.catalog.index import Catalog
from app.config import Settings
from app.security.jwks import HttpJwksFetcher
from app.services.audit_writer import AuditWriter


@dataclass
class AppState:
    settings: Settings
    catalog: Catalog
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    jwks: HttpJwksFetcher
    rules_html: str
    audit: AuditWriter

    def now(self) -> datetime:
        """The service clock: ILIAC_CDS_NOW when set (demos, acceptance tests), else real UTC time."""
        return self.settings.now if self.settings.now is not None else datetime.now(UTC)

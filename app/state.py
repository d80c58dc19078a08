"""Long-lived objects built once at startup and shared by every request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.catalog.index import Catalog
from app.config import Settings
from app.fhir.client import FhirFetcher
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

    def fhir_fetcher(self, base_url: str, access_token: str | None) -> FhirFetcher:
        """A FHIR client for one server and token, bounded by the FHIR settings (pages, bytes, page size)."""
        return FhirFetcher(
            self.http,
            base_url,
            access_token,
            max_pages=self.settings.fhir_max_pages,
            max_response_bytes=self.settings.fhir_max_response_bytes,
            page_size=self.settings.fhir_page_size or None,
        )

"""Settings of the SMART app, read from environment variables prefixed ILIAC_CDS_SMART_."""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.hosts import is_loopback_host

# SMART App Launch 2.x scopes: read the record of the patient in context; refresh without the user.
DEFAULT_SCOPES = "openid fhirUser patient/*.rs offline_access"


class SameSite(StrEnum):
    """The cookie's SameSite attribute; `none` (with Secure) is what an app framed by the EHR needs."""

    LAX = "lax"
    STRICT = "strict"
    NONE = "none"


class SmartSettings(BaseSettings):
    """The SMART App Launch client: who we are to the EHR's authorization server, and the session cookie."""

    model_config = SettingsConfigDict(
        env_prefix="ILIAC_CDS_SMART_", env_file=".env", extra="ignore"
    )

    # FHIR base URLs (`iss`) we accept a launch from; empty: the SMART app is off.
    allowed_issuers: list[str] = Field(default_factory=list)
    client_id: str = "iliac-cds"
    # Set for a confidential client (client_secret_basic); None: a public client (PKCE only).
    client_secret: SecretStr | None = None
    scopes: str = DEFAULT_SCOPES
    # Key signing the session cookie; None: a random key per process (sessions live in process memory anyway).
    session_secret: SecretStr | None = None
    session_max_age_seconds: int = 8 * 3600
    launch_max_age_seconds: int = 600
    max_sessions: int = 10_000
    cookie_name: str = "iliac_smart"
    cookie_secure: bool = True
    cookie_samesite: SameSite = SameSite.NONE
    # CHIPS: keeps the cookie working in browsers that block third-party cookies in the EHR's iframe.
    cookie_partitioned: bool = True
    # Refresh the access token when it expires within this many seconds.
    token_refresh_margin_seconds: int = 60
    # Overall deadline for fetching the patient's record for the page (all queries run concurrently).
    fhir_deadline_seconds: float = 10.0

    @field_validator("allowed_issuers")
    @classmethod
    def _issuers_are_urls(cls, value: list[str]) -> list[str]:
        out = []
        for issuer in value:
            parts = urlsplit(issuer)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"allowed issuer {issuer!r} is not an http(s) URL")
            if parts.scheme == "http" and not is_loopback_host(parts.hostname):
                raise ValueError(
                    f"allowed issuer {issuer!r} must use https (http only on loopback)"
                )
            if parts.query or parts.fragment or parts.username:
                raise ValueError(
                    f"allowed issuer {issuer!r} must be a plain FHIR base URL"
                )
            out.append(normalise_issuer(issuer))
        return out

    @model_validator(mode="after")
    def _samesite_none_needs_secure(self) -> SmartSettings:
        if self.cookie_samesite is SameSite.NONE and not self.cookie_secure:
            raise ValueError(
                "a SameSite=None cookie must be Secure (cookie_secure=true)"
            )
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.allowed_issuers)

    def issuer_allowed(self, iss: str) -> bool:
        return normalise_issuer(iss) in self.allowed_issuers


def normalise_issuer(iss: str) -> str:
    """Compare issuers without a trailing slash and with a lower-case scheme and host."""
    parts = urlsplit(iss.strip())
    netloc = parts.netloc.lower()
    return f"{parts.scheme.lower()}://{netloc}{parts.path.rstrip('/')}"

"""Service settings, read from environment variables prefixed ILIAC_CDS_ (and an optional .env file)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.hosts import is_loopback_host
from app.smart.settings import SmartSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HMAC_KEY = "change-me-dev-only"
LOCAL_CODE_SYSTEM = "http://example.org/fhir/CodeSystem/iliofemoral-cds"


class AuthMode(StrEnum):
    """How EHR calls are authenticated."""

    JWT = "jwt"
    DISABLED = "disabled"


class Settings(BaseSettings):
    """Every knob of the service; the README's configuration table documents each one."""

    model_config = SettingsConfigDict(
        env_prefix="ILIAC_CDS_", env_file=".env", extra="ignore"
    )

    database_url: str = "sqlite+aiosqlite:///./iliac-cds.db"
    database_schema: str | None = None
    public_base_url: str = "http://127.0.0.1:8000"
    cards_dir: Path = REPO_ROOT / "cards"
    mappings_dir: Path = REPO_ROOT / "fhir_mappings"
    auth_mode: AuthMode = AuthMode.JWT
    bind_host: str = "127.0.0.1"
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["ES384", "RS384"])
    jwt_clock_skew_seconds: int = 60
    jwt_max_lifetime_seconds: int = 3600
    jwks_cache_seconds: int = 300
    hmac_key: SecretStr = SecretStr(DEFAULT_HMAC_KEY)
    fhir_deadline_seconds: float = 2.0
    fhir_max_pages: int = 10
    # `_count` asked of each FHIR search (0: the server's default page size); see app/fhir/client.py.
    fhir_page_size: int = Field(default=1000, ge=0)
    fhir_max_response_bytes: int = 20 * 1024 * 1024
    dev_fhir_servers: list[str] = Field(default_factory=list)
    max_body_bytes: int = 5 * 1024 * 1024
    cors_origins: list[str] = Field(default_factory=list)
    # EHR origins allowed to frame the HTML pages (CSP frame-ancestors); empty: no framing.
    frame_ancestors: list[str] = Field(default_factory=list)
    local_code_system: str = LOCAL_CODE_SYSTEM
    now: datetime | None = None
    log_level: str = "INFO"
    # The SMART app (ILIAC_CDS_SMART_* variables, app/smart/settings.py); empty allowed_issuers: off.
    smart: SmartSettings = Field(default_factory=SmartSettings)

    @field_validator("now")
    @classmethod
    def _now_is_aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(
                "ILIAC_CDS_NOW must carry a time zone, e.g. 2026-03-02T10:00:00Z"
            )
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _no_weak_algorithms(cls, value: list[str]) -> list[str]:
        banned = {a for a in value if a.lower() == "none" or a.upper().startswith("HS")}
        if banned:
            raise ValueError(
                f"algorithms {sorted(banned)} are never accepted for EHR JWTs"
            )
        return value

    @property
    def is_loopback_bind(self) -> bool:
        return is_loopback_host(self.bind_host)


@lru_cache
def get_settings() -> Settings:
    return Settings()

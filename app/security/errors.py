"""Exceptions raised by EHR authentication and FHIR server allow-listing.

AuthError            -> the API answers a bare 401 and logs `reason` only (never the token)
FhirServerNotAllowed -> the API answers 403 with `message`, which is safe to show
"""

from __future__ import annotations

from typing import Literal, get_args

AuthReason = Literal[
    "missing_token",
    "malformed_token",
    "alg_not_allowed",
    "unknown_issuer",
    "unknown_kid",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "iat_invalid",
    "aud_mismatch",
    "replayed_jti",
    "missing_claim",
    "jku_not_allowed",
    "tenant_mismatch",
    "jwks_unavailable",
]

AUTH_REASONS: frozenset[str] = frozenset(get_args(AuthReason))


class AuthError(Exception):
    """Raised when an EHR's CDS Hooks JWT is refused; carries a reason code and nothing else."""

    def __init__(self, reason: AuthReason) -> None:
        super().__init__(reason)
        self.reason: AuthReason = reason


class FhirServerNotAllowed(Exception):
    """Raised when a request's fhirServer may not be contacted; `message` never echoes the URL."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

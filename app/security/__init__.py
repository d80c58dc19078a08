"""EHR authentication (CDS Hooks 2.0 JWT) and FHIR server allow-listing."""

from app.security.allowlist import check_fhir_server
from app.security.clients import ClientLookup, RegisteredClient
from app.security.errors import AuthError, AuthReason, FhirServerNotAllowed
from app.security.jwks import HttpJwksFetcher, JwksFetcher, keyset_from_jwks
from app.security.jwt import AuthenticatedClient, authenticate, parse_bearer
from app.security.replay import ReplayStore

__all__ = [
    "AuthError",
    "AuthReason",
    "AuthenticatedClient",
    "ClientLookup",
    "FhirServerNotAllowed",
    "HttpJwksFetcher",
    "JwksFetcher",
    "RegisteredClient",
    "ReplayStore",
    "authenticate",
    "check_fhir_server",
    "keyset_from_jwks",
    "parse_bearer",
]

"""Errors raised while resolving prefetch and reading the EHR's FHIR server; each carries a safe `reason`.

Exception tree (the API maps the first two branches to 412 and the last to 400)::

    Exception
     ├── FhirError                  the FHIR server could not give us the data
     │    ├── FhirUnavailable       refused / DNS / TLS / 404 / other 4xx / 5xx / redirect
     │    ├── FhirUnauthorized      401 or 403: the fhirAuthorization token was not accepted
     │    ├── FhirTimeout           no answer within the request's overall deadline
     │    ├── FhirInvalidResponse   the body is not the FHIR JSON we asked for
     │    └── FhirResponseTooLarge  a response over the byte limit, or more pages than allowed
     ├── PrefetchUnavailable        an omitted key cannot be fetched (no fhirServer, template unusable)
     └── InvalidPrefetch            a prefetch value sent by the CDS client is not FHIR JSON

A `reason` is built only from our own vocabulary: the prefetch key, the resource type taken from our
template and the HTTP status. It never holds the server's body, the access token or the query, because the
query holds the patient id and the reason is returned to the CDS client and may be logged.
"""

from __future__ import annotations


class FhirError(Exception):
    """Base class: the FHIR server did not give us the data we need."""

    def __init__(
        self,
        detail: str,
        *,
        resource_type: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.resource_type = resource_type
        self.status_code = status_code
        # Set by gather_resources once it knows which prefetch key the failed query served.
        self.prefetch_key: str | None = None

    @property
    def reason(self) -> str:
        """Text safe to return to the CDS client and to log."""
        if self.prefetch_key is None:
            return self.detail
        return f"prefetch key '{self.prefetch_key}': {self.detail}"

    def __str__(self) -> str:
        return self.reason


class FhirUnavailable(FhirError):
    """Raised when the server cannot be reached or answers 404, another 4xx, a 5xx or a redirect."""


class FhirUnauthorized(FhirError):
    """Raised when the server answers 401 or 403 to our bearer token."""


class FhirTimeout(FhirError):
    """Raised when a query, or the whole gather, runs past its deadline."""


class FhirInvalidResponse(FhirError):
    """Raised when a 2xx body is not FHIR JSON of the expected resource type."""


class FhirResponseTooLarge(FhirError):
    """Raised when a response exceeds the byte limit or a search needs more pages than allowed."""


class PrefetchUnavailable(Exception):
    """Raised when omitted prefetch data cannot be fetched; the API answers 412 with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidPrefetch(Exception):
    """Raised when a prefetch value is not FHIR JSON; the API answers 400 naming the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"prefetch key '{key}': {message}")
        self.key = key
        self.message = message

    @property
    def reason(self) -> str:
        """Text safe to return to the CDS client: the key and what is wrong, never the value."""
        return f"prefetch key '{self.key}': {self.message}"

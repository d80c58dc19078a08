"""ASGI middleware adding browser security headers to every response, and a strict CSP to HTML pages.

JSON answers get `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer` and, unless the route set
one, `Cache-Control: no-store` (cards are derived from a patient's record). HTML pages (the SMART app) also get a
Content-Security-Policy without inline script, whose `frame-ancestors` lists the EHR origins allowed to embed
them (the `frame_ancestors` setting; empty means the pages cannot be framed).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# An origin (scheme://host[:port], host may start with "*.") or one of the CSP keywords allowed here.
_SOURCE = re.compile(
    r"https?://(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?|'self'|'none'", re.ASCII
)
_COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


def content_security_policy(frame_ancestors: Sequence[str]) -> str:
    """The CSP for our HTML pages; raises ValueError on a frame-ancestors entry that is not an origin."""
    for source in frame_ancestors:
        if not _SOURCE.fullmatch(source):
            raise ValueError(
                f"frame_ancestors entry {source!r} is not an origin (https://host[:port]) or 'self'/'none'"
            )
    ancestors = " ".join(frame_ancestors) if frame_ancestors else "'none'"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; "
        f"frame-ancestors {ancestors}"
    )


class SecurityHeadersMiddleware:
    """Adds the headers above; a header the route already set is left alone."""

    def __init__(self, app: ASGIApp, *, frame_ancestors: Sequence[str] = ()) -> None:
        self.app = app
        self._csp = content_security_policy(frame_ancestors).encode()
        self._deny_framing = not frame_ancestors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = self._with_headers(
                    list(message.get("headers", []))
                )
            await send(message)

        await self.app(scope, receive, add_headers)

    def _with_headers(
        self, headers: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        present = {name.lower() for name, _ in headers}
        extra = [(name, value) for name, value in _COMMON if name not in present]
        if b"cache-control" not in present:
            extra.append((b"cache-control", b"no-store"))
        content_type = next(
            (value for name, value in headers if name.lower() == b"content-type"), b""
        )
        if content_type.lower().startswith(b"text/html"):
            if b"content-security-policy" not in present:
                extra.append((b"content-security-policy", self._csp))
            if self._deny_framing and b"x-frame-options" not in present:
                # For browsers that predate CSP frame-ancestors.
                extra.append((b"x-frame-options", b"DENY"))
        return headers + extra

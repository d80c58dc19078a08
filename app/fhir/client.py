"""FHIR reads and searches against the CDS client's fhirServer: streamed, size-capped, paged, token kept on-site.

Many queries can go out as one FHIR `batch` Bundle (POST [base]); a server that does not answer it with a usable
batch-response is asked query by query instead, so the batch never changes what a query yields or how it fails.
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from http.cookiejar import Cookie, CookieJar
from typing import Any

import httpx
import orjson

from app.fhir.bundle import bundle_resources, is_resource
from app.fhir.errors import (
    FhirError,
    FhirInvalidResponse,
    FhirResponseTooLarge,
    FhirTimeout,
    FhirUnauthorized,
    FhirUnavailable,
)

logger = logging.getLogger("iliac_cds.fhir")

FHIR_JSON = "application/fhir+json"
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]*")
# How long a fhirServer that answered a batch with "not supported" is asked query by query without trying again.
NO_BATCH_SECONDS = 600.0
_NO_BATCH_MAX_SERVERS = 1024
# Statuses by which a server says it does not take a batch Bundle at [base] (rather than "not now" or "not you").
_BATCH_UNSUPPORTED_STATUSES = frozenset({400, 404, 405, 406, 415, 422, 501})
# Per shared client (the app's, or a test's): fhirServer base URL -> monotonic time its batch was refused.
_no_batch: weakref.WeakKeyDictionary[httpx.AsyncClient, dict[str, float]] = (
    weakref.WeakKeyDictionary()
)


class _NoCookies(CookieJar):
    """A cookie jar that keeps nothing: the one client serves every EHR user's calls, and a FHIR server's
    Set-Cookie (a session, a load balancer's affinity) must not ride along on the next user's request. Calls are
    authorised by their own bearer token only. (It also skips the jar's parsing of every response's headers.)"""

    def extract_cookies(self, response: Any, request: Any) -> None:  # noqa: ARG002
        return None

    def set_cookie(self, cookie: Cookie) -> None:  # noqa: ARG002
        return None


def create_http_client(
    *, timeout_seconds: float, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """Build the shared client for FHIR calls; the app lifespan owns and closes it.

    Args:
        timeout_seconds: connect/read/write/pool timeout of each HTTP exchange.
        transport: a test double such as httpx.MockTransport; None uses the pooled default transport.
    """
    # httpx logs every request URL at INFO; our URLs carry patient ids, so keep its loggers quiet.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_seconds),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        # A redirect could carry the bearer token to another origin; EHR FHIR servers do not need them.
        follow_redirects=False,
        # HTTP(S)_PROXY from the environment would route PHI and tokens through an unvetted proxy.
        trust_env=False,
        # Nothing a FHIR server sets is kept for the next call (another user's): see _NoCookies.
        cookies=_NoCookies(),
        transport=transport,
    )


@dataclass
class _Progress:
    """What one search has done so far, for the log line."""

    pages: int = 0
    status_code: int | None = None


@dataclass(frozen=True)
class FirstPage:
    """A query's first answer, checked: its resources, and the next page to read (None: that is all of it)."""

    resources: list[dict[str, Any]]
    next_url: httpx.URL | None


class _NoBatch(Exception):
    """The batch answer is unusable; `unsupported` when the server says it does not do batch at all."""

    def __init__(self, why: str, *, unsupported: bool = False) -> None:
        super().__init__(why)
        self.why = why
        self.unsupported = unsupported


class FhirFetcher:
    """Runs prefetch queries against one fhirServer with one access token."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        access_token: str | None,
        max_pages: int,
        max_response_bytes: int,
        *,
        page_size: int | None = None,
    ) -> None:
        """`page_size`: asked of every search as `_count` unless the query sets its own; None leaves the page
        size to the server. The server may answer smaller pages; their `next` links are followed as ever."""
        base = httpx.URL(base_url.rstrip("/"))
        if (
            base.scheme not in ("http", "https")
            or not base.host
            or base.userinfo
            or base.query
        ):
            raise FhirUnavailable("fhirServer is not a usable http(s) base URL")
        self._client = client
        self._base = base
        self._base_path = base.path.rstrip("/")
        self._headers = {"Accept": FHIR_JSON}
        if access_token:
            self._headers["Authorization"] = f"Bearer {access_token}"
        self._post_headers = {**self._headers, "Content-Type": FHIR_JSON}
        self._max_pages = max_pages
        self._max_response_bytes = max_response_bytes
        self._page_size = page_size

    def __repr__(self) -> str:
        return f"FhirFetcher(host={self._base.host!r})"

    def _sized(self, query: str) -> str:
        """The query as sent: a search gets `_count=page_size` unless it names its own (reads stay as they are).

        Fewer, larger pages: a server that answers one request at a time pays its per-request cost once per
        page, and a record's Observations fill several of its default pages.
        """
        if self._page_size is None or _is_read(query) or _has_count(query):
            return query
        if "?" not in query:
            separator = "?"
        else:
            separator = "" if query.endswith(("?", "&")) else "&"
        return f"{query}{separator}_count={self._page_size}"

    async def search(self, query: str) -> list[dict[str, Any]]:
        """Run a read (`Patient/123`) or a search (`Observation?patient=123`) and return its resources.

        A search follows Bundle `next` links up to max_pages pages, but only while they stay under the
        base URL. OperationOutcome entries are dropped.

        Raises:
            FhirError: a subclass naming the resource type and HTTP status, never the query.
        """
        return await self._logged(query, None)

    def first_page(self, query: str, first: dict[str, Any]) -> FirstPage:
        """A query's first answer from inside a batch (see first_answers()), given the checks search() gives a
        first page. Without a `next` page it is the query's whole result; the batch's own log line stands for
        it (no line per query). A failure is logged as any query's.

        Raises:
            FhirError: as search() would for this answer.
        """
        resource_type = _resource_type_of(query)
        try:
            return self._checked(query, first, resource_type)
        except FhirError as err:
            _log_failure(resource_type, 200, 1, 0.0, err)
            raise

    async def complete(self, query: str, first: FirstPage) -> list[dict[str, Any]]:
        """Like search(), for a query whose checked first page (first_page()) has a `next` page: the further
        pages are read as search() reads them, within the same page cap."""
        return await self._logged(query, first)

    async def first_answers(
        self, queries: Sequence[str]
    ) -> list[dict[str, Any]] | None:
        """Ask every query in one FHIR batch Bundle; return each query's first answer, in order.

        Returns None when the batch gave nothing usable: the server does not do batch (remembered for
        NO_BATCH_SECONDS), or the answer failed, was cut off, was not a batch-response of one 2xx entry per
        query carrying the expected resource. The caller then runs search() per query, which yields the same
        resources and the same errors as if no batch had been tried.
        """
        if not queries:
            return []
        key = str(self._base)
        refused = _no_batch.get(self._client, {})
        refused_at = refused.get(key)
        if refused_at is not None:
            if time.monotonic() - refused_at < NO_BATCH_SECONDS:
                return None
            refused.pop(key, None)
        types = [_resource_type_of(query) for query in queries]
        started = time.perf_counter()
        try:
            answers = await self._batch(queries, types)
        except _NoBatch as no:
            if no.unsupported:
                self._remember_no_batch(key)
            logger.info(
                "fhir batch not used entries=%d reason=%s duration_ms=%.0f",
                len(queries),
                no.why,
                (time.perf_counter() - started) * 1000,
            )
            return None
        logger.info(
            "fhir batch done entries=%d duration_ms=%.0f",
            len(queries),
            (time.perf_counter() - started) * 1000,
        )
        return answers

    def _remember_no_batch(self, key: str) -> None:
        refused = _no_batch.setdefault(self._client, {})
        if len(refused) >= _NO_BATCH_MAX_SERVERS:
            refused.pop(next(iter(refused)))
        refused[key] = time.monotonic()

    async def _batch(
        self, queries: Sequence[str], types: Sequence[str]
    ) -> list[dict[str, Any]]:
        body = orjson.dumps(
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {"request": {"method": "GET", "url": self._sized(query)}}
                    for query in queries
                ],
            }
        )
        try:
            async with self._client.stream(
                "POST",
                self._base,
                content=body,
                headers=self._post_headers,
                follow_redirects=False,
            ) as response:
                status = response.status_code
                if not response.is_success:
                    raise _NoBatch(
                        f"HTTP {status}",
                        unsupported=status in _BATCH_UNSUPPORTED_STATUSES,
                    )
                raw = await self._read_capped(response, "batch")
        except FhirResponseTooLarge:
            raise _NoBatch("too large") from None
        except httpx.HTTPError as exc:
            raise _NoBatch(type(exc).__name__) from None
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise _NoBatch("not JSON") from None
        if not is_resource(answer):
            raise _NoBatch("not a FHIR resource")
        if answer["resourceType"] != "Bundle" or answer.get("type") != "batch-response":
            raise _NoBatch("not a batch-response", unsupported=True)
        entries = answer.get("entry")
        if not isinstance(entries, list) or len(entries) != len(queries):
            raise _NoBatch("entries do not match the batch")
        return [
            _batch_answer(entry, query, resource_type)
            for entry, query, resource_type in zip(entries, queries, types, strict=True)
        ]

    async def _logged(
        self, query: str, first: FirstPage | None
    ) -> list[dict[str, Any]]:
        resource_type = _resource_type_of(query)
        progress = _Progress()
        started = time.perf_counter()
        try:
            resources = await self._run(query, resource_type, progress, first)
        except FhirError as err:
            _log_failure(
                resource_type,
                progress.status_code,
                progress.pages,
                time.perf_counter() - started,
                err,
            )
            raise
        logger.info(
            "fhir query done resource_type=%s status=%s pages=%d duration_ms=%.0f",
            resource_type,
            progress.status_code,
            progress.pages,
            (time.perf_counter() - started) * 1000,
        )
        return resources

    async def _run(
        self,
        query: str,
        resource_type: str,
        progress: _Progress,
        first: FirstPage | None,
    ) -> list[dict[str, Any]]:
        if first is None:
            sized = self._sized(query)
            try:
                body = await self._get_json(
                    self._query_url(sized, resource_type), resource_type, progress
                )
            except FhirError as err:
                if sized == query or not (
                    isinstance(err, FhirResponseTooLarge) or progress.status_code == 400
                ):
                    raise
                # The page size asked for is refused (400) or makes a page over the byte cap (large attachments):
                # the query again as written, in the server's own pages.
                progress.pages = 0
                body = await self._get_json(
                    self._query_url(query, resource_type), resource_type, progress
                )
            first = self._checked(query, body, resource_type)
        else:
            # The batch entry was this query's first page (checked by _batch_answer and first_page()).
            progress.pages = 1
            progress.status_code = 200
        resources = list(first.resources)
        next_url = first.next_url
        while next_url is not None:
            if progress.pages >= self._max_pages:
                # Advice built on part of the record could miss a prior study; refuse instead.
                raise FhirResponseTooLarge(
                    f"the {resource_type} search has more than {self._max_pages} pages",
                    resource_type=resource_type,
                )
            body = await self._get_json(next_url, resource_type, progress)
            resources.extend(_search_page(body, resource_type))
            next_url = self._next_url(body, resource_type)
        return resources

    def _checked(
        self, query: str, body: dict[str, Any], resource_type: str
    ) -> FirstPage:
        if _is_read(query):
            return FirstPage([_read_answer(body, resource_type)], None)
        return FirstPage(
            _search_page(body, resource_type), self._next_url(body, resource_type)
        )

    def _query_url(self, query: str, resource_type: str) -> httpx.URL:
        url = httpx.URL(f"{self._base}/{query}")
        if not self._within_base(url):
            raise FhirUnavailable(
                f"the {resource_type} query leaves fhirServer",
                resource_type=resource_type,
            )
        return url

    async def _get_json(
        self, url: httpx.URL, resource_type: str, progress: _Progress
    ) -> dict[str, Any]:
        try:
            async with self._client.stream(
                "GET", url, headers=self._headers, follow_redirects=False
            ) as response:
                progress.pages += 1
                progress.status_code = response.status_code
                if not response.is_success:
                    raise _status_error(response.status_code, resource_type)
                raw = await self._read_capped(response, resource_type)
                return _decode(raw, resource_type, response.status_code)
        except httpx.TimeoutException as exc:
            raise FhirTimeout(
                f"the FHIR server timed out on the {resource_type} query",
                resource_type=resource_type,
            ) from exc
        except httpx.DecodingError as exc:
            raise FhirInvalidResponse(
                f"the {resource_type} response could not be decoded",
                resource_type=resource_type,
            ) from exc
        except httpx.RequestError as exc:
            raise FhirUnavailable(
                f"the FHIR server could not be reached for the {resource_type} query",
                resource_type=resource_type,
            ) from exc

    async def _read_capped(self, response: httpx.Response, resource_type: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        # aiter_bytes yields decompressed bytes, so a small gzip bomb is caught too.
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_response_bytes:
                raise FhirResponseTooLarge(
                    f"the {resource_type} response exceeded {self._max_response_bytes} bytes",
                    resource_type=resource_type,
                    status_code=response.status_code,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _next_url(self, bundle: dict[str, Any], resource_type: str) -> httpx.URL | None:
        links = bundle.get("link")
        if not isinstance(links, list):
            return None
        for link in links:
            if isinstance(link, dict) and link.get("relation") == "next":
                target = link.get("url")
                try:
                    if not isinstance(target, str) or not target:
                        raise ValueError("no url")
                    url = httpx.URL(f"{self._base}/").join(target)
                except (ValueError, httpx.InvalidURL):
                    url = None
                if url is not None and self._within_base(url):
                    return url
                if url is not None and not url.userinfo and self._under_base_path(url):
                    # Servers behind a proxy announce their own origin in next links; the page is asked of
                    # fhirServer itself, so the token never leaves it.
                    return url.copy_with(
                        scheme=self._base.scheme,
                        host=self._base.host,
                        port=self._base.port,
                    )
                # Never followed (it would hand our bearer token to whoever the link names), and never
                # treated as the end of the results: the record would be silently partial.
                logger.warning(
                    "fhir paging refused: next link invalid or outside fhirServer resource_type=%s",
                    resource_type,
                )
                raise FhirInvalidResponse(
                    "the FHIR server's next-page link is invalid or points outside fhirServer",
                    resource_type=resource_type,
                )
        return None

    def _within_base(self, url: httpx.URL) -> bool:
        """True when url is on the base's origin and under its path (a plain prefix test is not enough)."""
        return (
            url.scheme == self._base.scheme
            and url.host == self._base.host
            and url.port == self._base.port
            and not url.userinfo
            and self._under_base_path(url)
        )

    def _under_base_path(self, url: httpx.URL) -> bool:
        return url.path == self._base_path or url.path.startswith(f"{self._base_path}/")


def _resource_type_of(query: str) -> str:
    match = _RESOURCE_TYPE.match(query)
    if match is None:
        raise ValueError("a FHIR query must start with a resource type")
    return match.group(0)


def _is_read(query: str) -> bool:
    return "?" not in query and "/" in query


def _has_count(query: str) -> bool:
    _, _, params = query.partition("?")
    return any(
        param.split("=", 1)[0] == "_count" for param in params.split("&") if param
    )


def _batch_answer(entry: object, query: str, resource_type: str) -> dict[str, Any]:
    """One batch-response entry as the query's first answer; _NoBatch unless it is a 2xx with the right resource.

    A failed or odd entry is not reported from here: the query is asked again on its own, and its own answer
    (a 404, a 401, a page cap) decides, exactly as without the batch.
    """
    if not isinstance(entry, dict):
        raise _NoBatch("entry is not an object")
    response = entry.get("response")
    status = response.get("status") if isinstance(response, dict) else None
    if not isinstance(status, str) or not status[:3].isdigit():
        raise _NoBatch("entry without response.status")
    if not 200 <= int(status[:3]) < 300:
        raise _NoBatch(f"entry HTTP {status[:3]}")
    resource = entry.get("resource")
    if not is_resource(resource):
        raise _NoBatch("entry without a resource")
    expected = resource_type if _is_read(query) else "Bundle"
    if resource["resourceType"] != expected:
        raise _NoBatch("entry of another resource type")
    return resource


def _status_error(status_code: int, resource_type: str) -> FhirError:
    what = f"the FHIR server answered HTTP {status_code} to the {resource_type} query"
    if status_code in (401, 403):
        return FhirUnauthorized(
            what, resource_type=resource_type, status_code=status_code
        )
    return FhirUnavailable(what, resource_type=resource_type, status_code=status_code)


def _decode(raw: bytes, resource_type: str, status_code: int) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # from None: the decode error holds the document, which may hold PHI.
        raise FhirInvalidResponse(
            f"the {resource_type} response is not JSON",
            resource_type=resource_type,
            status_code=status_code,
        ) from None
    if not is_resource(body):
        raise FhirInvalidResponse(
            f"the {resource_type} response is not a FHIR resource",
            resource_type=resource_type,
            status_code=status_code,
        )
    return body


def _log_failure(
    resource_type: str,
    status_code: int | None,
    pages: int,
    seconds: float,
    err: FhirError,
) -> None:
    logger.warning(
        "fhir query failed resource_type=%s status=%s pages=%d duration_ms=%.0f error=%s",
        resource_type,
        status_code,
        pages,
        seconds * 1000,
        type(err).__name__,
    )


def _read_answer(body: dict[str, Any], resource_type: str) -> dict[str, Any]:
    if body["resourceType"] != resource_type:
        raise FhirInvalidResponse(
            f"the {resource_type} read answered another resource type",
            resource_type=resource_type,
        )
    return body


def _search_page(body: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    if body["resourceType"] != "Bundle":
        raise FhirInvalidResponse(
            f"the {resource_type} search did not answer a Bundle",
            resource_type=resource_type,
        )
    try:
        return bundle_resources(body)
    except ValueError as exc:
        raise FhirInvalidResponse(
            f"the {resource_type} search Bundle is malformed ({exc})",
            resource_type=resource_type,
        ) from None

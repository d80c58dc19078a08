"""EHR public keys: build a KeySet from inline JWKS, or fetch and cache one from a JWKS URL."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import JWKRegistry, Key, KeySet, RSAKey

from app.security.errors import AuthError

logger = logging.getLogger(__name__)

# Symmetric ("oct") keys have no place in an EHR's public JWKS: dropping them means no
# HS* confusion is possible even if the algorithm list were misconfigured.
_ASYMMETRIC_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})
_MIN_RSA_BITS = 2048
_MAX_KEYS = 50

DEFAULT_MAX_JWKS_BYTES = 64 * 1024
DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_MIN_REFRESH_SECONDS = 10.0


class JwksFetcher(Protocol):
    """Returns the KeySet published at a JWKS URL; raises AuthError("jwks_unavailable")."""

    async def get_keys(self, url: str, *, force_refresh: bool) -> KeySet: ...


def keyset_from_jwks(jwks: Mapping[str, object]) -> KeySet:
    """Build a KeySet of usable public signing keys from a JWK Set document.

    Keys of unknown or symmetric type and RSA keys under 2048 bits are skipped; a set with no
    usable key raises AuthError("jwks_unavailable").
    """
    raw_keys = jwks.get("keys")
    if not isinstance(raw_keys, list) or len(raw_keys) > _MAX_KEYS:
        raise AuthError("jwks_unavailable")
    keys = [key for key in (_import_key(raw) for raw in raw_keys) if key is not None]
    if not keys:
        raise AuthError("jwks_unavailable")
    return KeySet(keys)


def _import_key(raw: object) -> Key | None:
    if not isinstance(raw, dict) or raw.get("kty") not in _ASYMMETRIC_KEY_TYPES:
        return None
    try:
        # joserfc warns on short RSA keys; we refuse them explicitly below instead.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)
            key = JWKRegistry.import_key(raw)
    except (JoseError, ValueError, TypeError, KeyError):
        return None
    if isinstance(key, RSAKey) and key.public_key.key_size < _MIN_RSA_BITS:
        return None
    return key


@dataclass
class _CacheEntry:
    keys: KeySet | None
    fetched_at: float
    attempted_at: float


class HttpJwksFetcher:
    """JwksFetcher over httpx with a per-URL cache and a rate limit on forced refreshes.

    A forced refresh (after an unknown `kid`) is served from cache when the URL was fetched
    less than `min_refresh_seconds` ago, so forged tokens cannot make us hammer an EHR.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        cache_seconds: int,
        *,
        min_refresh_seconds: float = DEFAULT_MIN_REFRESH_SECONDS,
        max_bytes: int = DEFAULT_MAX_JWKS_BYTES,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._cache_seconds = cache_seconds
        self._min_refresh_seconds = min_refresh_seconds
        self._max_bytes = max_bytes
        self._timeout = httpx.Timeout(timeout_seconds)
        self._clock = clock
        self._cache: dict[str, _CacheEntry] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get_keys(self, url: str, *, force_refresh: bool) -> KeySet:
        lock = self._locks.setdefault(url, asyncio.Lock())
        # One fetch per URL at a time; waiters then see the fresh entry instead of refetching.
        async with lock:
            entry = self._cache.get(url)
            now = self._clock()
            if entry is not None and self._can_reuse(
                entry, now, force_refresh=force_refresh
            ):
                if entry.keys is None:
                    raise AuthError("jwks_unavailable")
                return entry.keys
            try:
                keys = await self._fetch(url)
            except AuthError:
                # Negative cache: a failing URL is retried only after min_refresh_seconds.
                self._cache[url] = _CacheEntry(
                    keys=None, fetched_at=float("-inf"), attempted_at=now
                )
                raise
            self._cache[url] = _CacheEntry(keys=keys, fetched_at=now, attempted_at=now)
            return keys

    def _can_reuse(
        self, entry: _CacheEntry, now: float, *, force_refresh: bool
    ) -> bool:
        recently_tried = now - entry.attempted_at < self._min_refresh_seconds
        if entry.keys is None or force_refresh:
            return recently_tried
        return now - entry.fetched_at < self._cache_seconds

    async def _fetch(self, url: str) -> KeySet:
        try:
            body = await self._download(url)
            document = json.loads(body)
        except (httpx.HTTPError, ValueError, RecursionError) as error:
            logger.warning(
                "jwks_fetch_failed", extra={"error_type": type(error).__name__}
            )
            raise AuthError("jwks_unavailable") from None
        if not isinstance(document, dict):
            raise AuthError("jwks_unavailable")
        return keyset_from_jwks(document)

    async def _download(self, url: str) -> bytes:
        # No redirects: a JWKS URL is configuration, and a redirect could point anywhere.
        async with self._client.stream(
            "GET", url, timeout=self._timeout, follow_redirects=False
        ) as response:
            if response.status_code != httpx.codes.OK:
                logger.warning(
                    "jwks_fetch_status", extra={"status_code": response.status_code}
                )
                raise AuthError("jwks_unavailable")
            declared = response.headers.get("content-length")
            if (
                declared is not None
                and declared.isdigit()
                and int(declared) > self._max_bytes
            ):
                raise AuthError("jwks_unavailable")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self._max_bytes:
                    raise AuthError("jwks_unavailable")
                chunks.append(chunk)
        return b"".join(chunks)

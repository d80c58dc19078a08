"""Decide whether a request's `fhirServer` may be contacted (SSRF guard); never resolves DNS."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from app.security.clients import RegisteredClient
from app.security.errors import FhirServerNotAllowed

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Cloud instance-metadata endpoints; the link-local ranges are refused separately.
_METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
        "metadata.platformequinix.com",
    }
)
_METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
    }
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Linux delivers 0.0.0.0/8 to this host.
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
# inet_aton() accepts "2852039166", "0xa9.0xfe.0xa9.0xfe" and "0251.0376.0251.0376" as IPv4.
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str

    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if _DEFAULT_PORTS[self.scheme] == self.port else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.path}"

    def is_within(self, allowed: _Target) -> bool:
        if (self.scheme, self.host, self.port) != (
            allowed.scheme,
            allowed.host,
            allowed.port,
        ):
            return False
        # A path prefix counts only on a segment boundary: /fhir allows /fhir/r4, not /fhir-evil.
        return (
            not allowed.path
            or self.path == allowed.path
            or self.path.startswith(allowed.path + "/")
        )


def check_fhir_server(
    url: str,
    *,
    client: RegisteredClient | None,
    dev_servers: Sequence[str],
    auth_disabled: bool,
) -> str:
    """Return the normalised base URL (no trailing slash) or raise FhirServerNotAllowed.

    A registered client may reach only its own `fhir_servers`; with authentication disabled
    (development) only loopback hosts and `dev_servers` are reachable. Metadata and link-local
    addresses are refused in every mode.
    """
    target = _parse(url)
    if client is not None:
        allowed = client.fhir_servers
    elif auth_disabled:
        if _is_loopback(target.host):
            return target.base_url()
        allowed = tuple(dev_servers)
    else:
        raise FhirServerNotAllowed(
            "fhirServer is not allowed for an unauthenticated caller"
        )
    if any(target.is_within(entry) for entry in _parse_allowed(allowed)):
        return target.base_url()
    raise FhirServerNotAllowed("fhirServer is not registered for this client")


def _parse_allowed(entries: Sequence[str]) -> list[_Target]:
    # A misconfigured entry can never match anything, but must not break the other entries.
    targets: list[_Target] = []
    for entry in entries:
        try:
            targets.append(_parse(entry))
        except FhirServerNotAllowed:
            continue
    return targets


def _parse(url: str) -> _Target:
    if not url or any(ch.isspace() or ord(ch) < 0x20 or ch in "\x7f\\" for ch in url):
        raise FhirServerNotAllowed("fhirServer is not a valid URL")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        raise FhirServerNotAllowed("fhirServer is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise FhirServerNotAllowed("fhirServer must use http or https")
    if "@" in parts.netloc:
        raise FhirServerNotAllowed("fhirServer must not carry credentials")
    if "?" in url or "#" in url:
        raise FhirServerNotAllowed("fhirServer must not carry a query or fragment")
    try:
        port = parts.port if parts.port is not None else _DEFAULT_PORTS[scheme]
    except ValueError:
        raise FhirServerNotAllowed("fhirServer is not a valid URL") from None
    if port == 0:
        raise FhirServerNotAllowed("fhirServer is not a valid URL")
    host = _check_host(hostname or "")
    return _Target(scheme=scheme, host=host, port=port, path=_check_path(parts.path))


def _check_host(host: str) -> str:
    host = host.lower()
    if not host or "%" in host:
        raise FhirServerNotAllowed("fhirServer is not a valid URL")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        if _is_forbidden_address(address):
            raise FhirServerNotAllowed("fhirServer address is not allowed")
        return address.compressed
    labels = host.split(".")
    if not all(_HOST_LABEL.fullmatch(label) for label in labels) or len(host) > 253:
        raise FhirServerNotAllowed("fhirServer is not a valid URL")
    if all(_NUMERIC_LABEL.fullmatch(label) for label in labels):
        raise FhirServerNotAllowed("fhirServer address is not allowed")
    if host in _METADATA_NAMES:
        raise FhirServerNotAllowed("fhirServer address is not allowed")
    return host


def _is_forbidden_address(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        # IPv4 hidden inside IPv6 reaches the same IPv4 host.
        embedded = address.ipv4_mapped
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and _is_forbidden_address(embedded):
            return True
    return (
        address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address in _METADATA_ADDRESSES
        or (isinstance(address, ipaddress.IPv4Address) and address in _THIS_NETWORK)
    )


def _check_path(path: str) -> str:
    decoded = unquote(path)
    # Dot segments would let /fhir/../admin pass a prefix check and then be normalised away.
    if any(segment in {".", ".."} for segment in decoded.split("/")) or "\\" in decoded:
        raise FhirServerNotAllowed("fhirServer path is not allowed")
    return path.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""Host classification shared by settings and the SMART app (no app imports, so anything may import it)."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """True when host names this machine only (localhost or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

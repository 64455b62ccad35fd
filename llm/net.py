"""Whether a host is this machine: one answer for the REST server's API-key rule and the app's login."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses, IPv6 in brackets too (`[::1]`). Any other host name
    may resolve to anything, so it is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False

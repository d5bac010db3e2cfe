"""The server's authentication mode, and when it may run without authentication."""

from __future__ import annotations

import ipaddress
from typing import Literal

AuthMode = Literal["none", "sigv4"]
AUTH_MODES: tuple[AuthMode, ...] = ("none", "sigv4")


class UnsafeAuthMode(Exception):
    """``--auth none`` was asked for on an address other machines can reach."""


def is_loopback(host: str) -> bool:
    """Tell whether ``host`` only accepts connections from this machine.

    Only IP literals and ``localhost`` count: any other name could resolve to
    an address that other machines reach.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_auth_mode(requested: AuthMode | None, host: str, key_count: int) -> AuthMode:
    """Pick the mode: the requested one, else ``none`` only on loopback with no keys.

    Raises UnsafeAuthMode for ``none`` on a non-loopback address.
    """
    loopback = is_loopback(host)
    if requested is None:
        return "none" if loopback and key_count == 0 else "sigv4"
    if requested == "none" and not loopback:
        raise UnsafeAuthMode(
            f"--auth none is not allowed on {host}: anyone who can reach that address could "
            "deploy and invoke models. Create an access key with "
            "'sageport keys create --data-dir DIR' and run with --auth sigv4, "
            "or listen on 127.0.0.1."
        )
    return requested

"""Checks on where a request is addressed (``Host``) and which page sent it (``Origin``).

DNS rebinding: a page at ``http://rebind.example:8765`` whose name a DNS
server later resolves to 127.0.0.1 is, to the browser, same-origin with a
server on that loopback port, and its requests carry
``Host: rebind.example:8765``. A server without authentication therefore
serves only requests addressed to a loopback name.

Cross-site requests: a form on another site, or ``fetch`` with
``mode: "no-cors"``, can POST a ``text/plain`` body to any URL, and the
browser adds that page's ``Origin``. AWS SDKs and the AWS CLI never send
``Origin``, so the APIs reject one that names another origin.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from sageport.auth.mode import is_loopback
from sageport.protocol.asgi import Scope, header


def is_loopback_host(host: bytes | None) -> bool:
    """Tell whether a Host header names localhost or a loopback IP literal, with any port."""
    if host is None:
        return False
    # A server receives few distinct Host values, and parsing one as an IP address costs
    # about 2.5 µs, which every request would pay. Only short values are
    # remembered, so the cache stays small whatever clients send.
    if len(host) <= _CACHED_HOST_LENGTH:
        return _is_loopback_host_cached(host)
    return _is_loopback_host(host)


_CACHED_HOST_LENGTH = 64


@functools.lru_cache(maxsize=256)
def _is_loopback_host_cached(host: bytes) -> bool:
    return _is_loopback_host(host)


def _is_loopback_host(host: bytes) -> bool:
    text = host.decode("latin-1").strip().lower()
    if text.startswith("["):
        name, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return False
        port = rest[1:]
    else:
        name, _, port = text.partition(":")
    if port and not port.isdigit():
        return False
    return is_loopback(name)


def is_cross_origin(scope: Scope) -> bool:
    """Tell whether the request carries an Origin other than its own scheme-less host.

    An opaque origin (``Origin: null``, sent from sandboxed frames and
    redirects) matches no host.
    """
    origin = header(scope, b"origin")
    if origin is None:
        return False
    netloc = urlsplit(origin.decode("latin-1").strip()).netloc.lower()
    host = (header(scope, b"host") or b"").decode("latin-1").strip().lower()
    return netloc != host

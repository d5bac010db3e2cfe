"""The console's pages and static assets.

Every page is the same HTML shell. ``app.js`` reads the path and renders the
endpoints list (``/``), an endpoint's page (``/console/endpoints/NAME``,
with the open tab in ``?tab=``) or the sign-in form (``/console/signin``).
The pages use real paths, not fragments, so an endpoint's page can be
bookmarked and opened in a new browser tab.
"""

from __future__ import annotations

import mimetypes
import secrets
from importlib import resources
from importlib.resources.abc import Traversable

from sageport.protocol.asgi import Headers, Send, send_response

STATIC_PREFIX = "/console/static/"
ENDPOINT_PAGE_PREFIX = "/console/endpoints/"

# The console loads only its own scripts and styles. Images come from blob:
# and data: URLs built from response bodies, and the code editor's injected
# <style> elements carry the per-page nonce.
_CSP = (
    "default-src 'self'; style-src 'self' 'nonce-{nonce}'; img-src 'self' blob: data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_SECURITY_HEADERS: Headers = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_NONCE_PLACEHOLDER = b"{{CSP_NONCE}}"

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}


def static_root() -> Traversable:
    return resources.files("sageport.console").joinpath("static")


def is_page(path: str) -> bool:
    return path == "/" or (
        path.startswith(ENDPOINT_PAGE_PREFIX) and len(path) > len(ENDPOINT_PAGE_PREFIX)
    )


async def send_page(send: Send) -> None:
    nonce = secrets.token_urlsafe(16)
    shell = static_root().joinpath("index.html").read_bytes()
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"cache-control", b"no-store"),
        (b"content-security-policy", _CSP.format(nonce=nonce).encode()),
    ]
    body = shell.replace(_NONCE_PLACEHOLDER, nonce.encode())
    await send_response(send, 200, headers + _SECURITY_HEADERS, body)


async def send_static(send: Send, path: str) -> bool:
    """Send one asset under ``static/``; return False when there is no such file."""
    relative = path[len(STATIC_PREFIX) :]
    parts = relative.split("/")
    # Only plain names: no "..", no hidden files, no empty segments.
    if not relative or any(not part or part.startswith(".") for part in parts):
        return False
    asset = static_root().joinpath(*parts)
    if not asset.is_file():
        return False

    suffix = "." + parts[-1].rpartition(".")[2]
    content_type = _TYPES.get(suffix) or mimetypes.guess_type(parts[-1])[0]
    headers = [
        (b"content-type", (content_type or "application/octet-stream").encode()),
        (b"cache-control", b"no-cache"),
        (b"content-security-policy", b"default-src 'none'"),
    ]
    await send_response(send, 200, headers + _SECURITY_HEADERS, asset.read_bytes())
    return True


async def send_redirect(send: Send, location: str) -> None:
    """Send 303 See Other to a path on this server."""
    headers = [
        (b"location", location.encode("latin-1")),
        (b"cache-control", b"no-store"),
        (b"content-type", b"text/plain; charset=utf-8"),
    ]
    await send_response(send, 303, headers + _SECURITY_HEADERS, b"")

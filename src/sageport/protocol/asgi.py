"""Small ASGI helpers shared by the API handlers: reading bodies and sending responses.

The server speaks raw ASGI to keep the hot path short: no framework object is
built per request, and headers stay as the byte pairs uvicorn hands over.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from sageport.errors import SageportError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
# Returns an awaitable that completes when the client disconnects.
DisconnectWatch = Callable[[], Awaitable[object]]

# The scope extension in which Sageport's HTTP protocol (http_limits.py) puts,
# under "future", a future that completes when the client's connection is lost.
DISCONNECTED_EXTENSION = "sageport.disconnected"


class Authenticator(Protocol):
    """Checks a request in two steps; each raises a SageportError to reject it."""

    def check_headers(self, scope: Scope) -> None:
        """Check what can be checked before the body is read."""

    def check_request(self, scope: Scope, body: bytes) -> None:
        """Check the request with its whole body."""


# The scope extension in which Sageport's HTTP protocol (whole_response.py)
# puts, under "write", a function that writes a whole response in one go. It
# returns False, having written nothing, for a response it does not handle.
WHOLE_RESPONSE_EXTENSION = "sageport.whole_response"

# Bodies past the limit are read and dropped up to this many bytes, so that a
# client still sending gets the error response instead of a broken pipe, which
# botocore would retry. Past this size the connection is closed.
DRAIN_LIMIT = 64 * 2**20

# The variant digit of an RFC 4122 UUID is 8, 9, a or b, because its two
# high bits are 10. Indexing this by a random hex digit sets them.
_UUID_VARIANT_DIGITS = "89ab89ab89ab89ab"

_CREDENTIAL_REGION = re.compile(rb"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/")


class BodyTooLarge(Exception):
    """The request body is larger than the handler accepts."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class ClientDisconnected(Exception):
    """The client went away before sending the whole body; there is no one to respond to."""


def new_request_id() -> str:
    """Return a random (version 4) UUID in its usual text form, as AWS request ids are."""
    # Formatting 16 random bytes directly takes less than half the time of
    # str(uuid.uuid4()), which validates its arguments and builds an object.
    digits = os.urandom(16).hex()
    variant = _UUID_VARIANT_DIGITS[int(digits[16], 16)]
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"


def caller_gone_watch(scope: Scope, receive: Receive) -> DisconnectWatch:
    """Return a function whose awaitable completes when the client of ``scope`` disconnects.

    Call it only once the request body has been read. Under Sageport's HTTP
    protocol it returns the connection's disconnect future, which the caller
    must not cancel. Under any other server it calls ``receive``, which
    returns ``http.disconnect`` then.
    """
    extension = (scope.get("extensions") or {}).get(DISCONNECTED_EXTENSION)
    if extension is None:
        return receive
    disconnected: asyncio.Future[None] = extension["future"]
    return lambda: disconnected


def header(scope: Scope, name: bytes) -> bytes | None:
    """Return the first value of a header; ``name`` must be lower case."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def region_of(scope: Scope, default: str) -> str:
    """Take the region from the SigV4 credential scope, else the server's default."""
    authorization = header(scope, b"authorization")
    if authorization:
        match = _CREDENTIAL_REGION.search(authorization)
        if match:
            return match.group(1).decode("ascii", errors="replace")
    return default


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """Read the whole request body; raise BodyTooLarge past ``limit`` bytes."""
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > DRAIN_LIMIT:
        raise BodyTooLarge(int(declared))

    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > DRAIN_LIMIT:
            raise BodyTooLarge(size)
        if not message.get("more_body", False):
            break

    if size > limit:
        raise BodyTooLarge(size)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def has_body(scope: Scope) -> bool:
    """Tell whether the request declares a body, by Content-Length or Transfer-Encoding."""
    if header(scope, b"transfer-encoding") is not None:
        return True
    length = header(scope, b"content-length")
    return length is not None and length.strip() not in (b"", b"0")


async def send_early_response(
    scope: Scope, send: Send, status: int, headers: Headers, body: bytes
) -> None:
    """Send a response without reading the request body, then close if a body follows.

    uvicorn would otherwise read and drop the body to keep the connection
    alive, so a client that trickles it would hold the connection until the
    body deadline.
    """
    if has_body(scope):
        headers = [*headers, (b"connection", b"close")]
    await send_response(send, status, headers, body)


async def rejected_before_body(
    scope: Scope,
    send: Send,
    auth: Authenticator | None,
    render: Callable[[SageportError, str], tuple[int, Headers, bytes]],
    request_id: str,
) -> bool:
    """Run the checks that need no body; on a rejection, send its error and return True.

    An unsigned request is rejected before its body arrives, so a client
    cannot hold the connection by sending the body slowly.
    """
    if auth is None:
        return False
    try:
        auth.check_headers(scope)
    except SageportError as exc:
        status, headers, body = render(exc, request_id)
        await send_early_response(scope, send, status, headers, body)
        return True
    return False


async def send_response(
    send: Send, status: int, headers: Headers, body: bytes, scope: Scope | None = None
) -> None:
    """Send a whole response, with a Content-Length when the caller set none.

    Without one, uvicorn frames the body as chunked, which costs a second
    write and lets a client read the headers without the body's end. Given
    the request's ``scope``, the response goes through the whole-response
    extension when the server offers it, in one write.
    """
    if not any(name == b"content-length" for name, _ in headers):
        headers = [*headers, (b"content-length", str(len(body)).encode("ascii"))]
    if scope is not None:
        extension = (scope.get("extensions") or {}).get(WHOLE_RESPONSE_EXTENSION)
        if extension is not None and extension["write"](scope, status, headers, body):
            return
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

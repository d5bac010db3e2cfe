"""Write a whole response in one transport write, skipping uvicorn's per-header work.

uvicorn's httptools protocol (0.55) takes a response as two ASGI messages. For
``http.response.start`` it searches every header name and value with a
regular expression and lowercases the name, then writes the head. It writes
the body with a second write, so each response costs two ``send`` system
calls. Sageport's handlers build most responses whole, with lowercase header
names and a Content-Length.

``WholeResponseProtocol`` puts a function in each request's scope, under the
``sageport.whole_response`` extension as ``{"write": function}``. Called with
the request's scope, the status, headers and body, it writes them in one
transport write and finishes the request as uvicorn's ``send`` would. It
writes exactly the bytes uvicorn would write, or nothing. For a response it
does not handle it returns False, and the handler sends the two messages.
It does not handle a response to a HEAD request, a ``connection`` or
``transfer-encoding`` header, a Content-Length that is missing, repeated or
wrong, an invalid header, or paused writing. ``send_response`` in
``asgi.py`` uses it.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from sageport.protocol.asgi import WHOLE_RESPONSE_EXTENSION, Headers, Scope
from sageport.protocol.http_limits import GuardedHttpToolsProtocol, RequestLimits

# Header names that uvicorn's send treats specially, and this path declines.
_SPECIAL_NAMES = frozenset({b"connection", b"transfer-encoding"})

# Names already found valid and lower case. Handlers use a few dozen fixed
# names; the bound keeps memory flat if one ever sends names of its own.
_MAX_CACHED_NAMES = 256
_plain_names: set[bytes] = set()


class WholeResponseProtocol(HttpToolsProtocol):
    """Adds the ``sageport.whole_response`` extension to each request's scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # One extension per connection: a function bound to the request's
        # cycle would close a reference cycle (scope, function, cycle, scope)
        # per request, which only the garbage collector frees.
        self._whole_response_extension: dict[object, object] = {"write": self._write_whole}
        super().connection_made(transport)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        extensions = self.scope.setdefault("extensions", {})
        extensions[WHOLE_RESPONSE_EXTENSION] = self._whole_response_extension

    def _write_whole(self, scope: Scope, status: int, headers: Headers, body: bytes) -> bool:
        # A pipelined request that arrived while this one runs has the newest
        # cycle; this one then takes uvicorn's send. So does a protocol upgrade,
        # for which uvicorn builds no cycle.
        cycle = self.cycle
        if cycle is None or cycle.scope is not scope:
            return False
        return write_whole(cycle, status, headers, body)


def http_protocol(limits: RequestLimits) -> type[HttpToolsProtocol]:
    """Return the class for ``uvicorn.Config(http=...)``: these limits and the one-write path."""
    return type(
        "SageportHttpProtocol",
        (WholeResponseProtocol, GuardedHttpToolsProtocol),
        {"limits": limits},
    )


def write_whole(cycle: RequestResponseCycle, status: int, headers: Headers, body: bytes) -> bool:
    """Write the response to ``cycle``'s request and complete it; False if it wrote nothing.

    The state it leaves in ``cycle`` is the state uvicorn's ``send`` leaves
    after the start message and a last body message.
    """
    if (
        cycle.response_started
        or cycle.disconnected
        or cycle.flow.write_paused
        or cycle.access_log
        or cycle.scope["method"] == "HEAD"
    ):
        return False
    head = _response_head(status, cycle.default_headers, headers, len(body), cycle.keep_alive)
    if head is None:
        return False

    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.chunked_encoding = False
    cycle.expected_content_length = 0
    cycle.transport.writelines((head, body))

    cycle.response_complete = True
    cycle.message_event.set()
    if not cycle.keep_alive:
        cycle.transport.close()
    cycle.on_response()
    return True


def _response_head(
    status: int,
    default_headers: Headers,
    headers: Headers,
    content_length: int,
    keep_alive: bool,
) -> bytes | None:
    """Build the head uvicorn writes for these headers, or None where it would differ or fail."""
    status_line = STATUS_LINE.get(status)
    if status_line is None:
        return None

    parts = [status_line]
    expected_length = str(content_length).encode("ascii")
    length_seen = False
    for name, value in (*default_headers, *headers):
        if name == b"content-length":
            if length_seen or value != expected_length:
                return None
            length_seen = True
        elif name not in _plain_names and not _is_plain_name(name):
            return None
        if HEADER_VALUE_RE.search(value):
            return None
        parts += (name, b": ", value, b"\r\n")
    if not length_seen:
        return None

    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def _is_plain_name(name: bytes) -> bool:
    """Check that uvicorn would send ``name`` unchanged and give it no special meaning."""
    if HEADER_RE.search(name) or name != name.lower() or name in _SPECIAL_NAMES:
        return False
    if len(_plain_names) < _MAX_CACHED_NAMES:
        _plain_names.add(name)
    return True

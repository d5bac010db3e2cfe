"""Limits on how a client may send a request: header size and count, and time to send it.

uvicorn's httptools protocol (0.55) bounds neither the request head nor the
time a client takes to send it: its only timer is the keep-alive timer between
requests, and any byte received cancels it. A client that dribbles a header
line every few seconds, or stops halfway through a body, would hold its
connection, and the handler waiting for that body, forever. uvicorn's
``h11_max_incomplete_event_size`` applies to the h11 protocol only.

``guarded_protocol`` returns a subclass of uvicorn's protocol that adds:

- a deadline from the connection (or the first byte of a keep-alive request)
  until the end of the headers, after which the server sends 408 and closes;
- an idle deadline while the body arrives: a connection that sends no body
  bytes for that long is closed, and the handler sees a disconnect;
- a deadline for the whole body, counted from the end of the headers, so a
  client that sends one byte just before each idle deadline is still cut
  off. The server sends 408 unless a response has started, and then closes;
- a maximum size of the request line plus headers and a maximum header count,
  both rejected with 431 and a closed connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger("sageport.protocol")


@dataclass(frozen=True)
class RequestLimits:
    """Maximum size of a request head, and the time limits for sending a request."""

    # Seconds from the connection (or the next request's first byte) until
    # the last header line.
    header_timeout: float = 30.0
    # Seconds the body may go without a new byte arriving.
    body_idle_timeout: float = 30.0
    # Seconds from the last header line until the whole body has arrived. A
    # 6 MiB invocation, the largest SageMaker accepts, takes about 50 s at
    # 1 Mbit/s, a slow uplink.
    body_timeout: float = 60.0
    # Bytes of request line plus headers. boto3's largest requests carry well
    # under 4 KiB of headers.
    max_header_bytes: int = 32 * 1024
    max_header_count: int = 100


class _RequestRejected(Exception):
    """Raised inside a parser callback to stop parsing a request that breaks a limit."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of ``RequestLimits``."""

    limits: ClassVar[RequestLimits] = RequestLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._awaiting_headers = True
        self._head_bytes = 0
        self._parsed_head_bytes = 0
        self._header_count = 0
        self._rejection: tuple[bytes, str] | None = None
        self._guard_timer: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm(self.limits.header_timeout, self._on_header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._cancel_body_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers:
            self._head_bytes += len(data)
        super().data_received(data)

        # The chunk may also carry the start of the body; only a head that is
        # still incomplete after it counts as too large.
        if self._awaiting_headers and self._head_bytes > self.limits.max_header_bytes:
            self._reject(
                b"431 Request Header Fields Too Large",
                f"The request line and headers exceed {self.limits.max_header_bytes} bytes.",
            )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True
        self._head_bytes = 0
        self._parsed_head_bytes = 0
        self._header_count = 0
        if self._guard_timer is None:
            self._arm(self.limits.header_timeout, self._on_header_timeout)

    def on_url(self, url: bytes) -> None:
        self._parsed_head_bytes += len(url)
        self._check_head_size()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_header_count:
            self._rejection = (
                b"431 Request Header Fields Too Large",
                f"The request has more than {self.limits.max_header_count} headers.",
            )
            raise _RequestRejected
        self._parsed_head_bytes += len(name) + len(value) + 4
        self._check_head_size()
        super().on_header(name, value)

    def _check_head_size(self) -> None:
        # A head that arrived whole in one chunk is measured here, from what
        # the parser found; data_received covers a head still arriving.
        if self._parsed_head_bytes > self.limits.max_header_bytes:
            self._rejection = (
                b"431 Request Header Fields Too Large",
                f"The request line and headers exceed {self.limits.max_header_bytes} bytes.",
            )
            raise _RequestRejected

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._disarm()
        super().on_headers_complete()
        self._arm(self.limits.body_idle_timeout, self._on_body_timeout)
        self._cancel_body_deadline()
        self._body_deadline = self.loop.call_later(self.limits.body_timeout, self._on_body_deadline)

    def on_body(self, body: bytes) -> None:
        self._arm(self.limits.body_idle_timeout, self._on_body_timeout)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._cancel_body_deadline()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn sends its response to every parser error, including one
        # raised from a callback above, through this method.
        if self._rejection is not None:
            status, message = self._rejection
            self._reject(status, message)
            return
        self._reject(b"400 Bad Request", f"The request is not valid HTTP/1.1: {msg}")

    def _on_header_timeout(self) -> None:
        self._guard_timer = None
        self._reject(
            b"408 Request Timeout",
            f"The request headers did not arrive within {self.limits.header_timeout:g} s.",
        )

    def _on_body_timeout(self) -> None:
        self._guard_timer = None
        if self.transport.is_closing():
            return
        logger.info(
            "Closing the connection from %s: no request body bytes for %g s",
            _peer(self.client),
            self.limits.body_idle_timeout,
        )
        self.transport.close()

    def _on_body_deadline(self) -> None:
        self._body_deadline = None
        if self.transport.is_closing():
            return
        message = f"The request body did not arrive within {self.limits.body_timeout:g} s."
        # After an early error response (a rejected signature, say), the rest
        # of the body is only being drained, and a second response would
        # corrupt the stream.
        if self.cycle is not None and self.cycle.response_started:
            logger.info("Closing the connection from %s: %s", _peer(self.client), message)
            self._disarm()
            self.transport.close()
            return
        self._reject(b"408 Request Timeout", message)

    def _cancel_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _reject(self, status: bytes, message: str) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        logger.info("Rejected a request from %s: %s", _peer(self.client), message)
        self.transport.write(_aws_error_response(status, message))
        self.transport.close()

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._guard_timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._guard_timer is not None:
            self._guard_timer.cancel()
            self._guard_timer = None


def _aws_error_response(status: bytes, message: str) -> bytes:
    """Build an error both AWS protocols parse, for a request too broken to route.

    The request never reached a handler, so which API it was for is unknown.
    botocore reads a runtime (REST-JSON) error's code from ``x-amzn-ErrorType``
    and a control-plane (AWS JSON 1.1) error's code from ``__type``, so each
    carries the name its own API uses for bad input.
    """
    body = json.dumps(
        {"__type": "ValidationException", "message": message, "Message": message}
    ).encode()
    return (
        b"HTTP/1.1 " + status + b"\r\n"
        b"content-type: application/json\r\n"
        b"x-amzn-errortype: ValidationError\r\n"
        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )


def guarded_protocol(limits: RequestLimits) -> type[GuardedHttpToolsProtocol]:
    """Return the protocol class to hand to ``uvicorn.Config(http=...)`` with these limits."""
    return type("SageportHttpProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "an unknown client"

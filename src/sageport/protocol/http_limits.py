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
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sageport.protocol.asgi import DISCONNECTED_EXTENSION

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


# uvloop's timers count whole milliseconds, so a timer can fire up to half a
# millisecond before its deadline. Re-arming for less than this would fire
# again at once, over and over, until the clock caught up.
_TIMER_RESOLUTION = 0.001


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
        self._guard_deadline = 0.0
        self._guard_callback: Callable[[], None] | None = None
        self._disconnected: asyncio.Future[None] = self.loop.create_future()
        self._disconnect_extension: dict[object, object] = {"future": self._disconnected}
        self._body_deadline = 0.0
        super().connection_made(transport)
        self._arm(self.limits.header_timeout, self._on_header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._guard_timer is not None:
            self._guard_timer.cancel()
            self._guard_timer = None
        if not self._disconnected.done():
            self._disconnected.set_result(None)
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
        # One future per connection completes for every request on it when the
        # client leaves, where a task calling receive() per request cost more.
        self.scope["extensions"] = {DISCONNECTED_EXTENSION: self._disconnect_extension}
        self._awaiting_headers = True
        self._head_bytes = 0
        self._parsed_head_bytes = 0
        self._header_count = 0
        if self._guard_callback is None:
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
        self._body_deadline = self.loop.time() + self.limits.body_timeout
        self._arm_body_timer()

    def on_body(self, body: bytes) -> None:
        self._arm_body_timer()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _arm_body_timer(self) -> None:
        # The body has two limits, the gap between bytes and the whole body;
        # the one timer waits for whichever ends first.
        left = self._body_deadline - self.loop.time()
        if left <= self.limits.body_idle_timeout:
            self._arm(left, self._on_body_deadline)
        else:
            self._arm(self.limits.body_idle_timeout, self._on_body_timeout)

    def send_400_response(self, msg: str) -> None:
        # uvicorn sends its response to every parser error, including one
        # raised from a callback above, through this method.
        if self._rejection is not None:
            status, message = self._rejection
            self._reject(status, message)
            return
        self._reject(b"400 Bad Request", f"The request is not valid HTTP/1.1: {msg}")

    def _on_header_timeout(self) -> None:
        self._reject(
            b"408 Request Timeout",
            f"The request headers did not arrive within {self.limits.header_timeout:g} s.",
        )

    def _on_body_timeout(self) -> None:
        if self.transport.is_closing():
            return
        logger.info(
            "Closing the connection from %s: no request body bytes for %g s",
            _peer(self.client),
            self.limits.body_idle_timeout,
        )
        self.transport.close()

    def _on_body_deadline(self) -> None:
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

    def _reject(self, status: bytes, message: str) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        logger.info("Rejected a request from %s: %s", _peer(self.client), message)
        self.transport.write(_aws_error_response(status, message))
        self.transport.close()

    # One timer per connection serves every deadline. Arming a deadline
    # after the pending timer's time only records it, and the timer re-arms
    # itself for the rest when it fires. Every request moves the deadline two
    # or three times, and creating and cancelling a uvloop timer cost about
    # 1.5 µs in a microbenchmark.

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        deadline = self.loop.time() + delay
        self._guard_deadline = deadline
        self._guard_callback = callback
        timer = self._guard_timer
        if timer is None or deadline < timer.when():
            if timer is not None:
                timer.cancel()
            self._guard_timer = self.loop.call_at(deadline, self._on_guard_timer)

    def _disarm(self) -> None:
        # A pending timer finds no callback when it fires and does nothing.
        self._guard_callback = None

    def _on_guard_timer(self) -> None:
        self._guard_timer = None
        callback = self._guard_callback
        if callback is None:
            return
        if self._guard_deadline - self.loop.time() > _TIMER_RESOLUTION:
            self._guard_timer = self.loop.call_at(self._guard_deadline, self._on_guard_timer)
            return
        self._guard_callback = None
        callback()


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

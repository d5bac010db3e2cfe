"""InvokeEndpointWithResponseStream: forward to an instance and relay its response as it arrives.

The instance is chosen, and every failure before the first chunk is reported,
exactly as for InvokeEndpoint: the caller gets an ordinary error response such
as ModelError. Once the first chunk is relayed the caller already has a 200,
so a later failure raises ModelStreamError, which the protocol layer sends as
the last message of the event stream. Its ``ErrorCode`` is:

- ``StreamBroken`` when the instance's body ends incomplete, because the
  connection closed before the terminating chunk. The built-in runtime
  reports a handler that raised mid-stream this way, and a crashed instance
  looks the same.
- ``ModelInvocationTimeExceeded`` when the stream runs past the variant's
  timeout (``SAGEMAKER_MODEL_SERVER_TIMEOUT``), counted from the start of the
  model call, or when the model sends nothing for that long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

# Both operations share InvokeEndpoint's instance choice and error wording.
from sageport.dataplane.invoke import (
    CONTAINER_NAME,
    DEFAULT_CONTENT_TYPE,
    available_instance,
    connection_lost_error,
    mark_unreachable,
    model_error,
    ready_deadline,
    relayed_custom_attributes,
    timed_out_error,
)
from sageport.dataplane.routing import EndpointRoute, InstanceRoute, VariantRoute
from sageport.dataplane.upstream import UpstreamConnectError, UpstreamDisconnected, UpstreamStream
from sageport.errors import ModelStreamError, ValidationError

logger = logging.getLogger("sageport.dataplane")

# One HTTP chunk from the model becomes one PayloadPart. A chunk larger than
# this, or a body that is not chunked, is relayed in parts of at most this size.
MAX_PART_BYTES = 2**20

_LATENCY_HEADER = b"x-sageport-model-latency-us"


class ResponseStream:
    """An instance's open 200 response whose first part has been read."""

    def __init__(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        instance: InstanceRoute,
        response: UpstreamStream,
    ) -> None:
        self.route = route
        self.variant = variant
        self.instance = instance
        content_type = response.headers.get(b"content-type")
        self.content_type = content_type.decode("latin-1") if content_type else DEFAULT_CONTENT_TYPE
        self.custom_attributes = relayed_custom_attributes(route, response.headers)
        self.bytes_relayed = 0
        self._response = response
        self.deadline = _stream_deadline(response, variant.timeout)
        self._pending = b""
        self._first_part = b""
        self._closed = False

    async def parts(self) -> AsyncIterator[bytes]:
        """Yield the model's body part by part, and raise ModelStreamError if it breaks."""
        if self._first_part:
            self.bytes_relayed += len(self._first_part)
            yield self._first_part
        while True:
            try:
                part = await self._read_part()
            except TimeoutError:
                raise self._timed_out() from None
            except UpstreamDisconnected as exc:
                raise self._broken(exc) from None
            if not part:
                return
            self.bytes_relayed += len(part)
            yield part

    async def close(self) -> None:
        """Release the connection and the instance's in-flight slot, once however often called."""
        if self._closed:
            return
        self._closed = True
        self.instance.in_flight -= 1
        # An unfinished body leaves the connection in an unknown state, so
        # release() closes it rather than returning it to the pool.
        self._response.release()

    async def read_first_part(self) -> None:
        """Read the first part, so failures before any byte is relayed are ordinary errors."""
        self._first_part = await self._read_part()

    async def _read_part(self) -> bytes:
        # One HTTP chunk is one part; a larger one is relayed in slices.
        if not self._pending:
            async with asyncio.timeout_at(self.deadline):
                self._pending = await self._response.read_part()
        part, self._pending = self._pending[:MAX_PART_BYTES], self._pending[MAX_PART_BYTES:]
        return part

    def _timed_out(self) -> ModelStreamError:
        logger.warning(
            "Response stream of endpoint %s, variant %s, instance %s timed out after %g s",
            self.route.name,
            self.variant.name,
            self.instance.instance_id,
            self.variant.timeout,
        )
        return ModelStreamError(
            f"The response stream from container {CONTAINER_NAME} did not finish within "
            f"{self.variant.timeout:g} seconds, the model server timeout of production variant "
            f"{self.variant.name}. Raise SAGEMAKER_MODEL_SERVER_TIMEOUT in the model's "
            "container Environment for longer streams.",
            ErrorCode="ModelInvocationTimeExceeded",
        )

    def _broken(self, exc: Exception) -> ModelStreamError:
        logger.warning(
            "Response stream of endpoint %s, variant %s, instance %s broke after %d bytes: %s",
            self.route.name,
            self.variant.name,
            self.instance.instance_id,
            self.bytes_relayed,
            exc,
        )
        return ModelStreamError(
            f"The response stream from container {CONTAINER_NAME} ended before it was complete, "
            f"after {self.bytes_relayed} bytes: the model raised an error or its instance "
            f"stopped. See the endpoint's logs (sageport logs {self.route.name}) for the reason.",
            ErrorCode="StreamBroken",
        )


async def open_stream(
    route: EndpointRoute,
    body: bytes,
    headers: dict[str, str],
    target_variant: str | None,
    caller_gone: Callable[[], Awaitable[object]] | None = None,
) -> ResponseStream:
    """Send one invocation and wait for the first part of a 200 response.

    Raises the errors InvokeEndpoint raises when the instance cannot be
    reached, returns a non-2xx status, or fails before the first part.
    The caller must ``close()`` the stream it gets. ``caller_gone`` returns
    when the caller disconnects, and a request still queued then raises
    CallerGone and never reaches the model.
    """
    variant = route.pick_variant(target_variant)
    if variant.multi_model is not None:
        raise ValidationError(
            f"Endpoint {route.name} is a multi-model endpoint, and "
            "InvokeEndpointWithResponseStream cannot name a TargetModel. Use InvokeEndpoint."
        )
    headers.setdefault("Content-Type", DEFAULT_CONTENT_TYPE)
    instance, response = await _post(route, variant, body, headers, caller_gone)

    stream = ResponseStream(route, variant, instance, response)
    try:
        if not 200 <= response.status < 300:
            async with asyncio.timeout_at(stream.deadline):
                raise model_error(route, response.status, await response.read_all())
        await stream.read_first_part()
    except TimeoutError:
        await stream.close()
        raise timed_out_error(route, variant) from None
    except UpstreamDisconnected as exc:
        await stream.close()
        raise connection_lost_error(route, instance, exc) from None
    except BaseException:
        await stream.close()
        raise
    return stream


async def _post(
    route: EndpointRoute,
    variant: VariantRoute,
    body: bytes,
    headers: dict[str, str],
    caller_gone: Callable[[], Awaitable[object]] | None,
) -> tuple[InstanceRoute, UpstreamStream]:
    """Send the request to the least busy instance, which keeps an in-flight slot on success."""
    forwarded = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]
    tried: frozenset[str] = frozenset()
    deadline = ready_deadline(route)
    while True:
        instance = await available_instance(route, variant, tried, deadline)
        instance.in_flight += 1
        try:
            response = await asyncio.wait_for(
                instance.upstream.open_stream(b"/invocations", forwarded, body, caller_gone),
                variant.timeout,
            )
        except UpstreamConnectError as exc:
            # Nothing reached the model, so another instance may take the request.
            instance.in_flight -= 1
            mark_unreachable(route, instance, exc)
            tried |= {instance.instance_id}
            continue
        except TimeoutError:
            instance.in_flight -= 1
            raise timed_out_error(route, variant) from None
        except UpstreamDisconnected as exc:
            instance.in_flight -= 1
            raise connection_lost_error(route, instance, exc) from None
        except BaseException:
            instance.in_flight -= 1
            raise
        return instance, response


def _stream_deadline(response: UpstreamStream, timeout: float) -> float:
    """Return the event-loop time at which the model call has run for ``timeout`` seconds.

    The built-in runtime reports how long the model took to produce the first
    part, so the deadline counts from the start of the model call, as the
    runtime's own timeout does. Other servers' deadlines count from their
    response headers.

    NOTE: the runtime's supervisor also kills a worker past the timeout, up
    to a quarter second later. If the kill reaches the connection first, the
    caller sees StreamBroken instead of ModelInvocationTimeExceeded.
    """
    loop = asyncio.get_running_loop()
    latency = response.headers.get(_LATENCY_HEADER, b"")
    elapsed = int(latency) / 1e6 if latency.isdigit() else 0.0
    return loop.time() + timeout - elapsed

"""Send an InvokeEndpointWithResponseStream response as an AWS event stream over ASGI.

Each part of the model's body goes out as a ``PayloadPart`` event in its own
ASGI message, so uvicorn writes it as one HTTP chunk at once. A stream that
breaks after the first part ends with a ModelStreamError exception message,
or with InternalStreamFailure when Sageport itself fails. botocore raises
either as ``EventStreamError`` while the caller iterates. The body then ends
normally, because the event stream has no terminal event.
"""

from __future__ import annotations

import asyncio
import logging

from sageport.dataplane.stream import ResponseStream
from sageport.errors import InternalStreamFailure, ModelStreamError, SageportError
from sageport.protocol.asgi import Headers, Receive, Send
from sageport.protocol.eventstream import encode_exception, encode_payload_part

logger = logging.getLogger("sageport.protocol")

EVENT_STREAM_CONTENT_TYPE = b"application/vnd.amazon.eventstream"


def stream_headers(stream: ResponseStream) -> Headers:
    """Return the response headers, with the model's Content-Type in its own header."""
    headers: Headers = [
        (b"content-type", EVENT_STREAM_CONTENT_TYPE),
        (b"x-amzn-sagemaker-content-type", stream.content_type.encode("latin-1")),
        (b"x-amzn-invoked-production-variant", stream.variant.name.encode()),
    ]
    if stream.custom_attributes is not None:
        headers.append(
            (b"x-amzn-sagemaker-custom-attributes", stream.custom_attributes.encode("latin-1"))
        )
    return headers


async def send_event_stream(
    send: Send, receive: Receive, headers: Headers, stream: ResponseStream, request_id: str
) -> None:
    """Relay ``stream`` as event-stream messages, then close it.

    A client that disconnects stops the relay at the next part, and closing
    the stream closes the connection to the instance. The built-in runtime
    then closes the handler's generator.
    """
    disconnected = asyncio.ensure_future(_wait_for_disconnect(receive))
    last_message = b""
    try:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async for part in stream.parts():
            if disconnected.done():
                logger.info("Request %s: the client left during the response stream", request_id)
                break
            message = encode_payload_part(part)
            await send({"type": "http.response.body", "body": message, "more_body": True})
    except ModelStreamError as exc:
        last_message = _exception_message(exc)
    except Exception:
        logger.exception("Relaying the response stream of request %s failed", request_id)
        error = InternalStreamFailure(
            f"Sageport failed while relaying the response stream; its log has the details "
            f"under request id {request_id}."
        )
        last_message = _exception_message(error)
    finally:
        disconnected.cancel()
        await stream.close()
    await send({"type": "http.response.body", "body": last_message, "more_body": False})


def _exception_message(error: SageportError) -> bytes:
    return encode_exception(error.code, {**error.fields, "Message": error.message})


async def _wait_for_disconnect(receive: Receive) -> None:
    # The request body has been read, so the next message is the disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass

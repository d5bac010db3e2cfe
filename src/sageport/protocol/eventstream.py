"""Encode AWS event-stream messages, the framing of InvokeEndpointWithResponseStream.

A message is a 12-byte prelude, headers, a payload and a trailing CRC, with
every integer big-endian::

    total_length u32 | headers_length u32 | prelude_crc u32
    headers (headers_length bytes) | payload | message_crc u32

``prelude_crc`` is the CRC-32 of the first 8 bytes and ``message_crc`` the
CRC-32 of everything before it. A header is ``name_length u8 | name | type u8 |
value``. Only type 7 (a string: ``length u16 | UTF-8 bytes``) is written here,
because every header SageMaker's runtime sends is a string. botocore's
``botocore.eventstream`` decodes these messages on the client side.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Mapping

# Sizes in the prelude and trailer, in bytes.
PRELUDE_LENGTH = 12
CRC_LENGTH = 4

# botocore rejects messages past these limits (botocore/eventstream.py).
MAX_HEADERS_LENGTH = 128 * 1024
MAX_PAYLOAD_LENGTH = 24 * 2**20

HEADER_TYPE_STRING = 7
MAX_HEADER_NAME_LENGTH = 255
MAX_HEADER_VALUE_LENGTH = 2**16 - 1

# The event type and content type of a chunk of the model's response.
PAYLOAD_PART = "PayloadPart"
PAYLOAD_CONTENT_TYPE = "application/octet-stream"


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """Frame one message with string-valued ``headers`` and ``payload``.

    Raises ValueError for a header name or value too long for its length
    field, or for headers or a payload past botocore's limits.
    """
    encoded_headers = b"".join(_encode_header(name, value) for name, value in headers.items())
    if len(encoded_headers) > MAX_HEADERS_LENGTH:
        raise ValueError(
            f"event-stream headers of {len(encoded_headers)} bytes exceed the maximum of "
            f"{MAX_HEADERS_LENGTH} bytes"
        )
    if len(payload) > MAX_PAYLOAD_LENGTH:
        raise ValueError(
            f"an event-stream payload of {len(payload)} bytes exceeds the maximum of "
            f"{MAX_PAYLOAD_LENGTH} bytes; split it into several messages"
        )

    total_length = PRELUDE_LENGTH + len(encoded_headers) + len(payload) + CRC_LENGTH
    prelude = struct.pack(">II", total_length, len(encoded_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def encode_payload_part(data: bytes) -> bytes:
    """Frame ``data`` as a PayloadPart event, which boto3 yields as ``{"PayloadPart": ...}``."""
    headers = {
        ":message-type": "event",
        ":event-type": PAYLOAD_PART,
        ":content-type": PAYLOAD_CONTENT_TYPE,
    }
    return encode_message(headers, data)


def encode_exception(exception_type: str, members: Mapping[str, object]) -> bytes:
    """Frame a modeled error, such as ModelStreamError, with its members as a JSON payload.

    botocore raises ``EventStreamError`` with the code ``exception_type`` and
    the message from the payload's ``Message``.
    """
    headers = {
        ":message-type": "exception",
        ":exception-type": exception_type,
        ":content-type": "application/json",
    }
    return encode_message(headers, json.dumps(members, default=str).encode("utf-8"))


def _encode_header(name: str, value: str) -> bytes:
    encoded_name = name.encode("utf-8")
    encoded_value = value.encode("utf-8")
    if not 0 < len(encoded_name) <= MAX_HEADER_NAME_LENGTH:
        raise ValueError(
            f"event-stream header name {name!r} must be 1 to {MAX_HEADER_NAME_LENGTH} bytes long"
        )
    if len(encoded_value) > MAX_HEADER_VALUE_LENGTH:
        raise ValueError(
            f"event-stream header {name!r} has a value of {len(encoded_value)} bytes, more "
            f"than the maximum of {MAX_HEADER_VALUE_LENGTH}"
        )
    return (
        struct.pack(">B", len(encoded_name))
        + encoded_name
        + struct.pack(">BH", HEADER_TYPE_STRING, len(encoded_value))
        + encoded_value
    )

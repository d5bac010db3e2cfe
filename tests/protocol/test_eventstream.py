"""The event-stream encoder, checked by botocore's own decoder and by a boto3 parse."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import EventStreamError

from sageport.protocol.eventstream import (
    MAX_PAYLOAD_LENGTH,
    encode_exception,
    encode_message,
    encode_payload_part,
)
from tests.protocol.botocore_stub import stubbed_client

EVENT_STREAM_HEADERS = [(b"content-type", b"application/vnd.amazon.eventstream")]


def decode(data: bytes) -> list[tuple[dict[str, object], bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(message.headers, message.payload) for message in buffer]


def test_payload_part_decodes() -> None:
    assert decode(encode_payload_part(b"hello")) == [
        (
            {
                ":message-type": "event",
                ":event-type": "PayloadPart",
                ":content-type": "application/octet-stream",
            },
            b"hello",
        )
    ]


def test_empty_payload_decodes() -> None:
    assert decode(encode_message({"a": "b"}, b"")) == [({"a": "b"}, b"")]


def test_message_without_headers_decodes() -> None:
    assert decode(encode_message({}, b"\x00\xff")) == [({}, b"\x00\xff")]


def test_prelude_and_crcs_are_exact() -> None:
    message = encode_message({"k": "v"}, b"xyz")

    total_length, headers_length, prelude_crc = struct.unpack(">III", message[:12])
    # 1 + len("k") + 1 (type) + 2 (value length) + len("v")
    assert headers_length == 6
    assert total_length == len(message) == 12 + 6 + 3 + 4
    assert prelude_crc == zlib.crc32(message[:8])
    assert message[12:18] == b"\x01k\x07\x00\x01v"
    assert struct.unpack(">I", message[-4:])[0] == zlib.crc32(message[:-4])


def test_utf8_header_values_decode() -> None:
    assert decode(encode_message({"name": "café ✓"}, b"")) == [({"name": "café ✓"}, b"")]


def test_exception_decodes_with_json_members() -> None:
    encoded = encode_exception(
        "ModelStreamError", {"Message": "broke", "ErrorCode": "StreamBroken"}
    )

    [(headers, payload)] = decode(encoded)
    assert headers == {
        ":message-type": "exception",
        ":exception-type": "ModelStreamError",
        ":content-type": "application/json",
    }
    assert json.loads(payload) == {"Message": "broke", "ErrorCode": "StreamBroken"}


def test_split_delivery_decodes_the_same() -> None:
    data = b"".join(encode_payload_part(bytes([n]) * n) for n in range(1, 6))
    buffer = EventStreamBuffer()
    messages: list[bytes] = []
    for index in range(len(data)):
        buffer.add_data(data[index : index + 1])
        messages.extend(message.payload for message in buffer)

    assert messages == [bytes([n]) * n for n in range(1, 6)]


def test_corrupted_message_fails_checksum() -> None:
    message = bytearray(encode_payload_part(b"hello"))
    message[-5] ^= 0xFF

    with pytest.raises(ChecksumMismatch):
        decode(bytes(message))


def test_boto3_parses_parts_then_error() -> None:
    body = (
        encode_payload_part(b"first")
        + encode_payload_part(b"second")
        + encode_exception("ModelStreamError", {"Message": "it broke", "ErrorCode": "X"})
    )
    stub = stubbed_client("sagemaker-runtime", 200, EVENT_STREAM_HEADERS, body)
    response = stub.client.invoke_endpoint_with_response_stream(EndpointName="ep", Body=b"{}")
    received = []

    with pytest.raises(EventStreamError) as excinfo:
        for event in response["Body"]:
            received.append(event)

    assert received == [
        {"PayloadPart": {"Bytes": b"first"}},
        {"PayloadPart": {"Bytes": b"second"}},
    ]
    assert excinfo.value.response["Error"] == {"Code": "ModelStreamError", "Message": "it broke"}


def test_boto3_reads_internal_stream_failure() -> None:
    body = encode_exception("InternalStreamFailure", {"Message": "relay failed"})
    stub = stubbed_client("sagemaker-runtime", 200, EVENT_STREAM_HEADERS, body)
    response = stub.client.invoke_endpoint_with_response_stream(EndpointName="ep", Body=b"{}")

    with pytest.raises(EventStreamError) as excinfo:
        list(response["Body"])

    assert excinfo.value.response["Error"] == {
        "Code": "InternalStreamFailure",
        "Message": "relay failed",
    }


def test_header_name_too_long_is_rejected() -> None:
    with pytest.raises(ValueError, match="must be 1 to 255 bytes long"):
        encode_message({"n" * 256: "v"}, b"")


def test_header_value_too_long_is_rejected() -> None:
    with pytest.raises(ValueError, match="more than the maximum of 65535"):
        encode_message({"name": "v" * 65536}, b"")


def test_payload_over_limit_is_rejected() -> None:
    with pytest.raises(ValueError, match="exceeds the maximum of 25165824 bytes"):
        encode_payload_part(b"x" * (MAX_PAYLOAD_LENGTH + 1))

"""boto3 clients whose HTTP layer is replaced by a canned response.

A ``before-send`` handler receives the fully signed request and returns the
bytes our renderers produced, so tests see exactly what boto3 makes of them
without opening a socket.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.config import Config

# Loopback and a port nothing listens on. The handler returns a response
# before any connection would be made.
STUB_ENDPOINT_URL = "http://127.0.0.1:9"


class _RawBody(io.BytesIO):
    """The urllib3-like body object botocore reads a response from."""

    def stream(self, amt: int = 1024, decode_content: bool = True) -> Iterator[bytes]:
        chunk = self.read(amt)
        while chunk:
            yield chunk
            chunk = self.read(amt)


@dataclass
class StubbedClient:
    """A boto3 client plus the requests it sent."""

    client: Any
    requests: list[Any] = field(default_factory=list)


def stubbed_client(
    service: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes
) -> StubbedClient:
    """Return a client for ``service`` that returns one canned response to every call."""
    session = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        region_name="us-east-1",
    )
    client = session.client(
        service,
        endpoint_url=STUB_ENDPOINT_URL,
        config=Config(retries={"total_max_attempts": 1}),
    )
    stub = StubbedClient(client)

    def reply(request: Any, **kwargs: Any) -> AWSResponse:
        stub.requests.append(request)
        decoded = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
        return AWSResponse(request.url, status, decoded, _RawBody(body))

    client.meta.events.register("before-send", reply)
    return stub


def response_metadata(
    request_id: str, status: int, headers: list[tuple[bytes, bytes]]
) -> dict[str, Any]:
    """Return the ``ResponseMetadata`` boto3 builds from a rendered response."""
    return {
        "RequestId": request_id,
        "HTTPStatusCode": status,
        "HTTPHeaders": {name.decode(): value.decode() for name, value in headers},
        "RetryAttempts": 0,
        # Set on every call because the client allows exactly one attempt.
        "MaxAttemptsReached": True,
    }


def sent_headers(request: Any) -> dict[str, str]:
    """Return a sent request's headers decoded as ISO-8859-1, as an ASGI server passes them on."""
    return {
        name: value.decode("latin-1") if isinstance(value, bytes) else value
        for name, value in request.headers.items()
    }

"""Requests signed by botocore itself, turned into the ASGI scope a server receives.

A ``before-send`` hook takes the fully signed request and returns an empty
200 response, so no socket is opened.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.awsrequest import AWSResponse
from botocore.config import Config

# Loopback and a port nothing listens on. The hook returns before any connection.
STUB_ENDPOINT_URL = "http://127.0.0.1:9"


class _EmptyBody(io.BytesIO):
    def stream(self, amt: int = 1024, decode_content: bool = True) -> Iterator[bytes]:
        yield from ()


@dataclass
class SignedRequest:
    """What the server receives: an ASGI HTTP scope and the body."""

    scope: dict[str, Any]
    body: bytes

    def with_header(self, name: bytes, value: bytes | None) -> SignedRequest:
        """Return a copy with header ``name`` replaced, or removed when ``value`` is None."""
        headers = [(key, val) for key, val in self.scope["headers"] if key != name]
        if value is not None:
            headers.append((name, value))
        return SignedRequest({**self.scope, "headers": headers}, self.body)


def signed_request(
    service: str,
    call: Callable[[Any], object],
    access_key_id: str,
    secret: str,
    session_token: str | None = None,
    region: str = "us-east-1",
) -> SignedRequest:
    """Make ``call(client)`` with a real boto3 client and capture the request it signs."""
    session = boto3.session.Session(
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret,
        aws_session_token=session_token,
        region_name=region,
    )
    client = session.client(
        service,
        endpoint_url=STUB_ENDPOINT_URL,
        config=Config(retries={"total_max_attempts": 1}),
    )
    captured: list[Any] = []

    def reply(request: Any, **kwargs: Any) -> AWSResponse:
        captured.append(request)
        return AWSResponse(request.url, 200, {"x-amzn-requestid": "stub"}, _EmptyBody(b"{}"))

    client.meta.events.register("before-send", reply)
    call(client)
    return _as_scope(captured[0])


def _as_scope(request: Any) -> SignedRequest:
    url = urlsplit(request.url)
    headers = [(b"host", url.netloc.encode("ascii"))]
    for name, value in request.headers.items():
        encoded = value if isinstance(value, bytes) else value.encode("utf-8")
        headers.append((name.lower().encode("latin-1"), encoded))
    body = request.body or b""
    if not isinstance(body, bytes):
        body = body.read() if hasattr(body, "read") else str(body).encode("utf-8")
    scope = {
        "type": "http",
        "method": request.method,
        "raw_path": url.path.encode("latin-1"),
        "query_string": url.query.encode("latin-1"),
        "headers": headers,
    }
    return SignedRequest(scope, body)

"""SigV4 verification against requests that botocore signed, for both planes."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from sageport.auth.keys import AccessKey, KeyRing
from sageport.auth.sigv4 import SIGNATURE_MISMATCH, SigV4Verifier, canonical_request
from sageport.errors import (
    AuthenticationError,
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
    UnrecognizedClient,
)
from tests.auth.signing import SignedRequest, signed_request

KEY_ID = "AKSPTESTKEY0000001"
SECRET = "test-secret-access-key-0123456789"
TOKEN_KEY_ID = "AKSPTESTKEY0000002"
TOKEN = "session-token-abc"


@pytest.fixture
def verifier(tmp_path: Path) -> SigV4Verifier:
    keys = KeyRing(
        tmp_path / "credentials.json",
        (
            AccessKey(KEY_ID, SECRET),
            AccessKey(TOKEN_KEY_ID, SECRET, session_token=TOKEN),
        ),
    )
    return SigV4Verifier(keys)


def describe(client: Any) -> object:
    return client.describe_endpoint(EndpointName="my-ep")


def invoke(name: str = "my-ep") -> Any:
    def call(client: Any) -> object:
        return client.invoke_endpoint(
            EndpointName=name,
            Body=b'{"x": 1}',
            ContentType="application/json",
            Accept="application/json",
            CustomAttributes="c=1",
            TargetVariant="v1",
        )

    return call


def control_request(**kwargs: Any) -> SignedRequest:
    return signed_request("sagemaker", describe, KEY_ID, SECRET, **kwargs)


def runtime_request(name: str = "my-ep", **kwargs: Any) -> SignedRequest:
    return signed_request("sagemaker-runtime", invoke(name), KEY_ID, SECRET, **kwargs)


def rejection(verifier: SigV4Verifier, request: SignedRequest) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as excinfo:
        verifier(request.scope, request.body)
    return excinfo.value


@pytest.mark.parametrize(
    "request_factory",
    [control_request, runtime_request, lambda: runtime_request("a/b c")],
    ids=["control-plane", "runtime", "runtime-odd-name"],
)
def test_botocore_signature_verifies(verifier: SigV4Verifier, request_factory: Any) -> None:
    request = request_factory()

    key = verifier(request.scope, request.body)

    assert key.access_key_id == KEY_ID


def test_canonical_request_matches_botocore() -> None:
    request = runtime_request("a/b c")
    headers = {name.decode(): value.decode() for name, value in request.scope["headers"]}
    signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    replay = AWSRequest(
        method="POST",
        url="http://127.0.0.1:9/endpoints/a%2Fb%20c/invocations",
        data=request.body,
        headers={k: v for k, v in headers.items() if k in signed and k != "host"},
    )
    replay.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(Credentials(KEY_ID, SECRET), "sagemaker", "us-east-1")

    expected = signer.canonical_request(replay)

    assert canonical_request(request.scope, request.body).decode() == expected


def test_wrong_secret_is_rejected(verifier: SigV4Verifier) -> None:
    request = signed_request("sagemaker", describe, KEY_ID, "not-the-secret-0123456789")

    error = rejection(verifier, request)

    assert type(error) is InvalidSignature
    assert error.message == SIGNATURE_MISMATCH


def test_unknown_key_looks_like_wrong_secret(verifier: SigV4Verifier) -> None:
    request = signed_request("sagemaker", describe, "AKSPUNKNOWNKEY000001", SECRET)

    error = rejection(verifier, request)

    assert type(error) is InvalidSignature
    assert error.message == SIGNATURE_MISMATCH


def test_tampered_body_is_rejected(verifier: SigV4Verifier) -> None:
    request = runtime_request()

    error = rejection(verifier, SignedRequest(request.scope, b'{"x": 2}'))

    assert type(error) is InvalidSignature


def test_tampered_path_is_rejected(verifier: SigV4Verifier) -> None:
    request = runtime_request("my-ep")
    scope = {**request.scope, "raw_path": b"/endpoints/other-ep/invocations"}

    error = rejection(verifier, SignedRequest(scope, request.body))

    assert type(error) is InvalidSignature


def test_tampered_signed_header_is_rejected(verifier: SigV4Verifier) -> None:
    request = control_request().with_header(b"x-amz-target", b"SageMaker.DeleteEndpoint")

    error = rejection(verifier, request)

    assert type(error) is InvalidSignature


def test_unsigned_header_may_change(verifier: SigV4Verifier) -> None:
    request = control_request().with_header(b"user-agent", b"something-else")

    assert verifier(request.scope, request.body).access_key_id == KEY_ID


@pytest.mark.parametrize("server_clock_offset", [-301, 301])
def test_clock_skew_over_five_minutes_is_rejected(tmp_path: Path, server_clock_offset: int) -> None:
    keys = KeyRing(tmp_path / "credentials.json", (AccessKey(KEY_ID, SECRET),))
    verifier = SigV4Verifier(keys, clock=lambda: time.time() + server_clock_offset)
    request = control_request()

    error = rejection(verifier, request)

    assert type(error) is InvalidSignature
    expected = "Signature not yet current" if server_clock_offset < 0 else "Signature expired"
    assert error.message.startswith(expected)


def test_clock_skew_within_five_minutes_is_accepted(tmp_path: Path) -> None:
    keys = KeyRing(tmp_path / "credentials.json", (AccessKey(KEY_ID, SECRET),))
    verifier = SigV4Verifier(keys, clock=lambda: time.time() + 240)
    request = control_request()

    assert verifier(request.scope, request.body).access_key_id == KEY_ID


def test_missing_authorization_is_rejected(verifier: SigV4Verifier) -> None:
    request = control_request().with_header(b"authorization", None)

    error = rejection(verifier, request)

    assert type(error) is MissingAuthenticationToken
    assert error.code == "MissingAuthenticationTokenException"
    assert error.status == 403


def test_missing_amz_date_is_rejected(verifier: SigV4Verifier) -> None:
    request = control_request().with_header(b"x-amz-date", None)

    error = rejection(verifier, request)

    assert type(error) is IncompleteSignature
    assert "X-Amz-Date" in error.message


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        (b"Basic dXNlcjpwYXNz", "Unsupported Authorization scheme 'Basic'"),
        (b"AWS4-HMAC-SHA256 Credential=A/B", "requires 'SignedHeaders' parameter"),
        (
            b"AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1, SignedHeaders=host, "
            b"Signature=00",
            "<AccessKeyId>/<YYYYMMDD>/<region>/sagemaker/aws4_request",
        ),
        (b"AWS4-HMAC-SHA256 \xff", "not ASCII"),
    ],
)
def test_malformed_authorization_is_incomplete(
    verifier: SigV4Verifier, authorization: bytes, expected: str
) -> None:
    request = control_request().with_header(b"authorization", authorization)

    error = rejection(verifier, request)

    assert type(error) is IncompleteSignature
    assert expected in error.message


def test_wrong_service_in_scope_is_rejected(verifier: SigV4Verifier) -> None:
    request = control_request()
    authorization = dict(request.scope["headers"])[b"authorization"]
    request = request.with_header(b"authorization", authorization.replace(b"/sagemaker/", b"/s3/"))

    error = rejection(verifier, request)

    assert type(error) is InvalidSignature
    assert error.message == "Credential should be scoped to correct service: 'sagemaker'."


def test_any_region_is_accepted(verifier: SigV4Verifier) -> None:
    request = control_request(region="eu-west-3")

    assert verifier(request.scope, request.body).access_key_id == KEY_ID


def test_host_must_be_signed(verifier: SigV4Verifier) -> None:
    request = control_request()
    authorization = dict(request.scope["headers"])[b"authorization"]
    request = request.with_header(
        b"authorization",
        authorization.replace(b"SignedHeaders=content-type;host;", b"SignedHeaders=content-type;"),
    )

    error = rejection(verifier, request)

    assert error.message == "The Host header must be one of the signed headers."


def test_session_token_accepted_for_its_key(verifier: SigV4Verifier) -> None:
    request = signed_request("sagemaker", describe, TOKEN_KEY_ID, SECRET, session_token=TOKEN)

    assert verifier(request.scope, request.body).access_key_id == TOKEN_KEY_ID


@pytest.mark.parametrize(
    ("key_id", "token"),
    [(TOKEN_KEY_ID, "wrong-token"), (TOKEN_KEY_ID, None), (KEY_ID, TOKEN)],
    ids=["wrong-token", "token-missing", "token-for-key-without-one"],
)
def test_session_token_mismatch_is_rejected(
    verifier: SigV4Verifier, key_id: str, token: str | None
) -> None:
    request = signed_request("sagemaker", describe, key_id, SECRET, session_token=token)

    error = rejection(verifier, request)

    assert type(error) is UnrecognizedClient
    assert error.code == "UnrecognizedClientException"
    assert error.message == "The security token included in the request is invalid."


def test_unsigned_payload_is_accepted(verifier: SigV4Verifier) -> None:
    request = signed_payload_request(b"UNSIGNED-PAYLOAD", b'{"EndpointName": "a"}')

    assert verifier(request.scope, b"anything at all").access_key_id == KEY_ID


def test_declared_payload_hash_must_match_body(verifier: SigV4Verifier) -> None:
    body = b'{"EndpointName": "a"}'
    request = signed_payload_request(hashlib.sha256(body).hexdigest().encode(), body)

    assert verifier(request.scope, body).access_key_id == KEY_ID
    error = rejection(verifier, SignedRequest(request.scope, body + b" "))
    assert error.message == (
        "The X-Amz-Content-SHA256 header does not match the SHA-256 of the request body."
    )


def signed_payload_request(content_sha256: bytes, body: bytes) -> SignedRequest:
    """Sign a request that carries X-Amz-Content-SHA256, as S3-style signers send it."""
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:9/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "SageMaker.DescribeEndpoint",
            "X-Amz-Content-SHA256": content_sha256.decode(),
        },
    )
    SigV4Auth(Credentials(KEY_ID, SECRET), "sagemaker", "us-east-1").add_auth(request)
    headers = [(b"host", b"127.0.0.1:9")] + [
        (name.lower().encode(), value.encode() if isinstance(value, str) else value)
        for name, value in request.headers.items()
    ]
    scope = {
        "type": "http",
        "method": "POST",
        "raw_path": b"/",
        "query_string": b"",
        "headers": headers,
    }
    return SignedRequest(scope, body)


def test_deleted_key_stops_verifying(tmp_path: Path) -> None:
    from sageport.auth.keys import load_keys, save_keys

    path = tmp_path / "credentials.json"
    save_keys(path, [AccessKey(KEY_ID, SECRET)])
    now = [0.0]
    verifier = SigV4Verifier(KeyRing(path, clock=lambda: now[0]))
    request = control_request()
    assert verifier(request.scope, request.body).access_key_id == KEY_ID

    save_keys(path, [key for key in load_keys(path) if key.access_key_id != KEY_ID])
    now[0] += 1.0

    assert type(rejection(verifier, request)) is InvalidSignature

"""AWS Signature Version 4 verification for both planes (signing name ``sagemaker``).

The canonical request is rebuilt from the request exactly as it arrived: the
raw path (still percent-encoded), the headers named in ``SignedHeaders`` in the
order given, and the SHA-256 of the body. botocore signs the same way, so any
difference in what reached the server (a tampered path, header or body) fails
the signature. The algorithm is AWS's "Create a signed AWS API request"
(docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html).

HMAC-SHA256 and SHA-256 come from the standard library (OpenSSL underneath).
botocore's signer is built for clients: it signs an ``AWSRequest`` it will
send and stamps the current time, so it cannot check a received request. Its
``normalize_url_path`` is reused, so the path rule is botocore's own.

Unknown access keys and wrong signatures get the same code and message, and
an unknown key still costs one HMAC over the string to sign, so a caller
cannot tell which access key ids exist.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote_from_bytes

from botocore.utils import normalize_url_path

from sageport.auth.keys import AccessKey, KeyRing
from sageport.errors import (
    IncompleteSignature,
    InvalidSignature,
    MissingAuthenticationToken,
    UnrecognizedClient,
)
from sageport.protocol.asgi import Scope

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "sagemaker"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = b"UNSIGNED-PAYLOAD"

# AWS's JSON services reject requests signed more than 5 minutes before or
# after their own clock ("Signature expired: ... (... - 5 min.)").
MAX_CLOCK_SKEW = 300

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your access key ID, secret access key and signing method."
)
INVALID_TOKEN = "The security token included in the request is invalid."  # noqa: S105

# Bounds the cache of derived signing keys: the region in a credential scope
# is chosen by the caller, so an unbounded cache would be a memory leak.
SIGNING_KEY_CACHE_SIZE = 512

_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_REGION = re.compile(r"[a-z0-9-]{1,64}")
_HEX_DIGEST = re.compile(rb"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class _Authorization:
    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: str
    signature: str

    @property
    def credential_scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}"


class SigV4Verifier:
    """Checks a request's SigV4 signature against the keys of a ``KeyRing``."""

    def __init__(
        self,
        keys: KeyRing,
        clock: Callable[[], float] = time.time,
        max_clock_skew: float = MAX_CLOCK_SKEW,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._max_clock_skew = max_clock_skew
        self._signing_keys: OrderedDict[tuple[str, str, str, str], bytes] = OrderedDict()
        # Unknown access key ids are checked against this secret, which no
        # client can know, so that they take as long as known ones.
        self._decoy = AccessKey("", secrets.token_urlsafe(30), status="Inactive")

    def __call__(self, scope: Scope, body: bytes) -> AccessKey:
        """Verify the request; return the key that signed it or raise an AuthenticationError."""
        headers = _header_values(scope)
        authorization, amz_date, signed, token = self._check_headers(headers)

        key = self._keys.lookup(authorization.access_key_id)
        known = key is not None and key.active
        checked_key = key if key is not None and known else self._decoy

        canonical = _canonical_request(scope, headers, signed, authorization, body)
        string_to_sign = "\n".join(
            (
                ALGORITHM,
                amz_date,
                authorization.credential_scope,
                hashlib.sha256(canonical).hexdigest(),
            )
        ).encode("ascii")
        signing_key = self._signing_key(checked_key, authorization)
        expected = hmac.new(signing_key, string_to_sign, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, authorization.signature) or not known:
            raise InvalidSignature(SIGNATURE_MISMATCH)

        _check_session_token(checked_key, token)
        return checked_key

    def check_headers(self, scope: Scope) -> None:
        """Run the checks that need neither the body nor the key; raise an AuthenticationError.

        They are the first checks ``__call__`` makes, so a request they reject
        gets the same error before its body as after it. The key lookup is not
        among them: rejecting an unknown key id before the body while waiting
        for the body of a known one would tell a caller which key ids exist.
        """
        self._check_headers(_header_values(scope))

    def _check_headers(
        self, headers: dict[bytes, list[bytes]]
    ) -> tuple[_Authorization, str, list[str], bytes | None]:
        authorization = _parse_authorization(_first(headers, b"authorization"))
        amz_date = _amz_date(_first(headers, b"x-amz-date"))
        self._check_scope(authorization, amz_date)

        signed = authorization.signed_headers.split(";")
        if "host" not in signed:
            raise InvalidSignature("The Host header must be one of the signed headers.")
        token = _first(headers, b"x-amz-security-token")
        if token is not None and "x-amz-security-token" not in signed:
            raise InvalidSignature("The X-Amz-Security-Token header must be signed.")
        return authorization, amz_date, signed, token

    def _check_scope(self, authorization: _Authorization, amz_date: str) -> None:
        if authorization.terminator != TERMINATOR:
            raise InvalidSignature(
                f"Credential should be scoped with a valid terminator: '{TERMINATOR}'."
            )
        if authorization.service != SERVICE:
            raise InvalidSignature(f"Credential should be scoped to correct service: '{SERVICE}'.")
        if not _REGION.fullmatch(authorization.region):
            raise InvalidSignature("Credential should be scoped to a valid region.")
        if authorization.date != amz_date[:8]:
            raise InvalidSignature(
                f"Date in Credential scope does not match YYYYMMDD from X-Amz-Date: "
                f"'{authorization.date}' != '{amz_date[:8]}', from '{amz_date}'."
            )

        signed_at = _timestamp(amz_date)
        now = self._clock()
        minutes = int(self._max_clock_skew // 60)
        if signed_at < now - self._max_clock_skew:
            raise InvalidSignature(
                f"Signature expired: {amz_date} is now earlier than "
                f"{_format(now - self._max_clock_skew)} ({_format(now)} - {minutes} min.)"
            )
        if signed_at > now + self._max_clock_skew:
            raise InvalidSignature(
                f"Signature not yet current: {amz_date} is still later than "
                f"{_format(now + self._max_clock_skew)} ({_format(now)} + {minutes} min.)"
            )

    def _signing_key(self, key: AccessKey, authorization: _Authorization) -> bytes:
        # The secret is part of the cache key as well as the id, so a key
        # whose secret changed in the file never uses a stale signing key.
        cache_key = (
            key.access_key_id,
            key.secret_access_key,
            authorization.date,
            authorization.region,
        )
        signing_key = self._signing_keys.get(cache_key)
        if signing_key is not None:
            self._signing_keys.move_to_end(cache_key)
            return signing_key

        signing_key = derive_signing_key(
            key.secret_access_key, authorization.date, authorization.region, SERVICE
        )
        self._signing_keys[cache_key] = signing_key
        if len(self._signing_keys) > SIGNING_KEY_CACHE_SIZE:
            self._signing_keys.popitem(last=False)
        return signing_key


def derive_signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """Derive the SigV4 signing key: four chained HMAC-SHA256 steps."""
    key = ("AWS4" + secret).encode("utf-8")
    for part in (date, region, service, TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def canonical_request(scope: Scope, body: bytes) -> bytes:
    """Build the canonical request for a signed request, as the verifier does."""
    headers = _header_values(scope)
    authorization = _parse_authorization(_first(headers, b"authorization"))
    signed = authorization.signed_headers.split(";")
    return _canonical_request(scope, headers, signed, authorization, body)


def _canonical_request(
    scope: Scope,
    headers: dict[bytes, list[bytes]],
    signed: list[str],
    authorization: _Authorization,
    body: bytes,
) -> bytes:
    lines = [
        scope["method"].encode("ascii"),
        _canonical_uri(scope["raw_path"]),
        _canonical_query(scope.get("query_string", b"")),
    ]
    for name in signed:
        values = headers.get(name.encode("latin-1"), [])
        trimmed = b",".join(b" ".join(value.split()) for value in values)
        lines.append(name.encode("latin-1") + b":" + trimmed)
    lines.append(b"")
    lines.append(authorization.signed_headers.encode("latin-1"))
    lines.append(_payload_hash(_first(headers, b"x-amz-content-sha256"), body))
    return b"\n".join(lines)


def _header_values(scope: Scope) -> dict[bytes, list[bytes]]:
    # A header sent more than once is signed as its trimmed values joined by
    # commas; for the headers SigV4 itself reads, the first value counts.
    values: dict[bytes, list[bytes]] = {}
    for name, value in scope["headers"]:
        values.setdefault(name, []).append(bytes(value))
    return values


def _first(headers: dict[bytes, list[bytes]], name: bytes) -> bytes | None:
    values = headers.get(name)
    return values[0] if values else None


def _parse_authorization(value: bytes | None) -> _Authorization:
    if value is None:
        raise MissingAuthenticationToken("Request is missing Authentication Token")
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        raise IncompleteSignature("The Authorization header is not ASCII.") from None

    scheme, _, rest = text.strip().partition(" ")
    if scheme != ALGORITHM:
        raise IncompleteSignature(
            f"Unsupported Authorization scheme {scheme[:32]!r}: Sageport accepts only "
            f"{ALGORITHM} (AWS Signature Version 4)."
        )

    parameters: dict[str, str] = {}
    for part in rest.split(","):
        name, _, parameter = part.strip().partition("=")
        parameters[name] = parameter
    missing = [
        name for name in ("Credential", "SignedHeaders", "Signature") if not parameters.get(name)
    ]
    if missing:
        raise IncompleteSignature(
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
        )

    credential = parameters["Credential"].split("/")
    if len(credential) != 5 or not all(credential):
        raise IncompleteSignature(
            "The Credential in the Authorization header must be "
            "<AccessKeyId>/<YYYYMMDD>/<region>/sagemaker/aws4_request."
        )
    access_key_id, date, region, service, terminator = credential
    return _Authorization(
        access_key_id,
        date,
        region,
        service,
        terminator,
        signed_headers=parameters["SignedHeaders"],
        signature=parameters["Signature"],
    )


def _amz_date(value: bytes | None) -> str:
    if value is None:
        raise IncompleteSignature(
            "Authorization header requires existence of the 'X-Amz-Date' header."
        )
    text = value.decode("latin-1")
    if not _AMZ_DATE.fullmatch(text):
        raise IncompleteSignature(
            f"X-Amz-Date {text[:32]!r} is not a date of the form YYYYMMDDTHHMMSSZ."
        )
    try:
        _timestamp(text)
    except ValueError:
        raise IncompleteSignature(f"X-Amz-Date {text!r} is not a valid date.") from None
    return text


def _timestamp(amz_date: str) -> float:
    # Slicing is several times faster than strptime, and this runs per request.
    signed_at = datetime(
        int(amz_date[0:4]),
        int(amz_date[4:6]),
        int(amz_date[6:8]),
        int(amz_date[9:11]),
        int(amz_date[11:13]),
        int(amz_date[13:15]),
        tzinfo=UTC,
    )
    return signed_at.timestamp()


def _canonical_uri(raw_path: bytes) -> bytes:
    # Dot segments and empty segments go, then the still-encoded path is
    # encoded once more: "/endpoints/a%2Fb/invocations" is signed as
    # "/endpoints/a%252Fb/invocations", as botocore signs it.
    normalized = normalize_url_path(raw_path.decode("latin-1"))
    return quote_from_bytes(normalized.encode("latin-1"), safe="/~").encode("ascii")


def _canonical_query(query: bytes) -> bytes:
    if not query:
        return b""
    pairs = sorted(pair.partition(b"=")[::2] for pair in query.split(b"&"))
    return b"&".join(key + b"=" + value for key, value in pairs)


def _payload_hash(declared: bytes | None, body: bytes) -> bytes:
    if declared is None:
        return hashlib.sha256(body).hexdigest().encode("ascii")
    if declared == UNSIGNED_PAYLOAD:
        return declared
    if not _HEX_DIGEST.fullmatch(declared):
        raise InvalidSignature(
            "X-Amz-Content-SHA256 must be UNSIGNED-PAYLOAD or the hex SHA-256 of the body; "
            "Sageport does not accept chunked (streaming) signing."
        )
    computed = hashlib.sha256(body).hexdigest().encode("ascii")
    if not hmac.compare_digest(computed, declared.lower()):
        raise InvalidSignature(
            "The X-Amz-Content-SHA256 header does not match the SHA-256 of the request body."
        )
    return declared


def _check_session_token(key: AccessKey, token: bytes | None) -> None:
    expected = key.session_token
    if expected is None and token is None:
        return
    if expected is None or token is None:
        raise UnrecognizedClient(INVALID_TOKEN)
    if not hmac.compare_digest(expected.encode("utf-8"), token):
        raise UnrecognizedClient(INVALID_TOKEN)


def _format(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y%m%dT%H%M%SZ")

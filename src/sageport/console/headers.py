"""The key-value headers a console user may add to a test request.

Only headers that a SageMaker invocation carries pass: Content-Type, Accept and
SageMaker's own ``X-Amzn-SageMaker-*`` headers. Everything that could change
how the connection or the target treats the request (hop-by-hop headers, Host,
Cookie, Authorization, Content-Length) is rejected, and so is any CR, LF or
other control character, which could split a header into two.
"""

from __future__ import annotations

import re

from sageport.errors import SageportError

SAGEMAKER_PREFIX = "x-amzn-sagemaker-"
ALLOWED_NAMES = frozenset({"content-type", "accept"})
# RFC 9110 section 7.6.1 lists the connection-specific (hop-by-hop) fields;
# the rest could carry credentials or redirect the request.
REJECTED_NAMES = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "cookie",
        "authorization",
        "content-length",
    }
)
# RFC 9110 section 5.6.2: a field name is a token.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
MAX_HEADERS = 32
MAX_VALUE_LENGTH = 1024


class HeaderRejected(SageportError):
    """A header row the console will not send."""

    code = "HeaderRejected"
    status = 400


def check_headers(rows: list[tuple[str, str]]) -> dict[str, str]:
    """Return the rows as a header dict; raise HeaderRejected on the first bad row."""
    if len(rows) > MAX_HEADERS:
        raise HeaderRejected(f"Too many headers ({len(rows)}); send at most {MAX_HEADERS}.")

    headers: dict[str, str] = {}
    for name, value in rows:
        _check_name(name)
        _check_value(name, value)
        headers[_canonical(name)] = value
    return headers


def _check_name(name: str) -> None:
    lower = name.lower()
    if not _TOKEN.match(name):
        raise HeaderRejected(
            f"Header name {name!r} is invalid: use letters, digits and hyphens only, "
            "with no spaces, colons or line breaks."
        )
    if lower in REJECTED_NAMES:
        raise HeaderRejected(
            f"Header {name} is not allowed in a test request: the server sets connection "
            "headers itself and never forwards Host, Cookie or Authorization."
        )
    if lower not in ALLOWED_NAMES and not lower.startswith(SAGEMAKER_PREFIX):
        raise HeaderRejected(
            f"Header {name} is not allowed: a test request carries only Content-Type, Accept "
            "and SageMaker's X-Amzn-SageMaker-* headers."
        )


def _check_value(name: str, value: str) -> None:
    if _CONTROL.search(value):
        raise HeaderRejected(
            f"The value of header {name} contains a line break or control character; remove it."
        )
    if len(value) > MAX_VALUE_LENGTH:
        raise HeaderRejected(
            f"The value of header {name} is {len(value)} characters long; "
            f"the maximum is {MAX_VALUE_LENGTH}."
        )


def _canonical(name: str) -> str:
    return _SPELLINGS.get(name.lower(), name)


# The spellings SageMaker's API documentation uses, so a header typed in lower
# case reaches the model, and the copied snippets, as boto3 would send it.
_SPELLINGS = {
    "content-type": "Content-Type",
    "accept": "Accept",
    "x-amzn-sagemaker-custom-attributes": "X-Amzn-SageMaker-Custom-Attributes",
    "x-amzn-sagemaker-target-model": "X-Amzn-SageMaker-Target-Model",
    "x-amzn-sagemaker-target-variant": "X-Amzn-SageMaker-Target-Variant",
    "x-amzn-sagemaker-inference-id": "X-Amzn-SageMaker-Inference-Id",
    "x-amzn-sagemaker-session-id": "X-Amzn-SageMaker-Session-Id",
    "x-amzn-sagemaker-enable-explanations": "X-Amzn-SageMaker-Enable-Explanations",
}

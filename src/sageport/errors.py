"""The exception tree every layer raises, and the AWS error each one becomes.

Each error carries the AWS error code, the HTTP status and the message that
clients see. The protocol layer renders them (``protocol/errors.py``); nothing
else builds error bodies. Control-plane and runtime errors are separate
families because botocore reads them differently. On the control plane (AWS
JSON 1.1) it only reads ``__type`` in the body. On the runtime (REST-JSON) it
reads the ``x-amzn-ErrorType`` header first and merges modeled members such as
``OriginalStatusCode`` from top-level body keys.
"""

from __future__ import annotations

from typing import Any, ClassVar


class SageportError(Exception):
    """An error that reaches the client as an AWS-shaped response."""

    code: ClassVar[str] = "InternalFailure"
    status: ClassVar[int] = 500

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        # Modeled members beyond Message (e.g. OriginalStatusCode), sent as
        # top-level body keys with their exact AWS casing.
        self.fields = fields


# Control plane (service "sagemaker", AWS JSON 1.1).


class ControlPlaneError(SageportError):
    """An error of the control plane."""


class ValidationException(ControlPlaneError):
    """Bad input, or a resource that is missing or already exists.

    SageMaker reports "not found" on the control plane with this code, not
    ResourceNotFound; boto3's ``endpoint_deleted`` waiter relies on it.
    """

    code = "ValidationException"
    status = 400


class ResourceLimitExceeded(ControlPlaneError):
    code = "ResourceLimitExceeded"
    status = 400


class ResourceInUse(ControlPlaneError):
    code = "ResourceInUse"
    status = 400


class SerializationException(ControlPlaneError):
    """A request body that is not a JSON object of the right member types."""

    code = "SerializationException"
    status = 400


class UnknownOperationException(ControlPlaneError):
    code = "UnknownOperationException"
    status = 400


class ControlPlaneInternalError(ControlPlaneError):
    code = "InternalFailure"
    status = 500


# Runtime (service "sagemaker-runtime", REST-JSON).


class RuntimeAPIError(SageportError):
    """An error of the runtime API."""


class ValidationError(RuntimeAPIError):
    """Bad input to an invocation, or an endpoint that cannot be invoked."""

    code = "ValidationError"
    status = 400


class PayloadTooLarge(ValidationError):
    """A request body over the real-time limit.

    SageMaker rejects these with HTTP 413; the code stays ValidationError so
    boto3 raises a modeled exception the caller can catch.
    """

    status = 413


class ModelError(RuntimeAPIError):
    """The model returned a non-2xx status, timed out or went away.

    Status 424 is deliberate: botocore retries 5xx and 429, and an invocation
    is not idempotent, so a failed model call must not be sent again.
    """

    code = "ModelError"
    status = 424


class ModelNotReadyException(RuntimeAPIError):
    code = "ModelNotReadyException"
    status = 429


class InternalFailure(RuntimeAPIError):
    code = "InternalFailure"
    status = 500


class ServiceUnavailable(RuntimeAPIError):
    """The endpoint exists but cannot serve yet; botocore retries this."""

    code = "ServiceUnavailable"
    status = 503


class ModelStreamError(RuntimeAPIError):
    """The model's response stream broke or timed out after its first byte was sent.

    It travels as an event-stream exception message inside a 200 response, so
    ``status`` is never sent. The ``ErrorCode`` field is ``StreamBroken`` or
    ``ModelInvocationTimeExceeded``.
    """

    code = "ModelStreamError"
    status = 424


class InternalStreamFailure(RuntimeAPIError):
    """Sageport failed while relaying a response stream; sent in-stream like ModelStreamError."""

    code = "InternalStreamFailure"
    status = 500


# Authentication (both planes). botocore models none of these codes, so boto3
# raises a plain ClientError carrying the code. Each renderer puts the code
# where its plane's parser reads it. None of them uses a 5xx or 429 status,
# which botocore would retry.


class AuthenticationError(SageportError):
    """A request that SigV4 verification rejected."""


class MissingAuthenticationToken(AuthenticationError):
    code = "MissingAuthenticationTokenException"
    status = 403


class IncompleteSignature(AuthenticationError):
    """An Authorization header or X-Amz-Date that cannot be parsed."""

    code = "IncompleteSignatureException"
    status = 400


class InvalidSignature(AuthenticationError):
    """A signature that does not verify, or a credential scope or time outside the rules."""

    code = "InvalidSignatureException"
    status = 400


class UnrecognizedClient(AuthenticationError):
    """A session token that does not belong to the access key that signed the request."""

    code = "UnrecognizedClientException"
    status = 400


class AccessDenied(SageportError):
    """A request that the server does not serve, whatever its signature.

    Used for a Host that is not a loopback name while authentication is off,
    and for an API request sent by a page of another origin.
    """

    code = "AccessDeniedException"
    status = 403

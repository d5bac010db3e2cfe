"""InvokeEndpointAsync on the wire: ``POST /endpoints/{EndpointName}/async-invocations``.

Every input member except the optional inline ``Body`` travels in a header,
and the content type and accept headers are spelled differently from
InvokeEndpoint's (``X-Amzn-SageMaker-Content-Type`` and
``X-Amzn-SageMaker-Accept``). The response is HTTP 202 with
``{"InferenceId": ...}`` as its JSON body and the output and failure
locations in headers.
"""

from __future__ import annotations

import json

from sageport.dataplane.asynchronous import AsyncInvocations, AsyncRequest
from sageport.protocol.asgi import Headers, Scope
from sageport.protocol.restjson import render_invoke_headers, validate_invoke_headers

OPERATION = "InvokeEndpointAsync"
ACTION = b"async-invocations"

# Input members passed on to the model, with the header name it receives.
_FORWARDED = {
    "ContentType": "Content-Type",
    "Accept": "Accept",
    "CustomAttributes": "X-Amzn-SageMaker-Custom-Attributes",
}


def accept_async_invocation(
    invocations: AsyncInvocations, name: str, scope: Scope, body: bytes
) -> tuple[int, Headers, bytes]:
    """Validate and queue one InvokeEndpointAsync request; return the 202 response."""
    raw_headers = {
        key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
    }
    members = validate_invoke_headers(OPERATION, name, raw_headers)
    request = AsyncRequest(
        endpoint_name=name,
        headers={
            header: members[member] for member, header in _FORWARDED.items() if member in members
        },
        input_location=members.get("InputLocation"),
        body=body or None,
        inference_id=members.get("InferenceId"),
        output_path_extension=members.get("S3OutputPathExtension"),
        filename=members.get("Filename"),
        request_ttl=members.get("RequestTTLSeconds"),
        invocation_timeout=members.get("InvocationTimeoutSeconds"),
    )

    accepted = invocations.submit(request)

    headers: Headers = [(b"content-type", b"application/json")]
    headers += render_invoke_headers(
        OPERATION,
        {
            "OutputLocation": accepted.output_location,
            "FailureLocation": accepted.failure_location,
        },
    )
    return 202, headers, json.dumps({"InferenceId": accepted.inference_id}).encode()

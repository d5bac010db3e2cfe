"""The control plane's AWS JSON 1.1 requests and responses.

Every request is ``POST /`` with ``X-Amz-Target: SageMaker.<Operation>`` and a
JSON object whose keys are the input shape's member names. Responses are JSON
objects of the output shape's members.
"""

from __future__ import annotations

import json
from typing import Any

from sageport.errors import SerializationException, UnknownOperationException, ValidationException
from sageport.protocol.errors import CONTROL_PLANE_CONTENT_TYPE, Rendered
from sageport.protocol.models import control_plane_model, control_plane_operation_names
from sageport.protocol.serialize import serialize
from sageport.protocol.validation import MAX_DEPTH, parse_timestamps, validate

# SageMaker's widest integer members are 64-bit (19 digits). Python refuses to
# convert more than 4300 digits and says so in terms only a Python programmer
# can act on, so longer literals get a message of their own first.
MAX_INTEGER_DIGITS = 100

_TOO_DEEP = (
    f"The request body nests JSON objects and arrays more than {MAX_DEPTH} levels deep; "
    "SageMaker inputs need far fewer."
)


def parse_control_request(target_header: str | None, body: bytes) -> tuple[Any, dict[str, Any]]:
    """Resolve the operation named by ``X-Amz-Target`` and decode and validate its input.

    Returns the botocore ``OperationModel`` and the input with timestamp members
    converted to aware datetimes. Raises UnknownOperationException,
    SerializationException or ValidationException.
    """
    operation = resolve_operation(target_header)
    params = decode_json_object(body)

    input_shape = operation.input_shape
    if input_shape is None:
        return operation, params

    validate(input_shape, params, error=ValidationException)
    return operation, parse_timestamps(input_shape, params)


def resolve_operation(target_header: str | None) -> Any:
    """Return the ``OperationModel`` named by ``X-Amz-Target``, e.g. ``SageMaker.ListModels``."""
    model = control_plane_model()
    prefix = model.metadata["targetPrefix"] + "."

    if not target_header or not target_header.startswith(prefix):
        raise UnknownOperationException(
            f"Missing or invalid X-Amz-Target header {target_header!r}: "
            f"expected '{prefix}<Operation>', for example '{prefix}DescribeEndpoint'."
        )

    name = target_header.removeprefix(prefix)
    if name not in control_plane_operation_names():
        raise UnknownOperationException(f"Operation {name!r} is not a SageMaker operation.")
    return model.operation_model(name)


def decode_json_object(body: bytes) -> dict[str, Any]:
    """Decode a request body that must be a JSON object. An empty body decodes to ``{}``."""
    if not body.strip():
        return {}

    try:
        decoded = json.loads(body, parse_constant=_reject_constant, parse_int=_parse_integer)
    except RecursionError:
        # The decoder recurses once per level and gives up near the interpreter's
        # recursion limit, about 1000 levels, far past MAX_DEPTH.
        raise SerializationException(_TOO_DEEP) from None
    except ValueError as exc:
        # JSONDecodeError and UnicodeDecodeError are both ValueErrors.
        raise SerializationException(f"The request body is not valid JSON: {exc}") from None

    if not isinstance(decoded, dict):
        raise SerializationException("The request body must be a JSON object.")
    _check_depth(decoded)
    return decoded


def _check_depth(document: dict[str, Any]) -> None:
    # Checked without recursion, before anything walks the document
    # recursively: a value a few hundred levels deep decodes fine but would
    # exhaust the stack when an error message renders it.
    pending: list[tuple[object, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise SerializationException(_TOO_DEEP)
        if isinstance(value, dict):
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)


def render_control_response(operation: Any, result: dict[str, Any], request_id: str) -> Rendered:
    """Render a successful response: the result serialised by the operation's output shape."""
    output_shape = operation.output_shape
    payload = {} if output_shape is None else serialize(output_shape, result)

    body = json.dumps(payload).encode("utf-8")
    headers = [
        (b"content-type", CONTROL_PLANE_CONTENT_TYPE),
        (b"x-amzn-requestid", request_id.encode("ascii")),
        (b"content-length", str(len(body)).encode("ascii")),
    ]
    return 200, headers, body


def _parse_integer(literal: str) -> int:
    digits = len(literal.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        raise SerializationException(
            f"The request body contains an integer of {digits} digits; the control plane "
            f"accepts at most {MAX_INTEGER_DIGITS}, and SageMaker's integer members fit in 19."
        )
    return int(literal)


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity, which are not JSON.
    raise ValueError(f"{name} is not a valid JSON number")

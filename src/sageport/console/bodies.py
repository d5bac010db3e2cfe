"""Read console API request bodies: bounded in size, and in JSON nesting like the control plane's.

Python's ``json`` decoder recurses once per nested array or object, so a body
of a few thousand ``[`` raises RecursionError. A document that decodes just
under the interpreter's limit can still exhaust the stack later, when
``str()`` or ``json.dumps`` walks it. The control plane's decoder catches the
first and rejects documents nested more than 64 levels before anything walks
them. The console reuses that decoder rather than keeping a second copy.
"""

from __future__ import annotations

from typing import Any

from sageport.console.responses import BadRequest
from sageport.errors import SerializationException
from sageport.protocol.asgi import BodyTooLarge, Receive, Scope, read_body
from sageport.protocol.awsjson import decode_json_object


async def read_json_object(
    scope: Scope, receive: Receive, limit: int, body_name: str, limit_reason: str = ""
) -> dict[str, Any]:
    """Read a body that must be a JSON object of at most ``limit`` bytes.

    ``body_name`` names the body in error messages, e.g. "The test request", and
    ``limit_reason`` is a sentence that explains ``limit`` when a body exceeds it.
    Raises BadRequest for a body that is too large, empty, not JSON, not an
    object, or nested too deep.
    """
    try:
        raw = await read_body(scope, receive, limit)
    except BodyTooLarge as exc:
        raise BadRequest(
            f"{body_name} has {exc.size} bytes, more than the {limit} the console accepts. "
            f"{limit_reason}".strip()
        ) from None

    if not raw.strip():
        raise BadRequest(f"{body_name} is empty: send a JSON object; see docs/console.md.")
    try:
        return decode_json_object(raw)
    except SerializationException as exc:
        raise BadRequest(f"{body_name} is invalid. {exc.message} See docs/console.md.") from None

"""Load the model once and run one invocation through the user's handlers.

An invocation is ``input_fn → predict_fn → output_fn``, or ``transform_fn``
alone, with the defaults from ``codecs.py`` where the user module defines
none. The result is a body and the Content-Type to send with it. The body is
an iterator instead when ``output_fn`` or ``transform_fn`` returns one, and
the worker streams its items.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sageport.runtime import codecs
from sageport.runtime.context import Context
from sageport.runtime.errors import InvocationError, StartupError, describe_exception
from sageport.runtime.loader import UserHandlers

Payload = bytes | bytearray
# Items of a streamed response: str (sent as UTF-8), bytes or bytearray.
Stream = Iterator[Any]


class InferencePipeline:
    """A loaded model and the handlers that serve it."""

    def __init__(
        self, handlers: UserHandlers, model: Any, model_dir: Path, default_accept: str
    ) -> None:
        self.handlers = handlers
        self.model = model
        self.model_dir = str(model_dir)
        self.default_accept = default_accept
        self.uses_context = handlers.uses_context

    @classmethod
    def load(
        cls, handlers: UserHandlers, model_dir: Path, default_accept: str
    ) -> InferencePipeline:
        """Call ``model_fn`` once; raise StartupError with a one-line reason when it fails."""
        model_fn = handlers.model_fn
        try:
            if model_fn.takes_context:
                model = model_fn.function(str(model_dir), Context(str(model_dir)))
            else:
                model = model_fn.function(str(model_dir))
        except (Exception, SystemExit) as exc:
            raise StartupError(f"model_fn raised {describe_exception(exc)}") from exc

        needs_predict = handlers.transform_fn is None and handlers.predict_fn is None
        if needs_predict and not callable(getattr(model, "predict", None)):
            raise StartupError(
                f"model_fn returned {type(model).__name__}, which has no predict method; "
                "define predict_fn(data, model) in the inference module"
            )
        return cls(handlers, model, model_dir, default_accept)

    def new_context(self, request_headers: dict[str, str]) -> Context | None:
        """Return a Context for one request, or None when no handler takes one."""
        return Context(self.model_dir, request_headers) if self.uses_context else None

    def invoke(
        self,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        context: Context | None,
    ) -> tuple[Payload | Stream, str]:
        """Run one invocation and return the response body (or an iterator) and its Content-Type."""
        handlers = self.handlers
        accept = codecs.resolve_accept(accept, self.default_accept)
        input_data = codecs.prepare_input(body, content_type)

        transform_fn = handlers.transform_fn
        if transform_fn is not None:
            arguments: tuple[Any, ...] = (self.model, input_data, content_type, accept)
            result = _call(transform_fn.function, transform_fn.takes_context, arguments, context)
            return _finish(result, accept, context, "transform_fn")

        input_fn = handlers.input_fn
        if input_fn is None:
            data = codecs.default_input_fn(input_data, content_type)
        else:
            arguments = (input_data, content_type)
            data = _call(input_fn.function, input_fn.takes_context, arguments, context)

        predict_fn = handlers.predict_fn
        if predict_fn is None:
            prediction = self.model.predict(data)
        else:
            arguments = (data, self.model)
            prediction = _call(predict_fn.function, predict_fn.takes_context, arguments, context)

        output_fn = handlers.output_fn
        if output_fn is None:
            payload, chosen = codecs.default_output_fn(prediction, accept, self.default_accept)
            if context is not None and context.response_content_type is not None:
                chosen = context.response_content_type
            return payload, chosen
        arguments = (prediction, accept)
        result = _call(output_fn.function, output_fn.takes_context, arguments, context)
        return _finish(result, accept, context, "output_fn")


def _call(
    function: Any, takes_context: bool, arguments: tuple[Any, ...], context: Context | None
) -> Any:
    if takes_context:
        return function(*arguments, context)
    return function(*arguments)


def _finish(
    result: Any, accept: str, context: Context | None, name: str
) -> tuple[Payload | Stream, str]:
    """Turn what output_fn or transform_fn returned into a body and a Content-Type."""
    declared: Any = None
    if isinstance(result, tuple):
        if len(result) != 2:
            raise InvocationError(
                f"{name} returned a tuple of {len(result)} items; return a payload or "
                "(payload, content_type)"
            )
        result, declared = result
        if not isinstance(declared, str) or "\r" in declared or "\n" in declared:
            raise InvocationError(
                f"{name} returned the content type {declared!r}; it must be a str on one line"
            )

    if isinstance(result, bytes | bytearray):
        payload: Payload | Stream = result
    elif isinstance(result, str):
        payload = result.encode()
    elif isinstance(result, Iterator):
        payload = result
    else:
        raise InvocationError(
            f"{name} returned {type(result).__name__}; return str, bytes, bytearray, an "
            "iterator of them, or (payload, content_type)"
        )

    if declared is None and context is not None:
        declared = context.response_content_type
    if declared is None:
        declared = accept.split(",", 1)[0].strip()
    return payload, declared

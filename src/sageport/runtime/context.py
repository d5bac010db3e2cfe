"""The ``context`` object that handlers may take as their last argument."""

from __future__ import annotations

from typing import Any


class Context:
    """Request and model details for handlers, shaped like the model server's context.

    Handlers that declare a trailing ``context`` parameter get one. It contains:

    - ``system_properties``: ``{"model_dir": str, "gpu_id": None, "batch_size": 1}``.
    - ``request_headers``: the request headers with lower-cased names (empty in
      ``model_fn``).
    - ``custom_attributes`` and ``inference_id``: the values of
      ``X-Amzn-SageMaker-Custom-Attributes`` and ``X-Amzn-SageMaker-Inference-Id``,
      or None.
    - ``response_custom_attributes``: set it to send
      ``X-Amzn-SageMaker-Custom-Attributes`` back to the caller.

    The ``idx`` argument of the methods is the index in a batch. The runtime
    serves one request at a time, so only 0 is valid.
    """

    __slots__ = (
        "request_headers",
        "response_content_type",
        "response_custom_attributes",
        "response_headers",
        "system_properties",
    )

    def __init__(self, model_dir: str, request_headers: dict[str, str] | None = None) -> None:
        self.system_properties: dict[str, Any] = {
            "model_dir": model_dir,
            "gpu_id": None,
            "batch_size": 1,
        }
        self.request_headers: dict[str, str] = request_headers or {}
        self.response_custom_attributes: str | None = None
        self.response_content_type: str | None = None
        self.response_headers: dict[str, str] = {}

    @property
    def custom_attributes(self) -> str | None:
        """The request's ``X-Amzn-SageMaker-Custom-Attributes`` value, or None."""
        return self.request_headers.get("x-amzn-sagemaker-custom-attributes")

    @property
    def inference_id(self) -> str | None:
        """The request's ``X-Amzn-SageMaker-Inference-Id`` value, or None."""
        return self.request_headers.get("x-amzn-sagemaker-inference-id")

    def get_request_header(self, idx: int, key: str) -> str | None:
        """Return the request header ``key`` (any case), or None."""
        _check_index(idx)
        return self.request_headers.get(key.lower())

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        """Return all request headers, with lower-cased names."""
        _check_index(idx)
        return self.request_headers

    def set_response_content_type(self, idx: int, value: str) -> None:
        """Set the response Content-Type; a ``(payload, type)`` return value still wins."""
        _check_index(idx)
        self.response_content_type = _header_value(value)

    def get_response_content_type(self, idx: int) -> str | None:
        """Return the Content-Type set with ``set_response_content_type``, or None."""
        _check_index(idx)
        return self.response_content_type

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        """Add a response header.

        Content-Type and X-Amzn-SageMaker-Custom-Attributes set this way are the
        same as the dedicated setters. Content-Length, Connection and
        Transfer-Encoding belong to the runtime and raise ValueError.
        """
        _check_index(idx)
        name = key.strip().lower()
        if not name or name in _RESERVED_HEADERS or any(c in key for c in ":\r\n"):
            raise ValueError(f"response header {key!r} cannot be set by a handler")
        if name == "content-type":
            self.response_content_type = _header_value(value)
        elif name == "x-amzn-sagemaker-custom-attributes":
            self.response_custom_attributes = _header_value(value)
        else:
            self.response_headers[key] = _header_value(value)


_RESERVED_HEADERS = frozenset({"content-length", "connection", "transfer-encoding"})


def _check_index(idx: int) -> None:
    if idx != 0:
        raise IndexError(
            f"request index {idx} out of range: the runtime serves one request at a time"
        )


def _header_value(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"invalid header value {value!r}: it contains a line break")
    return value

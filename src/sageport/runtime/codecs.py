"""Default request decoders and response encoders, as SageMaker's toolkit has them.

The default ``input_fn`` decodes ``application/json`` (to a numpy array when
the JSON is array-like), ``text/csv`` (to a 2-D float array) and
``application/x-npy`` (never unpickling). The default ``output_fn`` encodes to
the first of those three types that the request's Accept header lists.
Media types compare case-insensitively, and parameters other than
``charset`` are ignored.
"""

from __future__ import annotations

import csv
import decimal
import functools
import io
import json
from typing import Any

import numpy as np

from sageport.runtime.errors import InvalidBodyError, InvocationError, UnsupportedMediaTypeError

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
SUPPORTED_TYPES = (JSON, CSV, NPY)
# Bodies of these types reach input_fn as str, as the toolkit passes them.
TEXT_TYPES = frozenset({JSON, CSV})
ANY = "*/*"

_SUPPORTED_LIST = ", ".join(SUPPORTED_TYPES)


@functools.lru_cache(maxsize=256)
def parse_media_type(value: str | None) -> tuple[str, str | None]:
    """Split a Content-Type into its lower-cased ``type/subtype`` and its charset, if any."""
    if not value:
        return "", None
    essence, _, parameters = value.partition(";")
    charset = None
    for parameter in parameters.split(";"):
        key, _, raw = parameter.partition("=")
        if key.strip().lower() == "charset":
            charset = raw.strip().strip('"') or None
    return essence.strip().lower(), charset


def resolve_accept(accept: str | None, default_accept: str) -> str:
    """Return the Accept that handlers receive: the default when the request has none or ``*/*``."""
    if not accept or accept.strip() == ANY:
        return default_accept
    return accept


@functools.lru_cache(maxsize=256)
def select_accept(accept: str, default_accept: str) -> str:
    """Pick the first media type in ``accept`` that the default encoders produce.

    Quality parameters are ignored, as the toolkit ignores them. A ``*/*``
    entry stands for ``default_accept``.
    """
    for part in accept.split(","):
        essence = part.partition(";")[0].strip().lower()
        if essence == ANY:
            essence = parse_media_type(default_accept)[0]
        if essence in SUPPORTED_TYPES:
            return essence
    raise UnsupportedMediaTypeError(
        f"unsupported Accept {accept!r}: the default output_fn encodes {_SUPPORTED_LIST}; "
        "define output_fn in inference.py to return other types"
    )


def prepare_input(body: bytes, content_type: str | None) -> str | bytes:
    """Decode JSON and CSV bodies to str with their charset (UTF-8 by default)."""
    essence, charset = parse_media_type(content_type)
    if essence not in TEXT_TYPES:
        return body
    encoding = charset or "utf-8"
    try:
        return body.decode(encoding)
    except LookupError:
        raise UnsupportedMediaTypeError(
            f"unsupported charset {encoding!r} in Content-Type {content_type!r}"
        ) from None
    except UnicodeDecodeError as exc:
        raise InvalidBodyError(f"the {essence} body is not valid {encoding}: {exc}") from None


def default_input_fn(input_data: str | bytes, content_type: str | None) -> Any:
    """Decode a request body by its content type, as the toolkit's default input_fn does."""
    essence = parse_media_type(content_type)[0]
    if essence == JSON:
        return decode_json(input_data)
    if essence == CSV:
        return decode_csv(input_data)
    if essence == NPY:
        return decode_npy(input_data)
    shown = repr(content_type) if content_type else "(none)"
    raise UnsupportedMediaTypeError(
        f"unsupported Content-Type {shown}: the default input_fn decodes {_SUPPORTED_LIST}; "
        "define input_fn in inference.py to accept other types"
    )


def decode_json(text: str | bytes) -> Any:
    """Parse JSON; return a numpy array when the value is array-like, else the plain object.

    Lists and numbers become arrays. Objects, strings, null, ragged lists and
    lists that numpy can only hold with dtype=object stay plain Python values.
    """
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidBodyError(f"invalid JSON body: {exc}") from None
    if not isinstance(value, list | int | float):
        return value
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError):
        return value
    return value if array.dtype == object else array


def decode_csv(text: str | bytes) -> np.ndarray[Any, Any]:
    """Parse comma-separated numbers into a 2-D float64 array (one row stays 2-D)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if not text.strip():
        raise InvalidBodyError("empty CSV body: expected rows of comma-separated numbers")
    try:
        return np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise InvalidBodyError(
            f"invalid CSV body: {exc}; expected rows of comma-separated numbers"
        ) from None


def decode_npy(data: str | bytes) -> np.ndarray[Any, Any]:
    """Load one NPY array; object arrays are rejected because loading them would unpickle."""
    if isinstance(data, str):
        data = data.encode("latin-1")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidBodyError(f"invalid NPY body: {exc}") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise InvalidBodyError("invalid NPY body: got an NPZ archive, expected a single .npy array")
    return array


def default_output_fn(prediction: Any, accept: str, default_accept: str) -> tuple[bytes, str]:
    """Encode ``prediction`` for the first supported type in ``accept``; return body and type."""
    content_type = select_accept(accept, default_accept)
    if content_type == JSON:
        return encode_json(prediction), JSON
    if content_type == CSV:
        return encode_csv(prediction), CSV
    return encode_npy(prediction), NPY


def encode_json(prediction: Any) -> bytes:
    """Encode numpy arrays, numpy scalars and plain Python values as JSON."""
    if isinstance(prediction, np.ndarray):
        prediction = prediction.tolist()
    try:
        return json.dumps(prediction, default=_json_default).encode()
    except (TypeError, ValueError) as exc:
        raise InvocationError(
            f"the default output_fn cannot encode the prediction as JSON: {exc}; "
            "return lists, numbers, strings or numpy arrays from predict_fn, or define output_fn"
        ) from None


def encode_csv(prediction: Any) -> bytes:
    """Encode a scalar, a 1-D sequence (one value per line) or a 2-D one (one row per line).

    Cells must be numbers, strings or booleans. Any other value raises
    InvocationError naming its type, instead of being written as its ``str()``.
    """
    rows = _csv_rows(prediction)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()


def encode_npy(prediction: Any) -> bytes:
    """Encode ``prediction`` as one NPY array; object arrays are rejected (they would pickle)."""
    buffer = io.BytesIO()
    try:
        np.save(buffer, np.asarray(prediction), allow_pickle=False)
    except ValueError as exc:
        raise InvocationError(
            f"the default output_fn cannot encode the prediction as NPY: {exc}"
        ) from None
    return buffer.getvalue()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _csv_rows(prediction: Any) -> list[list[Any]]:
    # Like the toolkit, which writes np.savetxt(np.asarray(prediction)), take
    # anything NumPy can convert (a pandas DataFrame, a tensor) as an array.
    if isinstance(prediction, np.ndarray | np.generic) or hasattr(prediction, "__array__"):
        array = np.asarray(prediction)
        if array.ndim > 2:
            raise InvocationError(
                f"the default output_fn cannot encode a {array.ndim}-D array as CSV; "
                "return at most 2-D predictions, or define output_fn"
            )
        prediction = array.tolist()
    if not isinstance(prediction, list | tuple):
        return [[_csv_cell(prediction, "")]]
    return [_csv_row(row, index) for index, row in enumerate(prediction)]


def _csv_row(row: Any, index: int) -> list[Any]:
    if isinstance(row, np.ndarray):
        row = row.tolist()
    if not isinstance(row, list | tuple):
        return [_csv_cell(row, f" (item {index})")]
    return [_csv_cell(cell, f" (row {index}, column {column})") for column, cell in enumerate(row)]


def _csv_cell(value: Any, position: str) -> Any:
    """Check that ``value`` can be a CSV cell, and raise InvocationError naming its type if not.

    SageMaker's toolkit (v1.10) raises only for a prediction that NumPy cannot
    make 1-D or 2-D, such as a dict or None, and writes other objects with
    ``%s``. Rejecting every other cell type keeps Python reprs out of the CSV.
    """
    if isinstance(value, np.generic) and not isinstance(value, np.complexfloating):
        value = value.item()
    if isinstance(value, str | int | float | decimal.Decimal):
        return value
    kind = type(value)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    raise InvocationError(
        f"the default output_fn cannot encode a {name} as CSV{position}. CSV cells must be "
        "numbers, strings or booleans, in lists or 1-D or 2-D numpy arrays. Return those "
        "from predict_fn, or define output_fn."
    )

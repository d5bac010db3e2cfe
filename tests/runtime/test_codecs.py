"""Default decoders, encoders and Accept selection."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from sageport.runtime import codecs
from sageport.runtime.errors import InvalidBodyError, InvocationError, UnsupportedMediaTypeError


def npy_bytes(array: np.ndarray[Any, Any], allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("application/json", ("application/json", None)),
        ("Application/JSON; charset=UTF-8", ("application/json", "UTF-8")),
        ('text/csv; header=absent; charset="latin-1"', ("text/csv", "latin-1")),
        (None, ("", None)),
        ("", ("", None)),
    ],
)
def test_parse_media_type(value: str | None, expected: tuple[str, str | None]) -> None:
    assert codecs.parse_media_type(value) == expected


def test_prepare_input_decodes_json_and_csv_to_str() -> None:
    assert codecs.prepare_input(b"[1]", "application/json") == "[1]"
    assert codecs.prepare_input(b"1,2", "text/csv") == "1,2"


def test_prepare_input_uses_charset() -> None:
    body = '["café"]'.encode("latin-1")
    assert codecs.prepare_input(body, "application/json; charset=latin-1") == '["café"]'


def test_prepare_input_keeps_other_types_as_bytes() -> None:
    assert codecs.prepare_input(b"\x93NUMPY", "application/x-npy") == b"\x93NUMPY"
    assert codecs.prepare_input(b"abc", None) == b"abc"


def test_prepare_input_rejects_invalid_utf8() -> None:
    with pytest.raises(InvalidBodyError, match="not valid utf-8"):
        codecs.prepare_input(b"[\xff]", "application/json")


def test_prepare_input_rejects_unknown_charset() -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="unsupported charset 'klingon'"):
        codecs.prepare_input(b"[1]", "application/json; charset=klingon")


def test_json_array_becomes_numpy() -> None:
    value = codecs.default_input_fn("[[1, 2], [3, 4]]", "application/json")
    assert isinstance(value, np.ndarray)
    assert value.tolist() == [[1, 2], [3, 4]]


def test_json_object_stays_plain() -> None:
    value = codecs.default_input_fn('{"inputs": [1, 2]}', "application/json")
    assert value == {"inputs": [1, 2]}


def test_json_ragged_list_stays_plain() -> None:
    value = codecs.default_input_fn("[[1, 2], [3]]", "application/json")
    assert value == [[1, 2], [3]]


def test_json_string_stays_plain() -> None:
    assert codecs.default_input_fn('"hello"', "application/json") == "hello"


def test_json_invalid_body_is_bad_request() -> None:
    with pytest.raises(InvalidBodyError, match="invalid JSON body") as caught:
        codecs.default_input_fn("[1, 2", "application/json")
    assert caught.value.status_code == 400


def test_csv_single_row_stays_two_dimensional() -> None:
    value = codecs.default_input_fn("5.1,3.5,1.4,0.2", "text/csv")
    assert value.dtype == np.float64
    assert value.shape == (1, 4)


def test_csv_rows() -> None:
    value = codecs.default_input_fn("1,2\n3,4\n", "text/csv; charset=utf-8")
    assert value.tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_csv_non_numeric_is_bad_request() -> None:
    with pytest.raises(InvalidBodyError, match="invalid CSV body"):
        codecs.default_input_fn("a,b\n1,2", "text/csv")


def test_csv_ragged_rows_are_bad_request() -> None:
    with pytest.raises(InvalidBodyError, match="invalid CSV body"):
        codecs.default_input_fn("1,2\n3", "text/csv")


def test_csv_empty_body_is_bad_request() -> None:
    with pytest.raises(InvalidBodyError, match="empty CSV body"):
        codecs.default_input_fn("", "text/csv")


def test_npy_round_trip() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    value = codecs.default_input_fn(npy_bytes(array), "application/x-npy")
    assert value.dtype == np.float32
    assert value.tolist() == array.tolist()


def test_npy_object_array_is_rejected() -> None:
    body = npy_bytes(np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidBodyError, match="allow_pickle=False"):
        codecs.default_input_fn(body, "application/x-npy")


def test_npy_garbage_is_bad_request() -> None:
    with pytest.raises(InvalidBodyError, match="invalid NPY body"):
        codecs.default_input_fn(b"not an array", "application/x-npy")


def test_npz_archive_is_bad_request() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, a=np.arange(3))
    with pytest.raises(InvalidBodyError, match="NPZ archive"):
        codecs.default_input_fn(buffer.getvalue(), "application/x-npy")


@pytest.mark.parametrize("content_type", ["image/png", None, ""])
def test_unsupported_content_type(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="unsupported Content-Type") as caught:
        codecs.default_input_fn(b"x", content_type)
    assert caught.value.status_code == 415


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/json", "application/json"),
        ("text/csv", "text/csv"),
        ("application/x-npy", "application/x-npy"),
        ("text/html, text/csv;q=0.9, application/json", "text/csv"),
        ("APPLICATION/JSON; charset=utf-8", "application/json"),
        ("text/html, */*", "text/csv"),
    ],
)
def test_select_accept(accept: str, expected: str) -> None:
    assert codecs.select_accept(accept, "text/csv") == expected


def test_select_accept_unsupported() -> None:
    with pytest.raises(UnsupportedMediaTypeError, match="unsupported Accept 'image/png'"):
        codecs.select_accept("image/png", "application/json")


@pytest.mark.parametrize("accept", [None, "", "*/*", " */* "])
def test_resolve_accept_uses_default(accept: str | None) -> None:
    assert codecs.resolve_accept(accept, "text/csv") == "text/csv"


def test_resolve_accept_keeps_explicit_value() -> None:
    assert codecs.resolve_accept("application/json, text/csv", "text/csv") == (
        "application/json, text/csv"
    )


def test_encode_json_numpy_values() -> None:
    assert codecs.encode_json(np.array([[1, 2]])) == b"[[1, 2]]"
    assert codecs.encode_json({"score": np.float64(0.5), "labels": np.arange(2)}) == (
        b'{"score": 0.5, "labels": [0, 1]}'
    )


def test_encode_json_rejects_unknown_objects() -> None:
    with pytest.raises(InvocationError, match="cannot encode the prediction as JSON"):
        codecs.encode_json(object())


def test_encode_csv_shapes() -> None:
    assert codecs.encode_csv(np.array([0, 2, 1])) == b"0\n2\n1\n"
    assert codecs.encode_csv(np.array([[1.5, 2.0], [3.0, 4.0]])) == b"1.5,2.0\n3.0,4.0\n"
    assert codecs.encode_csv(np.int64(7)) == b"7\n"
    assert codecs.encode_csv([["a,b", 1]]) == b'"a,b",1\n'


def test_encode_csv_rejects_three_dimensions() -> None:
    with pytest.raises(InvocationError, match="3-D array as CSV"):
        codecs.encode_csv(np.zeros((1, 1, 1)))


def test_encode_csv_cell_types() -> None:
    assert codecs.encode_csv([True, "yes", 2, 0.5]) == b"True\nyes\n2\n0.5\n"
    assert codecs.encode_csv([[np.float32(1.5), np.bool_(False), np.str_("a")]]) == (
        b"1.5,False,a\n"
    )
    assert codecs.encode_csv([np.array([1, 2]), np.array([3, 4])]) == b"1,2\n3,4\n"
    assert codecs.encode_csv(np.array(["a", "b"])) == b"a\nb\n"
    assert codecs.encode_csv("label") == b"label\n"


class _Prediction:
    pass


@pytest.mark.parametrize(
    ("prediction", "message"),
    [
        ({"label": 1}, "cannot encode a dict as CSV. "),
        (None, "cannot encode a NoneType as CSV. "),
        (_Prediction(), "cannot encode a tests.runtime.test_codecs._Prediction as CSV. "),
        ([1, {"label": 1}], r"cannot encode a dict as CSV \(item 1\)"),
        ([[1, 2], [3, [4]]], r"cannot encode a list as CSV \(row 1, column 1\)"),
        ([b"raw"], r"cannot encode a bytes as CSV \(item 0\)"),
        (np.array([{"label": 1}], dtype=object), r"cannot encode a dict as CSV \(item 0\)"),
        ({1, 2}, "cannot encode a set as CSV. "),
    ],
)
def test_encode_csv_rejects_other_objects(prediction: object, message: str) -> None:
    with pytest.raises(InvocationError, match=message) as excinfo:
        codecs.encode_csv(prediction)

    assert excinfo.value.status_code == 500
    assert "define output_fn" in str(excinfo.value)


def test_encode_npy_round_trip() -> None:
    body = codecs.encode_npy([[1.0, 2.0]])
    assert np.load(io.BytesIO(body)).tolist() == [[1.0, 2.0]]


def test_encode_npy_rejects_objects() -> None:
    with pytest.raises(InvocationError, match="cannot encode the prediction as NPY"):
        codecs.encode_npy(np.array([{"a": 1}], dtype=object))


def test_default_output_fn_picks_type() -> None:
    body, content_type = codecs.default_output_fn(np.array([1]), "*/*", "application/json")
    assert (body, content_type) == (b"[1]", "application/json")
    body, content_type = codecs.default_output_fn(np.array([1]), "text/csv", "application/json")
    assert (body, content_type) == (b"1\n", "text/csv")

"""Java patterns from the service models, as Python ``re`` reads them after translation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sageport.protocol.models import control_plane_model, runtime_model
from sageport.protocol.patterns import (
    UnsupportedPatternError,
    compile_pattern,
    display_pattern,
    translate,
)


def _model_patterns() -> Iterator[tuple[str, str]]:
    for model in (control_plane_model(), runtime_model()):
        for shape_name in model.shape_names:
            pattern = model.shape_for(shape_name).metadata.get("pattern")
            if pattern is not None:
                yield f"{model.service_name}:{shape_name}", pattern


def test_every_model_pattern_compiles() -> None:
    failures = {}
    for shape, pattern in _model_patterns():
        try:
            compile_pattern(pattern)
        except (UnsupportedPatternError, ValueError) as exc:
            failures[shape] = f"{pattern!r}: {exc}"

    assert failures == {}


# (pattern as in the model, value, matches the whole value in Java)
JAVA_SEMANTICS = [
    # SageMaker resource names; the model leaves them un-anchored.
    ("[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", "my-endpoint", True),
    ("[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", "bad_name", False),
    ("[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", "ok-prefix then junk", False),
    ("^[a-zA-Z0-9](-*[a-zA-Z0-9])*", "trailing-", False),
    # \p{ASCII} (runtime Header) rejects non-ASCII, such as UTF-8 read as Latin-1.
    ("\\p{ASCII}*", "application/json; charset=utf-8", True),
    ("\\p{ASCII}*", "caf\u00c3\u00a9", False),
    # \A \S [\p{Print}]* \z (InferenceId): printable ASCII, no leading space.
    ("\\A\\S[\\p{Print}]*\\z", "id 42", True),
    ("\\A\\S[\\p{Print}]*\\z", " id", False),
    ("\\A\\S[\\p{Print}]*\\z", "id\t42", False),
    ("\\A\\S[\\p{Print}]*\\z", "id-\u00e9", False),
    # \p{Alnum} is ASCII-only in Java.
    (
        "arn:[\\p{Alnum}\\-]+:lambda:[\\p{Alnum}\\-]+:[0-9]{12}:function:.*",
        "arn:aws:lambda:us-east-1:123456789012:function:f",
        True,
    ),
    (
        "arn:[\\p{Alnum}\\-]+:lambda:[\\p{Alnum}\\-]+:[0-9]{12}:function:.*",
        "arn:\u00e4ws:lambda:us-east-1:123456789012:function:f",
        False,
    ),
    # Unicode general categories (TagKey).
    ("([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)", "K\u00f6ln 2024", True),
    ("([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)", "semi;colon", False),
    # A quantified $ (CustomerMetadataKey) means a single $.
    ("([\\p{L}\\p{Z}\\p{N}_.:\\/=+\\-@]*)${1,128}", "key", True),
    # \d is ASCII in Java: Arabic-Indic digits are not an account id.
    (
        "arn:aws[a-z\\-]*:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+",
        "arn:aws:iam::123456789012:role/Admin",
        True,
    ),
    (
        "arn:aws[a-z\\-]*:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+",
        "arn:aws:iam::\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660\u0661\u0662:role/A",
        False,
    ),
    # . excludes every Java line terminator, not only \n.
    ("(?!\\s*$).+", "text", True),
    ("(?!\\s*$).+", "   ", False),
    ("(?!\\s*$).+", "a\rb", False),
    ("(?!\\s*$).+", "a\u2028b", False),
    # A surrogate pair in a range is one supplementary code point (Catalog).
    ("[\\u0020-\\uD7FF\\uE000-\\uFFFD\\uD800\\uDC00-\\uDBFF\\uDFFF\\t]*", "db \U0001f600", True),
    ("[\\u0020-\\uD7FF\\uE000-\\uFFFD\\uD800\\uDC00-\\uDBFF\\uDFFF\\t]*", "db\n", False),
    # Lookbehind and \b pass through (ArnOrName, ClusterPrivatePrimaryIp).
    (
        "(arn:aws[a-z\\-]*:sagemaker:[a-z0-9\\-]*:[0-9]{12}:[a-z\\-]*\\/)?([a-zA-Z0-9]([a-zA-Z0-9-]){0,62})(?<!-)",
        "name-",
        False,
    ),
    ("((25[0-5]|(2[0-4]|1\\d|[1-9]|)\\d)\\.?\\b){4}", "10.0.1.255", True),
    ("((25[0-5]|(2[0-4]|1\\d|[1-9]|)\\d)\\.?\\b){4}", "10.0.1.256", False),
]


@pytest.mark.parametrize(("pattern", "value", "expected"), JAVA_SEMANTICS)
def test_pattern_full_match(pattern: str, value: str, expected: bool) -> None:
    assert (compile_pattern(pattern).fullmatch(value) is not None) is expected


def test_negated_property_class() -> None:
    pattern = compile_pattern("\\P{L}+")

    assert pattern.fullmatch("123 !") is not None
    assert pattern.fullmatch("12a") is None


def test_quote_and_named_group_translated() -> None:
    assert compile_pattern("\\Qa.b\\E").fullmatch("a.b") is not None
    assert compile_pattern("\\Qa.b\\E").fullmatch("axb") is None
    assert compile_pattern("(?<word>[a-z]+)").fullmatch("abc") is not None


@pytest.mark.parametrize(
    "pattern",
    ["[a-z&&[^c]]", "[a[bc]]", "\\R", "\\h+", "\\x{41}", "\\p{javaLowerCase}", "[abc"],
)
def test_unsupported_java_syntax_raises(pattern: str) -> None:
    with pytest.raises(UnsupportedPatternError):
        translate(pattern)


def test_display_pattern_anchors_like_sagemaker() -> None:
    assert (
        display_pattern("[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}") == "^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
    )
    assert display_pattern("^[a-zA-Z0-9](-*[a-zA-Z0-9])*") == "^[a-zA-Z0-9](-*[a-zA-Z0-9])*"
    assert display_pattern("\\A\\S[\\p{Print}]*\\z") == "\\A\\S[\\p{Print}]*\\z"

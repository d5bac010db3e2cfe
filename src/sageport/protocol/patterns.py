"""Java regular expressions from the service models, translated to Python ``re``.

SageMaker validates with ``java.util.regex`` and botocore copies those patterns
into its models unchanged. Python's ``re`` rejects some of them and reads
others differently, so each pattern goes through ``translate`` before it is
compiled. The differences handled, with the model shapes that need them:

- ``\\p{...}`` classes (``TagKey``, ``EntityDescription``, the runtime's
  ``Header`` with ``\\p{ASCII}``, ``InferenceId`` with ``\\p{Print}``,
  ``TrainingRepositoryCredentialsProviderArn`` with ``\\p{Alnum}``): Unicode
  general categories become explicit code point ranges taken from
  ``unicodedata``. POSIX names stay US-ASCII, as in Java without
  ``UNICODE_CHARACTER_CLASS``.
- ``\\d``, ``\\w``, ``\\s`` are ASCII-only in Java but Unicode-aware in Python,
  so every pattern compiles with ``re.ASCII`` (otherwise ``\\d{12}`` would
  accept Arabic-Indic digits in an account id). ``\\b`` then follows ASCII
  ``\\w``, as it does from JDK 19 on. Older JVMs count Unicode letters as word
  characters. That cannot change a full match of the two patterns that use
  ``\\b`` (``ClusterPrivatePrimaryIp``, ``ClusterPrivateDnsHostname``),
  because there it sits between ASCII digits, dots and hyphens.
- ``.`` in Java excludes ``\\r``, U+0085, U+2028 and U+2029 as well as ``\\n``.
- ``$`` in Java also matches before a final ``\\r\\n``, ``\\r``, U+0085,
  U+2028 or U+2029, and Java accepts a quantifier on it
  (``CustomerMetadataKey`` ends in ``${1,128}``, which means ``$``).
- ``\\z`` (``InferenceId``) is Python's ``\\Z``.
- A UTF-16 surrogate pair written as two ``\\u`` escapes is one code point in
  Java (``Catalog``: ``\\uD800\\uDC00-\\uDBFF\\uDFFF`` is U+10000 to U+10FFFF).
- ``\\Q...\\E`` quoting and ``(?<name>...)`` groups are rewritten.

Java syntax with no safe translation (class unions and intersections,
``\\R``, ``\\h``, ``\\v`` and a few more) raises
``UnsupportedPatternError``. The test suite translates every pattern in both
models, so a new botocore release that needs more fails there, not at request
time.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

# Java's line terminators, as ``.`` and ``$`` see them without flags.
_LINE_TERMINATORS = "\\n\\r\\x85\\u2028\\u2029"
_DOT = f"[^{_LINE_TERMINATORS}]"
_DOLLAR = f"(?=(?:\\r\\n|[{_LINE_TERMINATORS}])?\\Z)"

# POSIX classes in Java are US-ASCII unless UNICODE_CHARACTER_CLASS is set.
_POSIX_CLASSES = {
    "Lower": "a-z",
    "Upper": "A-Z",
    "ASCII": "\\x00-\\x7f",
    "Alpha": "a-zA-Z",
    "Digit": "0-9",
    "Alnum": "a-zA-Z0-9",
    "Punct": "!-/:-@\\[-`{-~",
    "Graph": "!-~",
    "Print": " -~",
    "Blank": " \\t",
    "Cntrl": "\\x00-\\x1f\\x7f",
    "XDigit": "0-9a-fA-F",
    "Space": " \\t\\n\\x0b\\f\\r",
}

_QUANTIFIER_START = re.compile(r"[*+?]|\{\d")
_UNSUPPORTED_ESCAPES = frozenset("RXhHvVGeckN")


class UnsupportedPatternError(ValueError):
    """A model pattern uses Java syntax that has no translation here."""


def translate(pattern: str) -> str:
    """Rewrite a Java pattern so that Python ``re`` (with ``re.ASCII``) means the same."""
    return _Translator(pattern).run()


@functools.cache
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a model pattern once and cache it. Callers match with ``fullmatch``."""
    return re.compile(translate(pattern), re.ASCII)


def display_pattern(pattern: str) -> str:
    """Return the pattern as SageMaker quotes it in messages: anchored with ``^``."""
    if pattern.startswith(("^", "\\A")):
        return pattern
    return "^" + pattern


class _Translator:
    """A single left-to-right pass over one pattern."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.pos = 0
        self.out: list[str] = []
        self.in_class = False

    def run(self) -> str:
        while self.pos < len(self.pattern):
            if self.in_class:
                self._class_step()
            else:
                self._step()
        if self.in_class:
            raise UnsupportedPatternError(f"unterminated character class in {self.pattern!r}")
        return "".join(self.out)

    def _step(self) -> None:
        char = self.pattern[self.pos]

        if char == "\\":
            self._escape()
        elif char == "[":
            self._open_class()
        elif char == ".":
            self.out.append(_DOT)
            self.pos += 1
        elif char == "$":
            self.out.append(_DOLLAR)
            self.pos += 1
        elif char == "^":
            self._anchor("^", 1)
        elif self.pattern.startswith("(?<", self.pos) and not self.pattern.startswith(
            ("(?<=", "(?<!"), self.pos
        ):
            # Java's named group; ``(?<=`` and ``(?<!`` are lookbehinds in both.
            self.out.append("(?P<")
            self.pos += 3
        else:
            self.out.append(char)
            self.pos += 1

    def _anchor(self, text: str, width: int) -> None:
        self.pos += width

        # Java allows a quantifier on an anchor; Python only on a group.
        if _QUANTIFIER_START.match(self.pattern, self.pos):
            self.out.append(f"(?:{text})")
        else:
            self.out.append(text)

    def _escape(self) -> None:
        name = self.pattern[self.pos + 1 : self.pos + 2]

        if name in ("p", "P"):
            ranges = self._property(name == "P")
            self.out.append(f"[{ranges}]")
        elif name == "z":
            self._anchor("\\Z", 2)
        elif name in ("A", "b", "B"):
            self._anchor(f"\\{name}", 2)
        elif name == "Z":
            self.out.append(_DOLLAR)
            self.pos += 2
        elif name == "Q":
            self.out.append(re.escape(self._quoted()))
        elif name == "u":
            self.out.append(self._unicode_escape())
        elif name == "x" and self.pattern.startswith("{", self.pos + 2):
            raise UnsupportedPatternError(f"\\x{{...}} escape in {self.pattern!r}")
        elif name in _UNSUPPORTED_ESCAPES:
            raise UnsupportedPatternError(f"\\{name} has no translation, in {self.pattern!r}")
        else:
            self.out.append(self.pattern[self.pos : self.pos + 2])
            self.pos += 2

    def _open_class(self) -> None:
        self.in_class = True
        self.out.append("[")
        self.pos += 1

        if self.pattern.startswith("^", self.pos):
            self.out.append("^")
            self.pos += 1

        # A ``]`` right after the opening bracket is a literal in both dialects.
        if self.pattern.startswith("]", self.pos):
            self.out.append("\\]")
            self.pos += 1

    def _class_step(self) -> None:
        char = self.pattern[self.pos]

        if char == "]":
            self.in_class = False
            self.out.append("]")
            self.pos += 1
        elif char == "[" or self.pattern.startswith("&&", self.pos):
            raise UnsupportedPatternError(
                f"character class union or intersection in {self.pattern!r}"
            )
        elif char == "\\":
            self._class_escape()
        else:
            self.out.append(char)
            self.pos += 1

    def _class_escape(self) -> None:
        name = self.pattern[self.pos + 1 : self.pos + 2]

        if name in ("p", "P"):
            self.out.append(self._property(name == "P"))
        elif name == "Q":
            self.out.append("".join(f"\\{c}" if not c.isalnum() else c for c in self._quoted()))
        elif name == "u":
            self.out.append(self._unicode_escape())
        elif name in _UNSUPPORTED_ESCAPES or name in ("z", "Z", "A", "b", "B"):
            raise UnsupportedPatternError(f"\\{name} inside a class, in {self.pattern!r}")
        else:
            self.out.append(self.pattern[self.pos : self.pos + 2])
            self.pos += 2

    def _property(self, negated: bool) -> str:
        """Consume ``\\p{Name}`` or ``\\pL`` and return class ranges (no brackets)."""
        start = self.pos + 2
        if self.pattern.startswith("{", start):
            end = self.pattern.find("}", start)
            if end < 0:
                raise UnsupportedPatternError(f"unterminated \\p{{ in {self.pattern!r}")
            name = self.pattern[start + 1 : end]
            self.pos = end + 1
        else:
            name = self.pattern[start : start + 1]
            self.pos = start + 1
        return _property_ranges(name, negated)

    def _quoted(self) -> str:
        start = self.pos + 2
        end = self.pattern.find("\\E", start)
        if end < 0:
            self.pos = len(self.pattern)
            return self.pattern[start:]
        self.pos = end + 2
        return self.pattern[start:end]

    def _unicode_escape(self) -> str:
        unit = _hex_unit(self.pattern, self.pos)
        self.pos += 6

        # Java patterns are UTF-16: a high surrogate escape followed by a low
        # one is a single supplementary code point, and ranges use it as one.
        if 0xD800 <= unit <= 0xDBFF and self.pattern.startswith("\\u", self.pos):
            low = _hex_unit(self.pattern, self.pos)
            if 0xDC00 <= low <= 0xDFFF:
                self.pos += 6
                code_point = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                return f"\\U{code_point:08x}"
        return f"\\u{unit:04x}"


def _hex_unit(pattern: str, pos: int) -> int:
    digits = pattern[pos + 2 : pos + 6]
    if len(digits) != 4 or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise UnsupportedPatternError(f"malformed \\u escape in {pattern!r}")
    return int(digits, 16)


def _property_ranges(name: str, negated: bool) -> str:
    if name in _POSIX_CLASSES:
        ranges = _parse_ascii_ranges(_POSIX_CLASSES[name])
    else:
        category = name.removeprefix("Is")
        if category not in _general_category_ranges():
            raise UnsupportedPatternError(f"unknown character property \\p{{{name}}}")
        ranges = _general_category_ranges()[category]

    if negated:
        ranges = _complement(ranges)
    return "".join(_format_range(low, high) for low, high in ranges)


def _parse_ascii_ranges(text: str) -> list[tuple[int, int]]:
    """Expand a POSIX table entry (written as class text) to code point ranges."""
    members = [i for i in range(128) if re.fullmatch(f"[{text}]", chr(i))]
    ranges: list[tuple[int, int]] = []
    for code_point in members:
        if ranges and ranges[-1][1] == code_point - 1:
            ranges[-1] = (ranges[-1][0], code_point)
        else:
            ranges.append((code_point, code_point))
    return ranges


@functools.cache
def _general_category_ranges() -> dict[str, list[tuple[int, int]]]:
    """Map each Unicode general category (``Lu``) and major class (``L``) to ranges.

    One pass over every code point, run only when a pattern needs a category.
    The Unicode version is Python's ``unicodedata.unidata_version``, which may
    differ from the one in SageMaker's JVM for recently assigned characters.
    """
    by_category: dict[str, list[tuple[int, int]]] = {}
    previous = ""
    for code_point in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(code_point))
        ranges = by_category.setdefault(category, [])
        if category == previous:
            ranges[-1] = (ranges[-1][0], code_point)
        else:
            ranges.append((code_point, code_point))
        previous = category

    for major in {category[0] for category in list(by_category)}:
        merged = sorted(
            r for category, rs in by_category.items() if category[0] == major for r in rs
        )
        by_category[major] = _merge(merged)
    return by_category


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in ranges:
        if merged and merged[-1][1] >= low - 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _complement(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    result: list[tuple[int, int]] = []
    next_low = 0
    for low, high in ranges:
        if low > next_low:
            result.append((next_low, low - 1))
        next_low = high + 1
    if next_low <= sys.maxunicode:
        result.append((next_low, sys.maxunicode))
    return result


def _format_range(low: int, high: int) -> str:
    if low == high:
        return f"\\U{low:08x}"
    return f"\\U{low:08x}-\\U{high:08x}"

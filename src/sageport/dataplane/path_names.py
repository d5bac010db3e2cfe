"""Checks for caller-given names that become part of a file path or object key.

TargetModel is appended to a multi-model prefix and InferenceId names the
files of an async invocation. A ``file://`` URI is percent-decoded before it
becomes a path, so ``%2e%2e`` turns into ``..`` there. Each check therefore
applies to the name as sent and to every form that repeated percent-decoding
gives.
"""

from __future__ import annotations

from urllib.parse import unquote

# A name that still changes after this many rounds of decoding is rejected:
# no real name is encoded so many times over.
MAX_DECODING_ROUNDS = 4


def decoded_forms(name: str) -> list[str] | None:
    """Return ``name`` and each distinct form percent-decoding gives.

    Returns None when decoding still changes the name after the limit, or
    when a decoded form is not valid UTF-8.
    """
    forms = [name]
    for _ in range(MAX_DECODING_ROUNDS):
        try:
            decoded = unquote(forms[-1], errors="strict")
        except UnicodeDecodeError:
            return None
        if decoded == forms[-1]:
            return forms
        forms.append(decoded)
    return None


def is_relative_path(name: str) -> bool:
    """Say whether every decoded form of ``name`` is a relative path that stays where it starts.

    Such a path has printable characters only, no backslash, no leading or
    trailing space, and no empty, ``.`` or ``..`` segment.
    """
    forms = decoded_forms(name)
    return forms is not None and all(_is_clean_path(form) for form in forms)


def is_plain_name(name: str) -> bool:
    """Say whether every decoded form of ``name`` is one path segment, not ``.`` or ``..``."""
    forms = decoded_forms(name)
    return forms is not None and all(_is_clean_path(form) and "/" not in form for form in forms)


def _is_clean_path(path: str) -> bool:
    return (
        path.isprintable()
        and path == path.strip()
        and "\\" not in path
        and not any(segment in ("", ".", "..") for segment in path.split("/"))
    )

"""The image table: which local command serves a container ``Image``.

Sageport runs no container engine, so an ``Image`` value is matched against an
operator's table instead. The first rule whose shell-style pattern matches the
whole image URI decides. Without a table, or when no rule matches, the image
runs on the built-in runtime.

The table is TOML:

    [[image]]
    match = "*.dkr.ecr.*.amazonaws.com/my-server:*"
    command = ["python", "/srv/my_server.py"]   # started as COMMAND serve

    [[image]]
    match = "*/tensorflow-serving:*"
    runtime = "reject"                          # the endpoint fails, naming the image

    [[image]]
    match = "*"
    runtime = "builtin"
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUILTIN = "builtin"
COMMAND = "command"
REJECT = "reject"


class ImageTableError(Exception):
    """The image table file cannot be read or has an invalid rule."""


@dataclass(frozen=True)
class ImageRule:
    """One row of the table."""

    match: str
    runtime: str = BUILTIN
    command: tuple[str, ...] = ()

    def matches(self, image: str) -> bool:
        return fnmatch.fnmatchcase(image, self.match)


DEFAULT_RULE = ImageRule("*")


def load_image_table(path: Path) -> tuple[ImageRule, ...]:
    """Read and check an image table; raise ImageTableError naming the bad rule."""
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ImageTableError(f"Cannot read the image table {path}: {exc}") from None

    rows = document.get("image", [])
    if not isinstance(rows, list):
        raise ImageTableError(f"{path}: 'image' must be an array of tables ([[image]]).")
    return tuple(_rule(path, index, row) for index, row in enumerate(rows, start=1))


def resolve_image(image: str | None, rules: tuple[ImageRule, ...]) -> ImageRule:
    """Return the rule for ``image``; an image with no matching rule runs built in."""
    for rule in rules:
        if rule.matches(image or ""):
            return rule
    return DEFAULT_RULE


def _rule(path: Path, index: int, row: Any) -> ImageRule:
    where = f"{path}, image rule {index}"
    if not isinstance(row, dict):
        raise ImageTableError(f"{where}: a rule must be a table with 'match'.")
    match = row.get("match")
    if not isinstance(match, str) or not match:
        raise ImageTableError(f"{where}: 'match' must be a non-empty string pattern.")

    command = row.get("command")
    runtime = row.get("runtime", COMMAND if command is not None else BUILTIN)
    if runtime not in (BUILTIN, COMMAND, REJECT):
        raise ImageTableError(
            f'{where}: \'runtime\' must be "builtin" or "reject", or leave it out and give '
            "'command'."
        )
    if runtime == COMMAND:
        if not (isinstance(command, list) and command and all(isinstance(a, str) for a in command)):
            raise ImageTableError(f"{where}: 'command' must be a non-empty array of strings.")
        return ImageRule(match, COMMAND, tuple(command))
    if command is not None:
        raise ImageTableError(f"{where}: 'command' cannot be combined with runtime = {runtime!r}.")
    return ImageRule(match, runtime)

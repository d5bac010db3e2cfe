"""Import, before fork, the modules a model's pickled weights will need.

A scikit-learn model saved with joblib names its classes' modules inside the
pickle (``sklearn.linear_model._logistic``), and unpickling imports them in
``model_fn``, after the fork. Reading those names with ``pickletools``, which
parses opcodes and never builds an object, lets the supervisor import the
modules first, so every worker shares them instead of importing its own copy.
Nothing is unpickled here; a file that is not a plain pickle just yields
fewer names.
"""

from __future__ import annotations

import importlib
import io
import logging
import pickletools
import re
from pathlib import Path

logger = logging.getLogger("sageport.runtime")

PICKLE_SUFFIXES = frozenset({".joblib", ".pkl", ".pickle", ".sav"})
# Module names sit near the start of a pickle; large arrays come after them.
MAX_SCAN_BYTES = 16 * 2**20
MAX_FILES = 20
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_STRING_OPCODES = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"})


def pickled_modules(model_dir: Path) -> set[str]:
    """Return the module names that the pickles in ``model_dir`` refer to."""
    modules: set[str] = set()
    files = sorted(p for p in model_dir.rglob("*") if p.suffix in PICKLE_SUFFIXES and p.is_file())
    for path in files[:MAX_FILES]:
        with path.open("rb") as stream:
            modules |= _scan(stream.read(MAX_SCAN_BYTES))
    return modules


def preload_modules(names: set[str]) -> list[str]:
    """Import what can be imported of ``names``; return the ones imported."""
    imported = []
    for name in sorted(names):
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - a module that fails here fails in the worker too
            logger.debug("Not preloading %s: %s", name, exc)
            continue
        imported.append(name)
    return imported


def _scan(data: bytes) -> set[str]:
    modules: set[str] = set()
    strings: list[str] = []
    try:
        for opcode, argument, _ in pickletools.genops(io.BytesIO(data)):
            if opcode.name in _STRING_OPCODES:
                strings.append(str(argument))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                modules.add(strings[-2])
            elif opcode.name in ("GLOBAL", "INST"):
                modules.add(str(argument).split(" ", 1)[0])
    except (ValueError, EOFError, UnicodeDecodeError):
        # joblib writes raw array bytes between pickle opcodes; the names come first.
        pass
    return {name for name in modules if _MODULE_NAME.fullmatch(name)}

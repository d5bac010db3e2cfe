"""Find and import the user's inference module and bind its handler functions.

Handlers are looked up the way SageMaker's inference toolkit (v1.10) looks
them up. ``model_fn`` is required. ``input_fn``, ``predict_fn`` and
``output_fn`` fall back to defaults. ``transform_fn`` replaces those three,
so it cannot be combined with them. Each handler may take a trailing
``context`` argument, detected once here from its signature.

This module uses only the standard library, so the supervisor can check
for the user code before it forks the workers.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from sageport.runtime.errors import StartupError, describe_exception

# The arguments each handler takes before the optional trailing context.
HANDLER_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "model_fn": ("model_dir",),
    "input_fn": ("input_data", "content_type"),
    "predict_fn": ("data", "model"),
    "output_fn": ("prediction", "accept"),
    "transform_fn": ("model", "input_data", "content_type", "accept"),
}

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@dataclass(frozen=True, slots=True)
class Handler:
    """A user handler function and whether it takes the trailing context argument."""

    function: Callable[..., Any]
    takes_context: bool


@dataclass(frozen=True, slots=True)
class UserHandlers:
    """The handlers the user module defines; None where the default applies."""

    model_fn: Handler
    input_fn: Handler | None = None
    predict_fn: Handler | None = None
    output_fn: Handler | None = None
    transform_fn: Handler | None = None

    @property
    def uses_context(self) -> bool:
        """Whether any request handler takes a context argument."""
        handlers = (self.input_fn, self.predict_fn, self.output_fn, self.transform_fn)
        return any(handler is not None and handler.takes_context for handler in handlers)


def locate_program(code_dir: Path, program: str) -> Path:
    """Return the path of the user module, or raise StartupError saying where it was expected."""
    path = code_dir / program
    if not path.is_file() and not program.endswith(".py"):
        path = code_dir / f"{program}.py"
    if not path.is_file():
        raise StartupError(
            f"user code not found: {code_dir / program} does not exist; put {program} under "
            "code/ in the model data, or set SAGEMAKER_PROGRAM to the module's file name"
        )
    return path


def import_user_module(code_dir: Path, program: str, module_name: str | None = None) -> ModuleType:
    """Import the user module from ``code_dir``, which goes first on ``sys.path``.

    ``module_name`` names it in ``sys.modules``; by default it is the file's stem.
    """
    path = locate_program(code_dir, program)
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))

    # Loading by file path keeps an installed package of the same name from
    # shadowing the user's module.
    name = module_name or path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise StartupError(f"cannot import {path}: it is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise StartupError(f"importing {program} raised {describe_exception(exc)}") from exc
    return module


def bind_handlers(module: ModuleType, program: str) -> UserHandlers:
    """Look up the handler functions in ``module`` and check how they combine."""
    found = {name: _bind(module, program, name) for name in HANDLER_ARGUMENTS}
    model_fn = found.pop("model_fn")
    if model_fn is None:
        raise StartupError(
            f"{program} defines no model_fn; define model_fn(model_dir) that loads and "
            "returns the model"
        )

    if found["transform_fn"] is not None:
        clashing = [name for name in ("input_fn", "predict_fn", "output_fn") if found[name]]
        if clashing:
            raise StartupError(
                f"{program} defines transform_fn together with {', '.join(clashing)}; define "
                "either transform_fn or input_fn/predict_fn/output_fn"
            )
    return UserHandlers(model_fn=model_fn, **found)


def load_user_handlers(code_dir: Path, program: str) -> UserHandlers:
    """Import the user module and bind its handlers."""
    return bind_handlers(import_user_module(code_dir, program), program)


class CodeScope:
    """One model's code directory and the modules imported from it.

    A multi-model worker runs many models in one process, and their helper
    modules often share a name (``utils.py``). Only while ``active()`` is the
    directory first on ``sys.path`` and are its modules in ``sys.modules``
    under their own names. Handlers keep working in between, because their
    globals refer to the module objects rather than to ``sys.modules``.
    """

    def __init__(self, code_dir: Path) -> None:
        self.code_dir = code_dir
        self._prefix = os.path.join(os.path.abspath(code_dir), "")
        self._module_names, self._packages = _importable_names(code_dir)
        self._modules: dict[str, ModuleType] = {}

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make this directory's modules the ones that ``import`` finds, until the block exits.

        Same-named modules from other code directories step aside meanwhile.
        Installed ones (the standard library, site-packages) stay shared,
        because a model's helper should not replace them for other models.
        """
        shadowed = self._take_modules(lambda module: not _is_installed(module))
        sys.modules.update(self._modules)
        entry = str(self.code_dir)
        sys.path.insert(0, entry)
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)
            self._modules = self._take_modules(self._defined_here)
            sys.modules.update(shadowed)

    def _take_modules(self, selected: Callable[[ModuleType], bool]) -> dict[str, ModuleType]:
        """Remove and return the selected ``sys.modules`` entries under this directory's names."""
        keys = [name for name in self._module_names if name in sys.modules]
        if self._packages:
            # A package's submodules are entries of their own.
            keys += [key for key in sys.modules if key.partition(".")[0] in self._packages]
        return {key: sys.modules.pop(key) for key in keys if selected(sys.modules[key])}

    def _defined_here(self, module: ModuleType) -> bool:
        return any(location.startswith(self._prefix) for location in _locations(module))


@functools.cache
def _installed_prefixes() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    return tuple(os.path.join(os.path.abspath(paths[key]), "") for key in keys if key in paths)


def _is_installed(module: ModuleType) -> bool:
    """Return whether ``module`` is built in or comes from the interpreter's library directories."""
    locations = _locations(module)
    return not locations or all(
        location.startswith(_installed_prefixes()) for location in locations
    )


def _locations(module: ModuleType) -> list[str]:
    """Return the absolute file of ``module`` and, for a package, its directories."""
    found = [getattr(module, "__file__", None) or ""]
    found += list(getattr(module, "__path__", None) or [])
    return [os.path.abspath(location) for location in found if location]


def _importable_names(code_dir: Path) -> tuple[frozenset[str], frozenset[str]]:
    """Return the names of the modules and of the packages at the top of ``code_dir``."""
    suffixes = tuple(importlib.machinery.all_suffixes())
    modules, packages = set(), set()
    for entry in code_dir.iterdir():
        name = entry.name.partition(".")[0]
        if not name.isidentifier() or name == "__pycache__":
            continue
        if entry.is_dir():
            packages.add(name)
        elif entry.name.endswith(suffixes):
            modules.add(name)
    return frozenset(modules - packages), frozenset(packages)


def _bind(module: ModuleType, program: str, name: str) -> Handler | None:
    function = getattr(module, name, None)
    if function is None:
        return None
    if not callable(function):
        raise StartupError(f"{name} in {program} is a {type(function).__name__}, not a function")
    return Handler(function, _takes_context(function, program, name))


def _takes_context(function: Callable[..., Any], program: str, name: str) -> bool:
    arguments = HANDLER_ARGUMENTS[name]
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        # Some builtins and C extensions have no signature; call them without context.
        return False

    positional = [p for p in parameters if p.kind in _POSITIONAL]
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    required_keywords = [
        p
        for p in parameters
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    ]
    takes_varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
    count = len(arguments)
    if (
        len(required) > count + 1
        or required_keywords
        or (len(positional) < count and not takes_varargs)
    ):
        raise StartupError(
            f"{name} in {program} has the signature {name}{inspect.signature(function)}; "
            f"expected {name}({', '.join(arguments)}[, context])"
        )
    return len(positional) > count or takes_varargs

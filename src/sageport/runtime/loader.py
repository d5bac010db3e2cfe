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

import importlib.util
import inspect
import sys
from collections.abc import Callable
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

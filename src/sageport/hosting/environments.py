"""Per-model Python environments for ``code/requirements.txt``.

SageMaker's framework containers pip-install a model's ``code/requirements.txt``
when the container starts. Sageport installs it once, at deploy time, with uv,
into a virtual environment kept under ``<data-dir>/environments/<digest>``.
The digest covers the requirements file, the interpreter and Sageport's own
version, so a redeploy of the same requirements reuses the environment at once,
and a failed install fails the endpoint with uv's message instead of the first
request.

The environment can import Sageport's own packages (the built-in runtime, NumPy and
whatever the server's environment has) after its own: a ``.pth`` file adds
the server's site-packages at the end of ``sys.path``, so a version pinned in
requirements.txt wins.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import logging
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

logger = logging.getLogger("sageport.hosting")

REQUIREMENTS = Path("code") / "requirements.txt"
# uv's own output can be long, and FailureReason is at most 1024 characters.
MAX_REASON_CHARS = 700
_COMPLETE = ".sageport-complete"


class RequirementsError(Exception):
    """Installing a model's requirements failed; ``str()`` is the FailureReason."""


async def model_python(model_dir: Path, environments_dir: Path) -> str:
    """Return the interpreter an instance of this model runs: its own if it has requirements."""
    requirements = model_dir / REQUIREMENTS
    if not requirements.is_file():
        return sys.executable

    environment = environments_dir / _digest(requirements)
    python = environment / "bin" / "python"
    if (environment / _COMPLETE).exists():
        logger.info("Reusing the environment %s for %s", environment.name, requirements)
        return str(python)

    environments_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{environment.name}.", dir=environments_dir))
    try:
        await _build(work, requirements)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    # Another deploy may have finished the same environment meanwhile; either copy works.
    if not (environment / _COMPLETE).exists():
        shutil.rmtree(environment, ignore_errors=True)
        # The interpreter finds its environment from its own path, so the
        # environment still works after the move (only activate scripts would not).
        work.rename(environment)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return str(python)


async def _build(work: Path, requirements: Path) -> None:
    from uv import find_uv_bin

    uv = find_uv_bin()
    logger.info("Installing %s into a new environment", requirements)
    await _run([uv, "venv", "--quiet", "--python", sys.executable, str(work)], requirements)
    (
        Path(sysconfig.get_paths(vars={"base": str(work)})["purelib"]) / "sageport-server.pth"
    ).write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    await _run(
        [uv, "pip", "install", "--quiet", "--python", str(work / "bin" / "python"),
         "--requirement", str(requirements)],
        requirements,
    )  # fmt: skip
    (work / _COMPLETE).touch()
    logger.info("Installed %s", requirements)


async def _run(command: list[str], requirements: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=requirements.parent,
        env={**os.environ, "VIRTUAL_ENV": ""},
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        text = " ".join(output.decode(errors="replace").split())
        raise RequirementsError(
            f"Installing the model's code/requirements.txt failed (uv exited with status "
            f"{process.returncode}): {text[-MAX_REASON_CHARS:]}"
        )


def _digest(requirements: Path) -> str:
    digest = hashlib.sha256(requirements.read_bytes())
    digest.update(sys.version.encode())
    digest.update(importlib.metadata.version("sageport").encode())
    return digest.hexdigest()[:24]

"""Instance log files: ``<data-dir>/logs/<endpoint>/<variant>/<instance-id>.log``.

An endpoint's directory is named by its lower-cased name, as names are unique
case-insensitively; the files outlive the endpoint so a failure can be read
after the endpoint is gone.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# SageMaker's EndpointName pattern and length (botocore's sagemaker model).
# It admits no '/' and no '.', so a valid name cannot leave the logs directory.
ENDPOINT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


class InvalidEndpointName(ValueError):
    """An endpoint name that breaks SageMaker's EndpointName pattern.

    ``str()`` is the message for the user.
    """


@dataclass(frozen=True)
class InstanceLog:
    """One instance's output file."""

    variant: str
    instance_id: str
    path: Path


def instance_logs(logs_dir: Path, endpoint_name: str) -> list[InstanceLog]:
    """Return an endpoint's instance logs, oldest first.

    Raises InvalidEndpointName for a name that is not a valid endpoint name.
    Only files whose real path is inside ``logs_dir`` are returned.
    """
    if not ENDPOINT_NAME.fullmatch(endpoint_name):
        raise InvalidEndpointName(
            f"Invalid endpoint name {endpoint_name!r}: an endpoint name has 1 to 63 letters, "
            "digits and hyphens, and starts and ends with a letter or digit."
        )
    endpoint_dir = logs_dir / endpoint_name.lower()
    if not endpoint_dir.is_dir():
        return []
    root = os.path.realpath(logs_dir)
    files = [
        path
        for path in endpoint_dir.glob("*/*.log")
        if os.path.realpath(path).startswith(root + os.sep)
    ]
    files.sort(key=lambda path: path.stat().st_mtime)
    return [InstanceLog(path.parent.name, path.stem, path) for path in files]

"""Instance log files: ``<data-dir>/logs/<endpoint>/<variant>/<instance-id>.log``.

An endpoint's directory is named by its lower-cased name, as names are unique
case-insensitively; the files outlive the endpoint so a failure can be read
after the endpoint is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class InstanceLog:
    """One instance's output file."""

    variant: str
    instance_id: str
    path: Path


def instance_logs(logs_dir: Path, endpoint_name: str) -> list[InstanceLog]:
    """Return an endpoint's instance logs, oldest first."""
    endpoint_dir = logs_dir / endpoint_name.lower()
    if not endpoint_dir.is_dir():
        return []
    files = sorted(endpoint_dir.glob("*/*.log"), key=lambda path: path.stat().st_mtime)
    return [InstanceLog(path.parent.name, path.stem, path) for path in files]

"""Server settings, gathered by the CLI and passed down explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_REGION = "us-east-1"
# The account id that ARNs carry; any 12 digits do, since no AWS account is involved.
DEFAULT_ACCOUNT_ID = "123456789012"


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to start."""

    data_dir: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    # How long an instance may take to pass its first /ping, in seconds, unless
    # the production variant sets ContainerStartupHealthCheckTimeoutInSeconds.
    startup_timeout: float = 600.0
    # Extra environment variables for every instance, on top of a minimal base.
    instance_environment: dict[str, str] = field(default_factory=dict)

    @property
    def store_path(self) -> Path:
        return self.data_dir / "sageport.db"

    @property
    def endpoints_dir(self) -> Path:
        return self.data_dir / "endpoints"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

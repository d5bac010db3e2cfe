"""Server settings, gathered by the CLI and passed down explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sageport.auth.keys import AccessKey, credentials_path
from sageport.auth.mode import AuthMode
from sageport.hosting.images import ImageRule
from sageport.protocol.http_limits import RequestLimits

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
    # Requests that may wait for a busy instance, beyond one per worker, before
    # callers get a retryable ServiceUnavailable instead.
    max_queued_requests: int = 100
    # Seconds an invocation waits for its endpoint's instances while they
    # start after a server restart, or while a crashed instance restarts,
    # before it gets a retryable ServiceUnavailable.
    instance_ready_wait: float = 5.0
    # The maximum number of instances one production variant may request.
    max_instances_per_variant: int = 20
    # Seconds between /ping checks of an idle instance in service.
    health_check_interval: float = 5.0
    # Which command serves which container Image; empty runs every image on the
    # built-in runtime.
    image_rules: tuple[ImageRule, ...] = ()
    # Extra environment variables for every instance, on top of a minimal base.
    instance_environment: dict[str, str] = field(default_factory=dict)
    # Origins (scheme://host:port) that the console may send test requests to
    # in place of an endpoint; empty means the console rejects every custom URL.
    allowed_test_targets: tuple[str, ...] = ()
    # "sigv4" verifies every API request's signature; "none" accepts anything
    # and is only allowed on a loopback address (see sageport.auth.mode).
    auth_mode: AuthMode = "none"
    # Whether a server that starts in "none" switches to "sigv4" once an access
    # key exists: true unless --auth was given.
    auth_follows_keys: bool = False
    # Access keys from SAGEPORT_ACCESS_KEYS, accepted besides the data
    # directory's credentials file.
    environment_keys: tuple[AccessKey, ...] = ()
    # How long a client may take to send a request, and how large its head may be.
    request_limits: RequestLimits = field(default_factory=RequestLimits)
    # Maximum open connections; uvicorn returns 503 to requests beyond it.
    max_connections: int = 1000
    # Multi-model endpoints. The first is the seconds an invocation waits for
    # its model to load before it gets ModelNotReadyException (the load goes
    # on). The others are each instance's budget of loaded models (0: no count
    # limit) and of their memory in MiB (0: half of the physical memory).
    multi_model_load_wait: float = 5.0
    multi_model_max_models: int = 0
    multi_model_memory_mib: int = 0

    @property
    def store_path(self) -> Path:
        return self.data_dir / "sageport.db"

    @property
    def endpoints_dir(self) -> Path:
        return self.data_dir / "endpoints"

    @property
    def credentials_path(self) -> Path:
        return credentials_path(self.data_dir)

    @property
    def environments_dir(self) -> Path:
        return self.data_dir / "environments"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

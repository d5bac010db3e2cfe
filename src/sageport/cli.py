"""The ``sageport`` command: a thin layer of options over the server and the data directory."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click
import platformdirs

from sageport import config
from sageport.auth import keys
from sageport.auth.keys import AccessKey
from sageport.auth.mode import AuthMode, UnsafeAuthMode, resolve_auth_mode
from sageport.hosting.images import ImageRule, ImageTableError, load_image_table
from sageport.protocol.http_limits import RequestLimits
from sageport.store.lock import DataDirectoryInUse

EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_IN_USE = 4
EXIT_CANNOT_LISTEN = 5


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("sageport", appauthor=False))


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=_default_data_dir,
    show_default="the per-user data directory, e.g. ~/.local/share/sageport",
    envvar="SAGEPORT_DATA_DIR",
    help="Directory for the store, model data and instance logs.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="sageport")
def main() -> None:
    """Sageport: host models behind the Amazon SageMaker real-time hosting API."""


@main.command()
@click.option(
    "--host", default=config.DEFAULT_HOST, envvar="SAGEPORT_HOST", help="Address to listen on."
)
@click.option(
    "--port",
    default=config.DEFAULT_PORT,
    type=click.IntRange(0, 65535),
    envvar="SAGEPORT_PORT",
    help="TCP port to listen on.",
)
@data_dir_option
@click.option(
    "--region",
    default=config.DEFAULT_REGION,
    envvar="SAGEPORT_REGION",
    help="Region for ARNs when a request carries no SigV4 credential scope.",
)
@click.option(
    "--account-id",
    default=config.DEFAULT_ACCOUNT_ID,
    envvar="SAGEPORT_ACCOUNT_ID",
    help="12-digit account id that ARNs carry.",
)
@click.option(
    "--startup-timeout",
    default=600.0,
    type=click.FloatRange(1),
    envvar="SAGEPORT_STARTUP_TIMEOUT",
    help="Seconds an instance may take to pass its first /ping before the endpoint fails, "
    "for variants without ContainerStartupHealthCheckTimeoutInSeconds.",
)
@click.option(
    "--allow-test-target",
    "allowed_test_targets",
    multiple=True,
    metavar="ORIGIN",
    envvar="SAGEPORT_ALLOW_TEST_TARGET",
    help=(
        "Origin (scheme://host[:port], http or https) that the console's custom URL may send "
        "test requests to. Repeat for several; the variable takes a space-separated list. "
        "Without it the console rejects every custom URL."
    ),
)
@click.option(
    "--image-table",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    envvar="SAGEPORT_IMAGE_TABLE",
    help="TOML file mapping container images to local commands (see docs/hosting.md).",
)
@click.option(
    "--max-queued-requests",
    default=100,
    type=click.IntRange(0),
    envvar="SAGEPORT_MAX_QUEUED_REQUESTS",
    help="Requests that may wait for a busy instance before callers get ServiceUnavailable.",
)
@click.option(
    "--instance-ready-wait",
    default=5.0,
    type=click.FloatRange(0),
    envvar="SAGEPORT_INSTANCE_READY_WAIT",
    help=(
        "Seconds an invocation waits for its endpoint's instances while they start after a "
        "server restart, or while a crashed instance restarts, before it gets "
        "ServiceUnavailable (503)."
    ),
)
@click.option(
    "--max-instances-per-variant",
    default=20,
    type=click.IntRange(1),
    envvar="SAGEPORT_MAX_INSTANCES_PER_VARIANT",
    help="Most instances (processes) one production variant may ask for.",
)
@click.option(
    "--health-check-interval",
    default=5.0,
    type=click.FloatRange(0.1),
    envvar="SAGEPORT_HEALTH_CHECK_INTERVAL",
    help="Seconds between /ping checks of each idle instance.",
)
@click.option(
    "--auth",
    "auth_mode",
    type=click.Choice(["sigv4", "none"]),
    default=None,
    envvar="SAGEPORT_AUTH",
    show_default="none while no access key exists and --host is loopback, else sigv4",
    help=(
        "sigv4 checks the AWS Signature Version 4 of every API request against the keys of "
        "'sageport keys' and SAGEPORT_ACCESS_KEYS; none accepts every request and is only "
        "allowed on a loopback address."
    ),
)
@click.option(
    "--request-header-timeout",
    default=30.0,
    type=click.FloatRange(0.1),
    envvar="SAGEPORT_REQUEST_HEADER_TIMEOUT",
    help="Seconds a client may take to send a request's headers before it gets 408.",
)
@click.option(
    "--request-body-timeout",
    default=30.0,
    type=click.FloatRange(0.1),
    envvar="SAGEPORT_REQUEST_BODY_TIMEOUT",
    help="Seconds a request body may go without new bytes before the connection is closed.",
)
@click.option(
    "--request-body-deadline",
    default=60.0,
    type=click.FloatRange(0.1),
    envvar="SAGEPORT_REQUEST_BODY_DEADLINE",
    help=(
        "Seconds from the end of a request's headers until its whole body must have arrived; "
        "a later body gets 408 and a closed connection. The default fits a 6 MiB body at "
        "about 1 Mbit/s."
    ),
)
@click.option(
    "--max-connections",
    default=1000,
    type=click.IntRange(1),
    envvar="SAGEPORT_MAX_CONNECTIONS",
    help="Open connections beyond which new requests get 503 at once.",
)
@click.option(
    "--multi-model-load-wait",
    default=5.0,
    type=click.FloatRange(0),
    envvar="SAGEPORT_MULTI_MODEL_LOAD_WAIT",
    help=(
        "Seconds an invocation of a multi-model endpoint waits for its model to load before "
        "it gets ModelNotReadyException (429); the load continues."
    ),
)
@click.option(
    "--multi-model-max-models",
    default=0,
    type=click.IntRange(0),
    envvar="SAGEPORT_MULTI_MODEL_MAX_MODELS",
    help="Models each multi-model instance keeps loaded before unloading the least recently "
    "used; 0 sets no count limit.",
)
@click.option(
    "--multi-model-memory",
    "multi_model_memory_mib",
    default=0,
    type=click.IntRange(0),
    envvar="SAGEPORT_MULTI_MODEL_MEMORY",
    help="MiB of loaded models each multi-model instance may hold before unloading the least "
    "recently used; 0 means half of this machine's physical memory.",
)
@click.option(
    "--log-level",
    default="info",
    envvar="SAGEPORT_LOG_LEVEL",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Server log level.",
)
def serve(
    host: str,
    port: int,
    data_dir: Path,
    region: str,
    account_id: str,
    startup_timeout: float,
    allowed_test_targets: tuple[str, ...],
    max_queued_requests: int,
    instance_ready_wait: float,
    max_instances_per_variant: int,
    health_check_interval: float,
    image_table: Path | None,
    auth_mode: AuthMode | None,
    request_header_timeout: float,
    request_body_timeout: float,
    request_body_deadline: float,
    max_connections: int,
    multi_model_load_wait: float,
    multi_model_max_models: int,
    multi_model_memory_mib: int,
    log_level: str,
) -> None:
    """Run the server in the foreground until SIGINT or SIGTERM."""
    from sageport.server import CannotListen, run

    if not (len(account_id) == 12 and account_id.isdigit()):
        raise click.BadParameter("must be 12 digits, e.g. 123456789012", param_hint="--account-id")
    origins = _test_target_origins(allowed_test_targets)
    resolved_data_dir = data_dir.expanduser().resolve()
    environment_keys = _environment_keys()
    resolved_auth_mode = _auth_mode(auth_mode, host, resolved_data_dir, environment_keys)
    settings = config.Settings(
        data_dir=resolved_data_dir,
        host=host,
        port=port,
        region=region,
        account_id=account_id,
        startup_timeout=startup_timeout,
        allowed_test_targets=origins,
        max_queued_requests=max_queued_requests,
        instance_ready_wait=instance_ready_wait,
        max_instances_per_variant=max_instances_per_variant,
        health_check_interval=health_check_interval,
        image_rules=_image_rules(image_table),
        auth_mode=resolved_auth_mode,
        auth_follows_keys=auth_mode is None,
        environment_keys=environment_keys,
        request_limits=RequestLimits(
            header_timeout=request_header_timeout,
            body_idle_timeout=request_body_timeout,
            body_timeout=request_body_deadline,
        ),
        max_connections=max_connections,
        multi_model_load_wait=multi_model_load_wait,
        multi_model_max_models=multi_model_max_models,
        multi_model_memory_mib=multi_model_memory_mib,
    )
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        run(settings, log_level)
    except DataDirectoryInUse as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_IN_USE)
    except CannotListen as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(EXIT_CANNOT_LISTEN)


# Every option of serve reads an environment variable; --help names it.
for _option in serve.params:
    if isinstance(_option, click.Option) and _option.envvar:
        _option.show_envvar = True


def _environment_keys() -> tuple[AccessKey, ...]:
    value = os.environ.get(keys.ENVIRONMENT_VARIABLE, "")
    try:
        return tuple(keys.parse_environment_keys(value))
    except keys.KeyFileError as exc:
        raise click.UsageError(str(exc)) from None


def _auth_mode(
    requested: AuthMode | None, host: str, data_dir: Path, environment_keys: tuple[AccessKey, ...]
) -> AuthMode:
    try:
        file_keys = keys.load_keys(keys.credentials_path(data_dir))
        return resolve_auth_mode(requested, host, len(file_keys) + len(environment_keys))
    except (keys.KeyFileError, UnsafeAuthMode) as exc:
        raise click.UsageError(str(exc)) from None


def _image_rules(path: Path | None) -> tuple[ImageRule, ...]:
    if path is None:
        return ()
    try:
        return load_image_table(path)
    except ImageTableError as exc:
        raise click.BadParameter(str(exc), param_hint="--image-table") from None


def _test_target_origins(values: tuple[str, ...]) -> tuple[str, ...]:
    from sageport.console.targets import InvalidOrigin, normalize_origin

    try:
        return tuple(normalize_origin(value) for value in values)
    except InvalidOrigin as exc:
        raise click.BadParameter(str(exc), param_hint="--allow-test-target") from None


@main.command()
@click.argument("endpoint_name")
@data_dir_option
@click.option(
    "--tail",
    type=click.IntRange(1),
    default=None,
    help="Print only the last N lines of each instance.",
)
def logs(endpoint_name: str, data_dir: Path, tail: int | None) -> None:
    """Print the output of every instance of an endpoint, oldest first."""
    from sageport.telemetry.logs import InvalidEndpointName, instance_logs

    try:
        files = instance_logs(data_dir.expanduser() / "logs", endpoint_name)
    except InvalidEndpointName as exc:
        raise click.BadParameter(str(exc), param_hint="ENDPOINT_NAME") from None
    if not files:
        click.echo(
            f"No logs for endpoint {endpoint_name} in {data_dir}. Check the name and --data-dir.",
            err=True,
        )
        sys.exit(EXIT_NOT_FOUND)
    for log in files:
        click.echo(f"==> {log.variant}/{log.instance_id} <==")
        lines = log.path.read_text(errors="replace").splitlines()
        for line in lines[-tail:] if tail else lines:
            click.echo(line)


@main.group(name="keys")
def keys_group() -> None:
    """Manage the access keys that --auth sigv4 accepts (the data directory's credentials.json).

    A running server rereads the file, so created and deleted keys take effect
    within about a second.
    """


@keys_group.command("create")
@data_dir_option
@click.option(
    "--user-name", default="sageport", help="Name to record with the key, e.g. who it is for."
)
@click.option(
    "--session-token",
    is_flag=True,
    help="Also make a session token that every request signed with this key must send.",
)
def create_key(data_dir: Path, user_name: str, session_token: bool) -> None:
    """Create an access key and print it, secret included, as JSON.

    The output has the shape of 'aws iam create-access-key'. The secret is
    shown only here; store it in your AWS credentials or environment.
    """
    path = keys.credentials_path(data_dir.expanduser())
    try:
        first = not keys.load_keys(path)
        key = keys.create_key(path, user_name, with_session_token=session_token)
    except keys.KeyFileError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(json.dumps({"AccessKey": key.to_json()}, indent=4))
    click.echo(_running_server_note(path, first), err=True)


def _running_server_note(path: Path, first: bool) -> str:
    if not first:
        return f"A running 'sageport serve' that uses {path} accepts this key within a second."
    return (
        f"This is the first access key in {path}. A running 'sageport serve' on this data "
        "directory that was started without --auth switches to sigv4 within a second, and "
        "rejects unsigned requests from then on; deleting the key later does not switch it "
        "back. A server started with --auth none keeps accepting every request until it "
        "is restarted without that option."
    )


@keys_group.command("list")
@data_dir_option
def list_keys(data_dir: Path) -> None:
    """Print the access keys of the credentials file as JSON, without secrets."""
    try:
        stored = keys.load_keys(keys.credentials_path(data_dir.expanduser()))
    except keys.KeyFileError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(json.dumps({"AccessKeyMetadata": [key.metadata() for key in stored]}, indent=4))


@keys_group.command("delete")
@click.argument("access_key_id")
@data_dir_option
def delete_key(access_key_id: str, data_dir: Path) -> None:
    """Delete an access key; requests signed with it fail within about a second."""
    path = keys.credentials_path(data_dir.expanduser())
    try:
        deleted = keys.delete_key(path, access_key_id)
    except keys.KeyFileError as exc:
        raise click.UsageError(str(exc)) from None
    if not deleted:
        click.echo(f"No access key {access_key_id} in {path}. Run 'sageport keys list'.", err=True)
        sys.exit(EXIT_NOT_FOUND)

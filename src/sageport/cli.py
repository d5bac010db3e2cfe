"""The ``sageport`` command: a thin layer of options over the server and the data directory."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
import platformdirs

from sageport import config

EXIT_USAGE = 2
EXIT_NOT_FOUND = 3


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
    help="Seconds an instance may take to pass its first /ping before the endpoint fails.",
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
    log_level: str,
) -> None:
    """Run the server in the foreground until SIGINT or SIGTERM."""
    from sageport.server import run

    if not (len(account_id) == 12 and account_id.isdigit()):
        raise click.BadParameter("must be 12 digits, e.g. 123456789012", param_hint="--account-id")
    settings = config.Settings(
        data_dir=data_dir.expanduser().resolve(),
        host=host,
        port=port,
        region=region,
        account_id=account_id,
        startup_timeout=startup_timeout,
    )
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    run(settings, log_level)


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
    from sageport.telemetry.logs import instance_logs

    files = instance_logs(data_dir.expanduser() / "logs", endpoint_name)
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

"""Soak-test Sageport: mixed load on several endpoints while instances are killed with SIGKILL.

    uv run python benchmarks/soak.py [--seconds 60] [--clients 8] [--kill-every 5]

Starts ``sageport serve`` (pinned to CPU 0) and deploys three endpoints: the
iris example with 2 instances, a slow echo model that streams the request
body back in chunks (1 instance, 2 workers), and the iris example in two
production variants. A bounded pool of client threads, each with its own
boto3 client that never retries, sends InvokeEndpoint with JSON and CSV
bodies and InvokeEndpointWithResponseStream, and checks every response body.
Meanwhile a killer thread sends SIGKILL to the process group of a random
instance (a ``python -m sageport.runtime`` child of the server) every
``--kill-every`` seconds.

At the end the script prints requests sent, succeeded, failed by cause (the
AWS error code, or a connection error), lost and wrong. A lost request got
no response at all, or was still waiting past the client timeout. A wrong
one succeeded with a body the model does not send. For every kill it prints
the time until a request sent after the kill succeeded on that endpoint and
on that variant. It exits with status 1 when any request was lost or wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib
import psutil
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

# Seconds a client waits for a response (per socket read) before giving up.
CLIENT_TIMEOUT_SECONDS = 10.0
# Extra seconds after the run before a client still waiting is counted as hung.
JOIN_GRACE_SECONDS = 5.0
SPECIES = ("setosa", "versicolor", "virginica")

IRIS = "soak-iris"
ECHO = "soak-echo"
SPLIT = "soak-split"

ECHO_INFERENCE = '''\
"""A slow echo model: the response is the request body, sent in chunks."""

import time

CHUNKS = 4
CHUNK_DELAY_SECONDS = 0.02


def model_fn(model_dir):
    return None


def transform_fn(model, data, content_type, accept):
    body = data.encode() if isinstance(data, str) else bytes(data)
    size = max(1, -(-len(body) // CHUNKS))

    def chunks():
        for start in range(0, len(body), size):
            time.sleep(CHUNK_DELAY_SECONDS)
            yield body[start : start + size]

    return chunks(), content_type
'''


# --- Deploying ----------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One production variant to deploy: its name, model data and instance settings."""

    name: str
    model_data: Path
    instances: int
    environment: dict[str, str] = field(default_factory=dict)


def endpoint_plan(iris_archive: Path, echo_dir: Path) -> dict[str, list[Variant]]:
    return {
        IRIS: [Variant("AllTraffic", iris_archive, 2)],
        ECHO: [Variant("AllTraffic", echo_dir, 1, {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})],
        SPLIT: [Variant("A", iris_archive, 1), Variant("B", iris_archive, 1)],
    }


def write_echo_model(work_dir: Path) -> Path:
    model_dir = work_dir / "echo-model"
    (model_dir / "code").mkdir(parents=True, exist_ok=True)
    (model_dir / "code" / "inference.py").write_text(ECHO_INFERENCE)
    return model_dir


def deploy(client: Any, endpoint: str, variants: list[Variant]) -> None:
    """Create one model per variant, the endpoint config and the endpoint, without waiting."""
    production_variants = []
    for variant in variants:
        model_name = f"{endpoint}-{variant.name}"
        client.create_model(
            ModelName=model_name,
            PrimaryContainer={
                "Image": "sageport/sklearn",
                "ModelDataUrl": f"file://{variant.model_data}",
                "Environment": variant.environment,
            },
            ExecutionRoleArn="arn:aws:iam::123456789012:role/sageport",
        )
        production_variants.append(
            {
                "VariantName": variant.name,
                "ModelName": model_name,
                "InitialInstanceCount": variant.instances,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": 1.0,
            }
        )
    client.create_endpoint_config(
        EndpointConfigName=endpoint, ProductionVariants=production_variants
    )
    client.create_endpoint(EndpointName=endpoint, EndpointConfigName=endpoint)


# --- Requests -------------------------------------------------------------------


# The production variant that served a call, and the response body.
Response = tuple[str, bytes]


@dataclass(frozen=True)
class Request:
    """One call to make: the endpoint, a function that makes it, and checks of the response."""

    endpoint: str
    send: Callable[[Any], Response]
    expected: Callable[[bytes], bool]
    target_variant: str | None = None


def is_species_list(response_body: bytes, count: int) -> bool:
    try:
        names = json.loads(response_body)
    except ValueError:
        return False
    return isinstance(names, list) and len(names) == count and set(names) <= set(SPECIES)


def iris_json(rng: random.Random, rows: list[list[float]], endpoint: str) -> Request:
    count = rng.randint(1, 20)
    body = json.dumps(rows[:count])
    target = rng.choice([None, "A", "B"]) if endpoint == SPLIT else None

    def send(client: Any) -> Response:
        arguments = {"EndpointName": endpoint, "ContentType": "application/json", "Body": body}
        if target is not None:
            arguments["TargetVariant"] = target
        response = client.invoke_endpoint(**arguments)
        return str(response["InvokedProductionVariant"]), bytes(response["Body"].read())

    return Request(
        endpoint, send, lambda response_body: is_species_list(response_body, count), target
    )


def iris_csv(rng: random.Random, rows: list[list[float]]) -> Request:
    count = rng.randint(1, 20)
    body = "\n".join(",".join(str(value) for value in row) for row in rows[:count])

    def send(client: Any) -> Response:
        response = client.invoke_endpoint(
            EndpointName=IRIS, ContentType="text/csv", Accept="application/json", Body=body
        )
        return str(response["InvokedProductionVariant"]), bytes(response["Body"].read())

    return Request(IRIS, send, lambda response_body: is_species_list(response_body, count))


def echo(rng: random.Random, streamed: bool) -> Request:
    body = json.dumps({"request": rng.getrandbits(64), "padding": "x" * rng.randint(1, 2000)})
    expected = body.encode()

    def send_whole(client: Any) -> Response:
        response = client.invoke_endpoint(
            EndpointName=ECHO, ContentType="application/json", Body=body
        )
        return str(response["InvokedProductionVariant"]), bytes(response["Body"].read())

    def send_streamed(client: Any) -> Response:
        response = client.invoke_endpoint_with_response_stream(
            EndpointName=ECHO, ContentType="application/json", Body=body
        )
        # An error event (ModelStreamError and the like) raises EventStreamError here.
        parts = [event["PayloadPart"]["Bytes"] for event in response["Body"]]
        return str(response["InvokedProductionVariant"]), b"".join(parts)

    return Request(ECHO, send_streamed if streamed else send_whole, expected.__eq__)


def pick_request(rng: random.Random, rows: list[list[float]]) -> Request:
    """Choose the next call: 30% iris JSON, 15% iris CSV, 25% split, 15% echo, 15% streamed."""
    draw = rng.random()
    if draw < 0.30:
        return iris_json(rng, rows, IRIS)
    if draw < 0.45:
        return iris_csv(rng, rows)
    if draw < 0.70:
        return iris_json(rng, rows, SPLIT)
    return echo(rng, streamed=draw >= 0.85)


# --- Outcomes -------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """The outcome of one request, where ``kind`` is succeeded, failed, lost or wrong."""

    endpoint: str
    kind: str
    cause: str
    started: float
    finished: float
    # The variant that served the request, or "" when it failed.
    variant: str = ""


def classify(error: Exception) -> tuple[str, str]:
    """Return the outcome kind and cause for an exception raised by a call."""
    if isinstance(error, ClientError):
        details = error.response
        code = str(details.get("Error", {}).get("Code", "unknown"))
        if "OriginalStatusCode" in details:
            code += f" (OriginalStatusCode {details['OriginalStatusCode']})"
        return "failed", code
    if isinstance(error, EndpointConnectionError | ConnectTimeoutError):
        return "failed", f"connection error ({type(error).__name__})"
    if isinstance(error, ReadTimeoutError):
        return "lost", f"no response within {CLIENT_TIMEOUT_SECONDS:g} s"
    if isinstance(error, ConnectionClosedError):
        return "lost", "connection closed without a response"
    return "lost", f"{type(error).__name__}: {error}"


def call(client: Any, request: Request) -> Outcome:
    started = time.monotonic()
    try:
        variant, response_body = request.send(client)
    except Exception as error:  # noqa: BLE001 - every failure is counted by its cause
        kind, cause = classify(error)
        return Outcome(request.endpoint, kind, cause, started, time.monotonic())
    finished = time.monotonic()

    if request.target_variant is not None and variant != request.target_variant:
        cause = f"served by variant {variant}, TargetVariant was {request.target_variant}"
        return Outcome(request.endpoint, "wrong", cause, started, finished, variant)
    if not request.expected(response_body):
        cause = f"unexpected body {response_body[:80]!r}"
        return Outcome(request.endpoint, "wrong", cause, started, finished, variant)
    return Outcome(request.endpoint, "succeeded", "", started, finished, variant)


@dataclass
class Tally:
    """Outcomes so far, and the requests still waiting, shared by the client threads."""

    outcomes: list[Outcome] = field(default_factory=list)
    in_flight: dict[int, tuple[str, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def client_loop(url: str, seed: int, deadline: float, tally: Tally) -> None:
    """Send requests one after another until ``deadline``, recording each outcome."""
    rng = random.Random(seed)
    rows = benchlib.payload_rows(150)
    client = benchlib.sagemaker_runtime_client(url, CLIENT_TIMEOUT_SECONDS)
    me = threading.get_ident()
    while time.monotonic() < deadline:
        request = pick_request(rng, rows)
        with tally.lock:
            tally.in_flight[me] = (request.endpoint, time.monotonic())
        outcome = call(client, request)
        with tally.lock:
            del tally.in_flight[me]
            tally.outcomes.append(outcome)


# --- Killing instances -------------------------------------------------------------


@dataclass(frozen=True)
class RunningInstance:
    """An instance process the server started, with the endpoint and variant it serves."""

    pid: int
    endpoint: str
    variant: str


@dataclass
class Kill:
    """One SIGKILL: when, which instance, and when the server had started a new one."""

    at: float
    instance: RunningInstance
    replaced_after: float | None = None


def running_instances(server: benchlib.Started, data_dir: Path) -> list[RunningInstance]:
    """Find the server's instance processes and read the endpoint from their --model-dir."""
    endpoints_dir = data_dir.resolve() / "endpoints"
    found = []
    for tree in benchlib.instance_processes(server):
        try:
            arguments = tree[0].cmdline()
        except psutil.NoSuchProcess:
            continue
        if "--model-dir" not in arguments:
            continue
        model_dir = Path(arguments[arguments.index("--model-dir") + 1]).resolve()
        # The model directory is <data-dir>/endpoints/<endpoint>/<deployment>/<variant>.
        parts = model_dir.relative_to(endpoints_dir).parts
        found.append(RunningInstance(tree[0].pid, parts[0], parts[-1]))
    return found


def kill_instance(instance: RunningInstance) -> None:
    """SIGKILL the instance's process group, which contains its supervisor and workers."""
    group = os.getpgid(instance.pid)
    # The server starts every instance in a session of its own. Any other group
    # would be the server's or ours, so raise rather than kill it.
    if group != instance.pid:
        raise RuntimeError(f"instance {instance.pid} is in process group {group}, not its own")
    os.killpg(group, signal.SIGKILL)


def wait_for_replacement(
    server: benchlib.Started, data_dir: Path, kill: Kill, deadline: float
) -> None:
    """Record when a new instance process for the killed instance's variant appears."""
    before = {
        instance.pid
        for instance in running_instances(server, data_dir)
        if instance.pid != kill.instance.pid
    }
    while time.monotonic() < deadline:
        for instance in running_instances(server, data_dir):
            same_variant = (instance.endpoint, instance.variant) == (
                kill.instance.endpoint,
                kill.instance.variant,
            )
            if same_variant and instance.pid not in before and instance.pid != kill.instance.pid:
                kill.replaced_after = time.monotonic() - kill.at
                return
        time.sleep(0.05)


def killer_loop(
    server: benchlib.Started,
    data_dir: Path,
    every: float,
    seed: int,
    deadline: float,
    kills: list[Kill],
) -> None:
    """Kill a random instance every ``every`` seconds until ``deadline``."""
    rng = random.Random(seed)
    next_kill = time.monotonic() + every
    while next_kill < deadline:
        time.sleep(max(0.0, next_kill - time.monotonic()))
        instances = running_instances(server, data_dir)
        if instances:
            victim = rng.choice(instances)
            kill = Kill(time.monotonic(), victim)
            kill_instance(victim)
            kills.append(kill)
            wait_for_replacement(server, data_dir, kill, min(deadline, kill.at + every))
        next_kill += every


# --- Reporting ------------------------------------------------------------------------


def recovery_seconds(kill: Kill, outcomes: list[Outcome], *, same_variant: bool) -> float | None:
    """Return seconds from the kill until a request sent after it succeeded.

    The request counts when it went to the killed instance's endpoint, and with
    ``same_variant`` only when that instance's variant served it.
    """
    finishes = [
        outcome.finished
        for outcome in outcomes
        if outcome.kind == "succeeded"
        and outcome.endpoint == kill.instance.endpoint
        and outcome.started >= kill.at
        and (not same_variant or outcome.variant == kill.instance.variant)
    ]
    return min(finishes) - kill.at if finishes else None


def print_outcomes(outcomes: list[Outcome], hung: list[tuple[str, float]], seconds: float) -> None:
    counts = Counter(outcome.kind for outcome in outcomes)
    sent = len(outcomes) + len(hung)
    print(f"\nRequests sent:  {sent} in {seconds:g} s ({sent / seconds:.0f}/s)")
    print(f"  succeeded:    {counts['succeeded']}")
    for kind in ("failed", "lost", "wrong"):
        total = counts[kind] + (len(hung) if kind == "lost" else 0)
        print(f"  {kind + ':':<13} {total}")
        causes = Counter(outcome.cause for outcome in outcomes if outcome.kind == kind)
        if kind == "lost" and hung:
            causes[f"still waiting {JOIN_GRACE_SECONDS:g} s after the run ended"] += len(hung)
        for cause, count in causes.most_common():
            print(f"    {count:>6}  {cause}")

    print("\nBy endpoint (succeeded / sent):")
    for endpoint in (IRIS, ECHO, SPLIT):
        mine = [outcome for outcome in outcomes if outcome.endpoint == endpoint]
        succeeded = sum(outcome.kind == "succeeded" for outcome in mine)
        print(f"  {endpoint:<11} {succeeded} / {len(mine)}")


def print_kills(kills: list[Kill], outcomes: list[Outcome], run_started: float) -> None:
    print(f"\nKills: {len(kills)} (SIGKILL to an instance's process group)")
    print("Seconds from the kill until a request sent after it succeeded on the endpoint,")
    print("on the killed instance's variant, and until the server had started a new instance:")
    print(
        f"{'at s':>6}  {'endpoint':<11} {'variant':<10} {'pid':>7} "
        f"{'endpoint s':>10} {'variant s':>9} {'restart s':>9}"
    )
    recoveries: dict[bool, list[float]] = {False: [], True: []}
    for kill in kills:
        cells = []
        for same_variant in (False, True):
            recovered = recovery_seconds(kill, outcomes, same_variant=same_variant)
            if recovered is not None:
                recoveries[same_variant].append(recovered)
            cells.append("never" if recovered is None else f"{recovered:.3f}")
        replaced = "-" if kill.replaced_after is None else f"{kill.replaced_after:.3f}"
        print(
            f"{kill.at - run_started:>6.1f}  {kill.instance.endpoint:<11} "
            f"{kill.instance.variant:<10} {kill.instance.pid:>7} "
            f"{cells[0]:>10} {cells[1]:>9} {replaced:>9}"
        )

    for same_variant, label in ((False, "endpoint"), (True, "variant")):
        times = recoveries[same_variant]
        if times:
            print(
                f"Time to recover ({label}): median {statistics.median(times):.3f} s, "
                f"max {max(times):.3f} s, {len(kills) - len(times)} never recovered"
            )


def print_fleet(server: benchlib.Started, data_dir: Path, expected: int, client: Any) -> None:
    instances = running_instances(server, data_dir)
    print(f"\nInstances running at the end: {len(instances)} of {expected}")
    for endpoint in (IRIS, ECHO, SPLIT):
        status = client.describe_endpoint(EndpointName=endpoint)["EndpointStatus"]
        print(f"  {endpoint:<11} {status}")


# --- Main -------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--clients", type=int, default=8, help="client threads sending requests")
    parser.add_argument(
        "--kill-every", type=float, default=5.0, help="seconds between instance kills"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed for the request mix and kills")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    benchlib.require_tools("taskset")
    run_dir = benchlib.CACHE_DIR / "runs" / time.strftime("soak-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True)
    print(f"Run directory: {run_dir}")
    model = benchlib.train_model(run_dir)
    plan = endpoint_plan(model.archive, write_echo_model(run_dir))

    data_dir = run_dir / "sageport-data"
    server, url = benchlib.start_sageport(data_dir, run_dir)
    try:
        control = benchlib.sagemaker_client(url)
        for endpoint, variants in plan.items():
            deploy(control, endpoint, variants)
        for endpoint in plan:
            benchlib.wait_in_service(control, endpoint, poll_seconds=0.05)
        expected = sum(variant.instances for variants in plan.values() for variant in variants)
        print(
            f"Deployed {', '.join(plan)}: {expected} instances. Load for {args.seconds:g} s, "
            f"{args.clients} clients, a kill every {args.kill_every:g} s",
            flush=True,
        )
        lost_or_wrong = soak(server, url, data_dir, args)
        print_fleet(server, data_dir, expected, control)
    finally:
        server.stop()
    print(f"\nServer log: {server.log_path}")
    sys.exit(1 if lost_or_wrong else 0)


def soak(server: benchlib.Started, url: str, data_dir: Path, args: argparse.Namespace) -> int:
    """Run the clients and the killer, print the report, and return lost plus wrong requests."""
    tally = Tally()
    kills: list[Kill] = []
    started = time.monotonic()
    deadline = started + args.seconds
    clients = [
        threading.Thread(
            target=client_loop, args=(url, args.seed * 1000 + index, deadline, tally), daemon=True
        )
        for index in range(args.clients)
    ]
    killer = threading.Thread(
        target=killer_loop,
        args=(server, data_dir, args.kill_every, args.seed, deadline, kills),
        daemon=True,
    )
    for thread in [*clients, killer]:
        thread.start()

    # A client still inside a call this long after the deadline has hung past its timeout.
    join_deadline = deadline + CLIENT_TIMEOUT_SECONDS + JOIN_GRACE_SECONDS
    for thread in [*clients, killer]:
        thread.join(max(0.0, join_deadline - time.monotonic()))
    with tally.lock:
        outcomes = list(tally.outcomes)
        hung = list(tally.in_flight.values())

    print_outcomes(outcomes, hung, args.seconds)
    print_kills(kills, outcomes, started)
    return len(hung) + sum(outcome.kind in ("lost", "wrong") for outcome in outcomes)


if __name__ == "__main__":
    main()

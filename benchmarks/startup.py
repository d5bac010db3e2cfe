"""Time CreateEndpoint to InService for the iris example and measure each instance's memory.

    uv run python benchmarks/startup.py [--runs 5]

One ``sageport serve`` (pinned to CPU 0) gets ``--runs`` endpoints one after
another. For each, boto3 calls CreateEndpoint and polls DescribeEndpoint every
10 ms until the endpoint is InService. The script then sums the unique (USS)
and proportional (PSS) memory, from psutil, of the instance's processes: the
runtime's master and its workers. It deletes the endpoint before the next run
and prints every run, the medians, and the targets next to them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import benchlib
from botocore.exceptions import ClientError

POLL_SECONDS = 0.010
TARGET_SECONDS = 2.0
TARGET_USS_MB = 60.0
MB = 1024 * 1024


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5, help="endpoints to create, one at a time")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    benchlib.require_tools("taskset")
    run_dir = benchlib.CACHE_DIR / "runs" / time.strftime("startup-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True)
    print(f"Run directory: {run_dir}")
    model = benchlib.train_model(run_dir)

    server, url = benchlib.start_sageport(run_dir / "sageport-data", run_dir)
    try:
        client = benchlib.sagemaker_client(url)
        durations, memories, proportional = [], [], []
        print(f"{'run':>3} {'InService s':>11} {'USS MB':>7} {'PSS MB':>7}  USS (master + workers)")
        for run in range(1, args.runs + 1):
            seconds, uss, pss = create_and_measure(client, server, f"iris-startup-{run}", model)
            durations.append(seconds)
            memories.append(sum(uss))
            proportional.append(sum(pss))
            parts = " + ".join(f"{value / MB:.1f}" for value in uss)
            print(
                f"{run:>3} {seconds:>11.3f} {sum(uss) / MB:>7.1f} {sum(pss) / MB:>7.1f}  ({parts})",
                flush=True,
            )
    finally:
        server.stop()

    median_seconds = statistics.median(durations)
    median_mb = statistics.median(memories) / MB
    print(f"\nMedian of {args.runs}: {median_seconds:.3f} s to InService, {median_mb:.1f} MB USS")
    print(
        f"  CreateEndpoint to InService: {median_seconds:.3f} s (target <= {TARGET_SECONDS:g} s) "
        f"{'PASS' if median_seconds <= TARGET_SECONDS else 'FAIL'}"
    )
    print(
        f"  USS per instance: {median_mb:.1f} MB (target <= {TARGET_USS_MB:g} MB) "
        f"{'PASS' if median_mb <= TARGET_USS_MB else 'FAIL'}"
    )
    # USS leaves out every page two processes share, and an instance's worker
    # shares the preloaded libraries with its own supervisor. PSS splits shared
    # pages between their sharers, so its sum is what the instance really adds.
    median_pss = statistics.median(proportional) / MB
    print(
        f"  PSS per instance: {median_pss:.1f} MB, the memory a new instance adds "
        f"(target <= {TARGET_USS_MB:g} MB) {'PASS' if median_pss <= TARGET_USS_MB else 'FAIL'}"
    )


def create_and_measure(
    client: Any, server: benchlib.Started, name: str, model: benchlib.ModelFiles
) -> tuple[float, list[int], list[int]]:
    """Create endpoint ``name``, time it to InService, measure its USS and PSS, then delete it."""
    started = time.perf_counter()
    benchlib.create_endpoint(client, name, model.archive)
    benchlib.wait_in_service(client, name, POLL_SECONDS)
    seconds = time.perf_counter() - started

    # Let the runtime settle, so the USS is the steady state and not start-up garbage.
    time.sleep(0.5)
    instances = benchlib.instance_processes(server)
    if len(instances) != 1:
        raise RuntimeError(f"expected 1 instance process tree, found {len(instances)}")
    memory = [process.memory_full_info() for process in instances[0]]
    uss = [int(info.uss) for info in memory]
    pss = [int(info.pss) for info in memory]

    delete_endpoint(client, name)
    return seconds, uss, pss


def delete_endpoint(client: Any, name: str) -> None:
    """Delete the endpoint, its config and its model, and wait until the endpoint is gone."""
    client.delete_endpoint(EndpointName=name)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            client.describe_endpoint(EndpointName=name)
        except ClientError:
            break
        time.sleep(0.05)
    client.delete_endpoint_config(EndpointConfigName=name)
    client.delete_model(ModelName=name)


if __name__ == "__main__":
    main()

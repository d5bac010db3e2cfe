"""Measure the CPU time per InvokeEndpoint request, split between the front door and the instance.

    uv run python benchmarks/cpu_split.py [--runs 5] [--seconds 6] [--connections 16] [--rows 1]

Starts ``sageport serve`` pinned to CPU 0, deploys the iris example and loads
it with wrk (pinned to CPU 1) several times in a row. For each run it prints
the user plus system CPU time (psutil) that the front door process and the
instance's processes used, divided by the requests served. CPU time per
request moves far less than req/s when other programs share the machine, so
this is the figure to compare before and after a change to the hot path. No
profiler is attached, unlike ``profile_sageport.py``.
"""

from __future__ import annotations

import argparse
import statistics

import benchlib
import psutil
import servers


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5, help="number of measured wrk runs")
    parser.add_argument(
        "--seconds", type=int, default=6, help="length of each measured run, in seconds"
    )
    parser.add_argument("--connections", type=int, default=16, help="number of wrk connections")
    parser.add_argument("--rows", type=int, default=1, help="iris rows in each request body")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    benchlib.require_tools("wrk", "taskset")
    run_dir = benchlib.new_run_dir("cpu-split")
    server, target = servers.deployed_sageport(run_dir, args.rows)
    try:
        measure(args, server, target)
    finally:
        server.stop()


def measure(
    args: argparse.Namespace, server: servers.RunningServer, target: benchlib.Target
) -> None:
    front_door = psutil.Process(server.processes.pid)
    instance = benchlib.instance_processes(server.processes)[0]
    benchlib.run_wrk(target, args.connections, 2)

    print(f"{args.connections} connections, {args.rows} row(s), {args.seconds} s per run")
    print("run  requests   req/s  front door µs/r (user+sys)  instance µs/r (user+sys)  total µs/r")
    front_door_figures: list[float] = []
    instance_figures: list[float] = []
    for run in range(1, args.runs + 1):
        front_door_before = _cpu_seconds([front_door])
        instance_before = _cpu_seconds(instance)
        result = benchlib.run_wrk(target, args.connections, args.seconds)
        front_door_user, front_door_system = (
            (after - before) * 1e6 / result.requests
            for after, before in zip(_cpu_seconds([front_door]), front_door_before, strict=True)
        )
        instance_user, instance_system = (
            (after - before) * 1e6 / result.requests
            for after, before in zip(_cpu_seconds(instance), instance_before, strict=True)
        )
        front_door_us = front_door_user + front_door_system
        instance_us = instance_user + instance_system
        front_door_figures.append(front_door_us)
        instance_figures.append(instance_us)
        errors = f"  errors {result.errors}" if result.error_count else ""
        print(
            f"{run:3d}  {result.requests:8d}  {result.requests_per_second:6.0f}  "
            f"{front_door_us:8.0f} ({front_door_user:.0f}+{front_door_system:.0f})".ljust(48)
            + f"{instance_us:8.0f} ({instance_user:.0f}+{instance_system:.0f})".ljust(26)
            + f"{front_door_us + instance_us:10.0f}{errors}"
        )

    front_door_median = statistics.median(front_door_figures)
    instance_median = statistics.median(instance_figures)
    print(
        f"median front door {front_door_median:.0f} µs/r, instance {instance_median:.0f} µs/r, "
        f"front door / instance {front_door_median / instance_median:.2f}"
    )


def _cpu_seconds(processes: list[psutil.Process]) -> tuple[float, float]:
    """Return the user and the system CPU seconds that ``processes`` used so far."""
    user = system = 0.0
    for process in processes:
        times = process.cpu_times()
        user += times.user
        system += times.system
    return user, system


if __name__ == "__main__":
    main()

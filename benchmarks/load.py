"""Load-test Sageport's InvokeEndpoint path against its own runtime and against peer servers.

    uv run python benchmarks/load.py [--quick] [--servers instance,sageport,...]

Every server serves the same scikit-learn model (the iris example) and gets
the same rows (1 and 100 per request) at 1, 16 and 64 keep-alive connections
from wrk. Each server, with all its processes, is pinned to CPU 0 and wrk to
CPU 1. The script prints requests/s, p50/p99 latency, errors and server CPU
time per request for every cell, then the ratios that the performance
targets are stated in. Results go to ``results.json`` in the run directory,
and a latency plot to ``latency.png`` when matplotlib installs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import benchlib
import servers
from benchlib import Target

CONNECTIONS = (1, 16, 64)
ROW_COUNTS = (1, 100)
ORDER = ("instance", "sageport", *servers.PEERS)

# The targets, as ratios: Sageport's req/s at 16 connections against the
# fastest peer's and against its own runtime called directly, and the p50
# latency the front door may add at 1 connection.
TARGET_PEER_RATIO = 2.0
TARGET_FLOOR_RATIO = 0.6
TARGET_ADDED_P50_US = 300.0


@dataclass
class Cell:
    """One measurement: a server, a payload size and a number of connections."""

    server: str
    rows: int
    connections: int
    requests_per_second: float
    p50_us: float
    p99_us: float
    errors: dict[str, int]
    cpu_us_per_request: float


@dataclass
class ServerReport:
    """All cells of one server, or why it has none."""

    name: str
    cells: list[Cell]
    problem: str | None = None
    affinities: list[list[int]] | None = None
    processes: int = 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--quick", action="store_true", help="2 s per cell and 1 s warm-ups instead of 5 s and 2 s"
    )
    parser.add_argument(
        "--seconds", type=float, help="seconds of measured load per cell (overrides --quick)"
    )
    parser.add_argument(
        "--servers",
        default=",".join(ORDER),
        help=f"comma-separated servers to measure, from: {', '.join(ORDER)}",
    )
    parser.add_argument(
        "--run-dir",
        type=Path,
        help="directory for logs, payloads and results.json (default: a new one under "
        f"{benchlib.CACHE_DIR / 'runs'})",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip latency.png")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    benchlib.require_tools("wrk", "taskset")
    names = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = set(names) - set(ORDER)
    if unknown:
        raise SystemExit(f"unknown servers {sorted(unknown)}; choose from {', '.join(ORDER)}")
    seconds = args.seconds or (2.0 if args.quick else 5.0)
    warmup = 1.0 if args.quick else 2.0

    run_dir = args.run_dir or benchlib.CACHE_DIR / "runs" / time.strftime("load-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"Run directory: {run_dir}")
    model = benchlib.train_model(run_dir)
    payloads = {count: benchlib.payload_rows(count) for count in ROW_COUNTS}

    reports = [measure_server(name, model, payloads, run_dir, seconds, warmup) for name in names]

    print_table(reports, seconds)
    print_ratios(reports)
    results_path = run_dir / "results.json"
    results_path.write_text(json.dumps([asdict(report) for report in reports], indent=2))
    print(f"\nResults: {results_path}")
    if not args.no_plot:
        plot(results_path, run_dir / "latency.png")


# --- Measuring -------------------------------------------------------------------------------


def measure_server(
    name: str,
    model: benchlib.ModelFiles,
    payloads: dict[int, servers.Rows],
    run_dir: Path,
    seconds: float,
    warmup: float,
) -> ServerReport:
    """Start one server, measure every cell and stop it; a failure becomes the report's problem."""
    print(f"\n== {name}", flush=True)
    try:
        server = servers.STARTERS[name](model, run_dir)
    except (servers.ServerUnavailable, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"   not measured: {exc}")
        return ServerReport(name, [], problem=str(exc).splitlines()[0])

    try:
        servers.check_answer(server, payloads[1])
        report = ServerReport(
            name,
            [],
            affinities=sorted(list(cpus) for cpus in server.processes.affinities()),
            processes=len(server.processes.tree()),
        )
        print(f"   {report.processes} processes, CPU affinity {report.affinities}", flush=True)
        for rows, payload in payloads.items():
            body_path = run_dir / f"{name}-{rows}.json"
            body_path.write_bytes(server.encode(payload))
            target = Target(server.url, body_path, server.content_type)
            for connections in CONNECTIONS:
                cell = measure_cell(server, target, rows, connections, seconds, warmup)
                report.cells.append(cell)
                print(f"   {format_cell(cell)}", flush=True)
        return report
    except (servers.ServerUnavailable, RuntimeError) as exc:
        print(f"   failed: {exc}")
        return ServerReport(name, [], problem=str(exc).splitlines()[0])
    finally:
        server.stop()


def measure_cell(
    server: servers.RunningServer,
    target: Target,
    rows: int,
    connections: int,
    seconds: float,
    warmup: float,
) -> Cell:
    benchlib.run_wrk(target, connections, warmup)

    cpu_before = server.processes.cpu_seconds()
    result = benchlib.run_wrk(target, connections, seconds)
    cpu_used = server.processes.cpu_seconds() - cpu_before

    return Cell(
        server=server.name,
        rows=rows,
        connections=connections,
        requests_per_second=result.requests_per_second,
        p50_us=result.p50_us,
        p99_us=result.p99_us,
        errors={kind: count for kind, count in result.errors.items() if count},
        cpu_us_per_request=cpu_used * 1e6 / result.requests if result.requests else 0.0,
    )


# --- Reporting -------------------------------------------------------------------------------


def format_errors(errors: dict[str, int]) -> str:
    if not errors:
        return "0"
    return " ".join(f"{count} {kind}" for kind, count in sorted(errors.items()))


def format_cell(cell: Cell) -> str:
    return (
        f"{cell.server:<9} {cell.rows:>4} {cell.connections:>5} "
        f"{cell.requests_per_second:>9.0f} {cell.p50_us / 1000:>8.2f} {cell.p99_us / 1000:>8.2f} "
        f"{cell.cpu_us_per_request:>8.0f}  {format_errors(cell.errors)}"
    )


def print_table(reports: list[ServerReport], seconds: float) -> None:
    print(f"\nResults ({seconds:g} s per cell; wrk pinned to CPU 1, each server to CPU 0)")
    print(
        f"{'server':<9} {'rows':>4} {'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'CPU µs/r':>8}  errors"
    )
    for report in reports:
        if report.problem is not None:
            print(f"{report.name:<9} not measured: {report.problem}")
        for cell in report.cells:
            print(format_cell(cell))


def find_cell(reports: list[ServerReport], server: str, rows: int, connections: int) -> Cell | None:
    for report in reports:
        for cell in report.cells:
            if (cell.server, cell.rows, cell.connections) == (server, rows, connections):
                return cell
    return None


def print_ratios(reports: list[ServerReport]) -> None:
    print("\nRatios of Sageport's req/s (InvokeEndpoint path) to each server's, same cell")
    others = [report.name for report in reports if report.name != "sageport" and report.cells]
    print(f"{'rows':>4} {'conns':>5} " + " ".join(f"{name:>9}" for name in others))
    for rows in ROW_COUNTS:
        for connections in CONNECTIONS:
            sageport = find_cell(reports, "sageport", rows, connections)
            ratios = []
            for name in others:
                other = find_cell(reports, name, rows, connections)
                if sageport is None or other is None or not other.requests_per_second:
                    ratios.append(f"{'-':>9}")
                else:
                    ratio = sageport.requests_per_second / other.requests_per_second
                    ratios.append(f"{ratio:>8.2f}x")
            print(f"{rows:>4} {connections:>5} " + " ".join(ratios))
    print_targets(reports)


def print_targets(reports: list[ServerReport]) -> None:
    """Print each target next to what this run measured, with PASS or FAIL."""
    print("\nTargets (1 row per request)")
    sageport_16 = find_cell(reports, "sageport", 1, 16)
    peers_16 = [
        cell
        for name in servers.PEERS
        if (cell := find_cell(reports, name, 1, 16)) is not None and not cell.errors
    ]
    if sageport_16 is not None and peers_16:
        fastest = max(peers_16, key=lambda cell: cell.requests_per_second)
        ratio = sageport_16.requests_per_second / fastest.requests_per_second
        print_target(
            f"Sageport / fastest peer ({fastest.server}) req/s at 16 connections",
            f"{ratio:.2f}x",
            f">= {TARGET_PEER_RATIO:g}x",
            ratio >= TARGET_PEER_RATIO,
        )

    # The runtime serves one request at a time, so its best req/s at any
    # connection count is the floor the InvokeEndpoint path is held to.
    floors = [
        cell
        for connections in CONNECTIONS
        if (cell := find_cell(reports, "instance", 1, connections)) is not None
    ]
    if sageport_16 is not None and floors:
        floor = max(cell.requests_per_second for cell in floors)
        ratio = sageport_16.requests_per_second / floor
        print_target(
            "Sageport at 16 connections / instance directly (best of 1, 16, 64) req/s",
            f"{ratio:.2f}x",
            f">= {TARGET_FLOOR_RATIO:g}x",
            ratio >= TARGET_FLOOR_RATIO,
        )

    sageport_1 = find_cell(reports, "sageport", 1, 1)
    instance_1 = find_cell(reports, "instance", 1, 1)
    if sageport_1 is not None and instance_1 is not None:
        added = sageport_1.p50_us - instance_1.p50_us
        print_target(
            "p50 added by the front door at 1 connection",
            f"{added / 1000:.3f} ms",
            f"<= {TARGET_ADDED_P50_US / 1000:g} ms",
            added <= TARGET_ADDED_P50_US,
        )


def print_target(what: str, measured: str, target: str, met: bool) -> None:
    print(f"  {what}: {measured} (target {target}) {'PASS' if met else 'FAIL'}")


def plot(results_path: Path, image_path: Path) -> None:
    """Draw latency against connections with matplotlib from the tools environment."""
    try:
        python = servers.install_peer(
            "tools", ["matplotlib", "py-spy"], results_path.parent, model=False
        )
    except servers.ServerUnavailable as exc:
        print(f"No plot: {exc}")
        return
    command = [
        str(python),
        str(benchlib.BENCHMARKS / "plot.py"),
        str(results_path),
        str(image_path),
    ]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        print(f"No plot: plot.py failed:\n{completed.stderr[-1000:]}")
        return
    print(f"Plot: {image_path}")


if __name__ == "__main__":
    main()

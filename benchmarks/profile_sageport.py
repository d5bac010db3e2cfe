"""Profile Sageport's InvokeEndpoint path under wrk load with py-spy, and show where the CPU goes.

    uv run python benchmarks/profile_sageport.py [--seconds 15] [--connections 16] [--rows 1]

Starts ``sageport serve`` pinned to CPU 0, deploys the iris example, loads it
with wrk (pinned to CPU 1) and samples the front door and the instance's
worker with py-spy at the same time. It prints, for each process, the CPU
time per request (psutil) and the functions with the largest share of the
on-CPU samples, both self time and inclusive time, with the microseconds per
request each share stands for. py-spy comes from the benchmarks' tools
environment; the raw collapsed stacks are kept in the run directory.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import benchlib
import psutil
import servers

# py-spy's collapsed frames read "function (path/to/file.py:123)".
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")
TOP = 20


@dataclass
class Profile:
    """Collapsed stacks of one process, counted by function."""

    label: str
    samples: int
    self_counts: Counter[str]
    inclusive_counts: Counter[str]
    module_counts: Counter[str]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=int, default=15, help="seconds of sampling under load")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--rows", type=int, default=1, help="rows per request")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument(
        "--native", action="store_true", help="also sample C frames (py-spy --native)"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    benchlib.require_tools("wrk", "taskset")
    run_dir = benchlib.new_run_dir("profile")
    tools = servers.install_peer("tools", ["matplotlib", "py-spy"], run_dir, model=False)
    py_spy = tools.parent / "py-spy"

    server, target = servers.deployed_sageport(run_dir, args.rows)
    try:
        profile_under_load(args, server, target, py_spy, run_dir)
    finally:
        server.stop()


def profile_under_load(
    args: argparse.Namespace,
    server: servers.RunningServer,
    target: benchlib.Target,
    py_spy: Path,
    run_dir: Path,
) -> None:
    front_door = psutil.Process(server.processes.pid)
    master, *workers = benchlib.instance_processes(server.processes)[0]
    processes = {"front door": front_door, "runtime worker": workers[0]}
    print(f"front door pid {front_door.pid}, instance master {master.pid}, worker {workers[0].pid}")

    benchlib.run_wrk(target, args.connections, 2)
    cpu_before = {label: _cpu_seconds(process) for label, process in processes.items()}
    switches_before = {label: _switches(process) for label, process in processes.items()}
    samplers = {
        label: start_py_spy(py_spy, process.pid, args, run_dir / f"{label.replace(' ', '-')}.txt")
        for label, process in processes.items()
    }
    result = benchlib.run_wrk(target, args.connections, args.seconds + 2)
    cpu_used = {
        label: _cpu_seconds(process) - cpu_before[label] for label, process in processes.items()
    }
    switches_after = {label: _switches(process) for label, process in processes.items()}
    for sampler in samplers.values():
        sampler.wait(timeout=args.seconds + 60)

    print(
        f"\nwrk: {result.requests_per_second:.0f} req/s, p50 {result.p50_us / 1000:.2f} ms, "
        f"p99 {result.p99_us / 1000:.2f} ms, errors {result.error_count} "
        f"({args.connections} connections, {args.rows} row(s))"
    )
    for label in processes:
        cpu_us = cpu_used[label] * 1e6 / result.requests if result.requests else 0.0
        switches = switches_after[label] - switches_before[label]
        profile = read_profile(label, run_dir / f"{label.replace(' ', '-')}.txt")
        # Each sample stands for 1/rate s of the thread being on the CPU or
        # waiting to get it; spread over the requests served meanwhile.
        sample_us = 1e6 / args.rate / max(result.requests_per_second * args.seconds, 1e-9)
        print(
            f"\n=== {profile.label}: {cpu_us:.0f} µs of CPU per request (psutil), "
            f"{switches / max(result.requests, 1):.1f} context switches per request, "
            f"{profile.samples} samples ({profile.samples * sample_us:.0f} µs "
            "sampled per request)"
        )
        print_profile(profile, sample_us)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _switches(process: psutil.Process) -> int:
    switches = process.num_ctx_switches()
    return int(switches.voluntary + switches.involuntary)


def start_py_spy(
    py_spy: Path, pid: int, args: argparse.Namespace, output: Path
) -> subprocess.Popen[bytes]:
    command = [
        "taskset",
        "-c",
        str(benchlib.LOAD_CPU),
        str(py_spy),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(args.seconds),
        "--rate",
        str(args.rate),
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    # py-spy reads C frames only while the process is paused; without them it
    # samples without pausing, so the profile barely slows the server.
    command.append("--native" if args.native else "--nonblocking")
    with output.with_suffix(".log").open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def read_profile(label: str, path: Path) -> Profile:
    """Count self and inclusive samples per function from py-spy's collapsed stacks."""
    if not path.exists():
        log = path.with_suffix(".log")
        raise SystemExit(f"py-spy wrote no profile for the {label}:\n{log.read_text()[-2000:]}")
    self_counts: Counter[str] = Counter()
    inclusive_counts: Counter[str] = Counter()
    module_counts: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short_frame(frame) for frame in stack.split(";")]
        samples += count
        # The leaf keeps its line number, which separates a wait (recv_into) from work.
        self_counts[short_frame(stack.split(";")[-1], line=True)] += count
        module_counts[module_of(stack.split(";")[-1])] += count
        for frame in set(frames):
            inclusive_counts[frame] += count
    return Profile(label, samples, self_counts, inclusive_counts, module_counts)


def short_frame(frame: str, *, line: bool = False) -> str:
    """Return "function (file)" with the file path cut to its package-relative part."""
    match = FRAME.match(frame)
    if match is None:
        return frame
    where = _short_path(match["file"])
    if line and match["line"]:
        where = f"{where}:{match['line']}"
    return f"{match['function']} ({where})"


def _short_path(path: str) -> str:
    for marker in ("site-packages/", "/src/", "python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def module_of(frame: str) -> str:
    """Return the top-level package a frame's file belongs to, e.g. "aiohttp" or "asyncio"."""
    match = FRAME.match(frame)
    if match is None:
        return "(native or unknown)"
    path = _short_path(match["file"])
    return path.split("/", 1)[0].removesuffix(".py")


def print_profile(profile: Profile, sample_us: float) -> None:
    """Print the top entries with their share of samples and the sampled µs per request."""
    if not profile.samples:
        print("    no samples (did py-spy fail? run it by hand to see its error)")
        return
    for title, counts in (
        ("by package, self time", profile.module_counts),
        ("top functions, self time", profile.self_counts),
        ("top functions, inclusive time", profile.inclusive_counts),
    ):
        print(f"  {title}:")
        for name, count in counts.most_common(TOP):
            share = count / profile.samples
            print(f"    {share * 100:5.1f}%  {count * sample_us:6.1f} µs  {name}")


if __name__ == "__main__":
    main()

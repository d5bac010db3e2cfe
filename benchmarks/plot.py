"""Plot p50 and p99 latency against connections from load.py's results.json.

    python plot.py RESULTS_JSON OUTPUT_PNG

Runs in the benchmarks' tools environment, where matplotlib is installed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib  # type: ignore[import-not-found]

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # type: ignore[import-not-found]

COLORS = {
    "instance": "tab:gray",
    "sageport": "tab:blue",
    "kserve": "tab:orange",
    "mlflow": "tab:green",
    "bentoml": "tab:red",
}


def main() -> None:
    results_path, image_path = Path(sys.argv[1]), Path(sys.argv[2])
    reports: list[dict[str, Any]] = json.loads(results_path.read_text())
    row_counts = sorted({cell["rows"] for report in reports for cell in report["cells"]})

    figure, axes = plt.subplots(
        1, len(row_counts), figsize=(6 * len(row_counts), 4.5), squeeze=False
    )
    for axis, rows in zip(axes[0], row_counts, strict=True):
        for report in reports:
            cells = sorted(
                (cell for cell in report["cells"] if cell["rows"] == rows),
                key=lambda cell: cell["connections"],
            )
            if not cells:
                continue
            connections = [cell["connections"] for cell in cells]
            color = COLORS.get(report["name"], "black")
            axis.plot(
                connections,
                [cell["p50_us"] / 1000 for cell in cells],
                marker="o",
                color=color,
                label=f"{report['name']} p50",
            )
            axis.plot(
                connections,
                [cell["p99_us"] / 1000 for cell in cells],
                marker="x",
                linestyle="--",
                color=color,
                alpha=0.6,
                label=f"{report['name']} p99",
            )
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xticks([1, 16, 64], labels=["1", "16", "64"])
        axis.set_xlabel("concurrent connections (wrk)")
        axis.set_ylabel("latency (ms, log scale)")
        axis.set_title(f"{rows} row{'s' if rows > 1 else ''} per request")
        axis.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize="small", ncol=2)
    figure.suptitle("Latency against concurrency, server on 1 CPU (wrk on another)")
    figure.tight_layout()
    figure.savefig(image_path, dpi=110)


if __name__ == "__main__":
    main()

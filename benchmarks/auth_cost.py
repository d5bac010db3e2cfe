"""Measure what SigV4 verification costs per request, in process, for botocore-signed requests.

Run: ``uv run python benchmarks/auth_cost.py``. It prints microseconds per
verification for a control-plane request and runtime requests of several
body sizes; the body's SHA-256 dominates for large bodies.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.auth.signing import signed_request

from sageport.auth.keys import AccessKey, KeyRing
from sageport.auth.sigv4 import SigV4Verifier

KEY_ID = "AKSPBENCHMARK0000001"
SECRET = "benchmark-secret-0123456789abcdef"
ROUNDS = 20_000


def per_call_microseconds(verifier: SigV4Verifier, scope: dict[str, Any], body: bytes) -> float:
    rounds = max(50, ROUNDS // max(1, len(body) // 65536))
    started = time.perf_counter()
    for _ in range(rounds):
        verifier(scope, body)
    return (time.perf_counter() - started) / rounds * 1e6


def invoke(payload: bytes) -> Callable[[Any], object]:
    def call(client: Any) -> object:
        return client.invoke_endpoint(EndpointName="ep", Body=payload, ContentType="text/plain")

    return call


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        keys = KeyRing(Path(directory) / "credentials.json", (AccessKey(KEY_ID, SECRET),))
        verifier = SigV4Verifier(keys)
        control = signed_request(
            "sagemaker", lambda c: c.describe_endpoint(EndpointName="ep"), KEY_ID, SECRET
        )
        cost = per_call_microseconds(verifier, control.scope, control.body)
        print(f"control plane DescribeEndpoint: {cost:.1f} us")
        for size in (100, 64 * 1024, 6 * 2**20):
            runtime = signed_request("sagemaker-runtime", invoke(b"x" * size), KEY_ID, SECRET)
            cost = per_call_microseconds(verifier, runtime.scope, runtime.body)
            print(f"runtime InvokeEndpoint, {size}-byte body: {cost:.1f} us")


if __name__ == "__main__":
    main()

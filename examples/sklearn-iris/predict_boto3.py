"""Invoke the iris endpoint with boto3 and print the predictions.

Sends ``input.json`` (or ``input.csv`` with ``--csv``) to a running endpoint.
boto3 finds Sageport through the environment, for example:

    export AWS_ENDPOINT_URL=http://127.0.0.1:8765 AWS_DEFAULT_REGION=us-east-1
    export AWS_ACCESS_KEY_ID=sageport AWS_SECRET_ACCESS_KEY=sageport
    uv run python examples/sklearn-iris/predict_boto3.py iris
"""

from __future__ import annotations

import argparse
from pathlib import Path

import boto3

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("endpoint_name", help="name of the endpoint to invoke, e.g. iris")
    parser.add_argument(
        "--csv", action="store_true", help="send input.csv as text/csv instead of input.json"
    )
    args = parser.parse_args()

    payload, content_type = HERE / "input.json", "application/json"
    if args.csv:
        payload, content_type = HERE / "input.csv", "text/csv"

    runtime = boto3.client("sagemaker-runtime")
    response = runtime.invoke_endpoint(
        EndpointName=args.endpoint_name,
        ContentType=content_type,
        Accept="application/json",
        Body=payload.read_bytes(),
    )

    print(f"Variant: {response['InvokedProductionVariant']}")
    print(response["Body"].read().decode("utf-8"))


if __name__ == "__main__":
    main()

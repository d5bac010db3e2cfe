"""InvokeEndpoint: send a request to an instance and turn what comes back into a result or an error.

Every way the instance can fail becomes an AWS-shaped error: a non-2xx answer
is ModelError with the original status and message; a timeout or a lost
connection is ModelError with status 0, as SageMaker reports them. ModelError
is HTTP 424, which botocore does not retry, because an invocation is not
idempotent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy

from sageport.dataplane.routing import EndpointRoute, InstanceRoute, VariantRoute
from sageport.errors import ModelError, ServiceUnavailable

logger = logging.getLogger("sageport.dataplane")

# SageMaker names a single-container model's container "primary" in its errors.
CONTAINER_NAME = "primary"
# The longest container answer quoted back in a ModelError; the rest is in the logs.
MAX_ORIGINAL_MESSAGE = 16 * 1024
# Sent when the caller gave no Content-Type, so the model sees an honest "unknown bytes".
DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass
class InvocationResult:
    """A successful answer from an instance."""

    body: bytes
    content_type: str
    variant: str
    custom_attributes: str | None
    # Microseconds spent in the model's handlers, as the runtime reported it.
    model_latency_us: int | None
    # Microseconds from choosing the instance to having the whole answer.
    upstream_us: int


async def invoke(
    route: EndpointRoute,
    body: bytes,
    headers: dict[str, str],
    target_variant: str | None,
) -> InvocationResult:
    """Send one invocation to the least busy healthy instance of the chosen variant."""
    variant = route.pick_variant(target_variant)
    instance = variant.pick_instance()
    if instance is None:
        raise ServiceUnavailable(
            f"Production variant {variant.name} of endpoint {route.name} has no healthy "
            "instance right now. Retry shortly."
        )

    headers.setdefault("Content-Type", DEFAULT_CONTENT_TYPE)
    started = time.perf_counter_ns()
    instance.in_flight += 1
    try:
        status, response_headers, response_body = await _send(instance, variant, body, headers)
    except TimeoutError:
        raise _timed_out(route, variant) from None
    except aiohttp.ClientError as exc:
        raise _connection_lost(route, instance, exc) from None
    finally:
        instance.in_flight -= 1
    upstream_us = (time.perf_counter_ns() - started) // 1000

    if not 200 <= status < 300:
        raise _model_error(route, status, response_body)
    latency = response_headers.get("X-Sageport-Model-Latency-Us")
    return InvocationResult(
        body=response_body,
        content_type=response_headers.get("Content-Type", DEFAULT_CONTENT_TYPE),
        variant=variant.name,
        custom_attributes=response_headers.get("X-Amzn-SageMaker-Custom-Attributes"),
        model_latency_us=int(latency) if latency and latency.isdigit() else None,
        upstream_us=upstream_us,
    )


async def _send(
    instance: InstanceRoute, variant: VariantRoute, body: bytes, headers: dict[str, str]
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    async with instance.session.post(
        "http://instance/invocations",
        data=body,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=variant.timeout),
    ) as response:
        return response.status, response.headers, await response.read()


def _model_error(route: EndpointRoute, status: int, body: bytes) -> ModelError:
    text = body[:MAX_ORIGINAL_MESSAGE].decode("utf-8", errors="replace")
    kind = "client" if status < 500 else "server"
    return ModelError(
        f'Received {kind} error ({status}) from {CONTAINER_NAME} with message "{text}". '
        f"See the endpoint's logs (sageport logs {route.name}) for more information.",
        OriginalStatusCode=status,
        OriginalMessage=text,
        LogStreamArn=route.log_group_arn,
        ErrorCode="CLIENT_ERROR_FROM_MODEL" if status < 500 else "SERVER_ERROR_FROM_MODEL",
    )


def _timed_out(route: EndpointRoute, variant: VariantRoute) -> ModelError:
    logger.warning(
        "Invocation of endpoint %s, variant %s timed out after %g s",
        route.name,
        variant.name,
        variant.timeout,
    )
    message = (
        f"Your invocation timed out after {variant.timeout:g} seconds while waiting for a "
        f"response from container {CONTAINER_NAME}. Make the model faster, or raise "
        "SAGEMAKER_MODEL_SERVER_TIMEOUT in the model's container Environment."
    )
    return ModelError(
        f'Received server error (0) from {CONTAINER_NAME} with message "{message}".',
        OriginalStatusCode=0,
        OriginalMessage=message,
        LogStreamArn=route.log_group_arn,
        ErrorCode="INVOCATION_TIMEOUT",
    )


def _connection_lost(
    route: EndpointRoute, instance: InstanceRoute, exc: aiohttp.ClientError
) -> ModelError:
    logger.warning(
        "Lost the connection to instance %s of endpoint %s: %s",
        instance.instance_id,
        route.name,
        exc,
    )
    message = (
        f"The instance closed the connection before answering ({type(exc).__name__}). "
        "It may have crashed or been stopped; its output is in the endpoint's logs."
    )
    return ModelError(
        f'Received server error (0) from {CONTAINER_NAME} with message "{message}".',
        OriginalStatusCode=0,
        OriginalMessage=message,
        LogStreamArn=route.log_group_arn,
        ErrorCode="CONNECTION_LOST",
    )

"""InvokeEndpoint: send a request to an instance and turn its response into a result or an error.

Every way the instance can fail becomes an AWS-shaped error. A non-2xx
response is ModelError with the original status and message, and a timeout or
a lost connection is ModelError with status 0, as SageMaker reports them. ModelError
is HTTP 424, which botocore does not retry, because an invocation is not
idempotent. A request that provably never reached the model (the instance
reset the connection before reading it) is sent again, and if that keeps
happening the caller gets ServiceUnavailable (503), which botocore retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from sageport.dataplane.routing import EndpointRoute, InstanceRoute, VariantRoute
from sageport.dataplane.upstream import (
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamRequestUnread,
    UpstreamResponse,
)
from sageport.errors import ModelError, ServiceUnavailable

logger = logging.getLogger("sageport.dataplane")

# SageMaker names a single-container model's container "primary" in its errors.
CONTAINER_NAME = "primary"
# Maximum length of a container response quoted back in a ModelError; the rest is in the logs.
MAX_ORIGINAL_MESSAGE = 16 * 1024
# Custom attributes are visible US-ASCII (RFC 7230 field values: VCHAR, space and
# tab), at most 1024 characters, both in requests and in the model's responses.
MAX_CUSTOM_ATTRIBUTES = 1024
_VISIBLE_ASCII = frozenset(range(0x20, 0x7F)) | {0x09}
# Sent when the caller gave no Content-Type, so the model receives an honest "unknown bytes".
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Times a request is sent again after an instance reset the connection unread.
# One is enough when a single worker was stuck; the cap ends a reset loop.
MAX_UNREAD_RETRIES = 2


@dataclass
class InvocationResult:
    """A successful response from an instance."""

    body: bytes
    content_type: str
    variant: str
    custom_attributes: str | None
    # Microseconds spent in the model's handlers, as the runtime reported it.
    model_latency_us: int | None
    # Microseconds from choosing the instance to having the whole response.
    upstream_us: int


async def invoke(
    route: EndpointRoute,
    body: bytes,
    headers: dict[str, str],
    target_variant: str | None,
    caller_gone: Callable[[], Awaitable[object]] | None = None,
) -> InvocationResult:
    """Send one invocation to the least busy healthy instance of the chosen variant.

    ``caller_gone`` returns when the caller disconnects; a request still queued
    then raises CallerGone and never reaches the model.
    """
    variant = route.pick_variant(target_variant)
    headers.setdefault("Content-Type", DEFAULT_CONTENT_TYPE)
    if variant.multi_model is not None or "X-Amzn-SageMaker-Target-Model" in headers:
        from sageport.dataplane.multimodel import invoke_model

        return await invoke_model(route, variant, body, headers, caller_gone)
    forwarded = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
    ]
    started = time.perf_counter_ns()
    tried: frozenset[str] = frozenset()
    deadline = ready_deadline(route)
    unread = 0

    while True:
        instance = await available_instance(route, variant, tried, deadline)
        instance.in_flight += 1
        try:
            response = await instance.upstream.post(
                b"/invocations", forwarded, body, variant.timeout, caller_gone
            )
            break
        except UpstreamConnectError as exc:
            # Nothing reached the model, so another instance may take the request.
            mark_unreachable(route, instance, exc)
            tried |= {instance.instance_id}
        except TimeoutError:
            raise timed_out_error(route, variant) from None
        except UpstreamRequestUnread as exc:
            # The instance stays in routing: its other workers still serve,
            # and its supervisor replaces the one that reset the connection.
            unread += 1
            if unread > MAX_UNREAD_RETRIES:
                raise connection_lost_error(route, instance, exc) from None
            log_unread_retry(route, instance, exc)
        except UpstreamDisconnected as exc:
            raise connection_lost_error(route, instance, exc) from None
        finally:
            instance.in_flight -= 1
    upstream_us = (time.perf_counter_ns() - started) // 1000

    if not 200 <= response.status < 300:
        raise model_error(route, response.status, response.body)
    return invocation_result(route, variant, response, upstream_us)


def valid_custom_attributes(value: str) -> bool:
    """Return whether ``value`` may travel as SageMaker custom attributes."""
    return len(value) <= MAX_CUSTOM_ATTRIBUTES and all(ord(c) in _VISIBLE_ASCII for c in value)


def relayed_custom_attributes(route: EndpointRoute, headers: Mapping[bytes, bytes]) -> str | None:
    """Return the model's custom attributes for the caller, or None if missing or invalid.

    The built-in runtime sends X-Sageport-Custom-Attributes-Unsendable instead
    of a value that no HTTP header can carry, such as one with a line break.
    """
    raw = headers.get(b"x-amzn-sagemaker-custom-attributes")
    unsendable = b"x-sageport-custom-attributes-unsendable" in headers
    if raw is None and not unsendable:
        return None
    value = None if raw is None else raw.decode("latin-1")
    if value is not None and valid_custom_attributes(value):
        return value
    logger.warning(
        "Endpoint %s returned custom attributes that are not visible ASCII of at most %d "
        "characters; they are not passed to the caller",
        route.name,
        MAX_CUSTOM_ATTRIBUTES,
    )
    return None


def invocation_result(
    route: EndpointRoute, variant: VariantRoute, response: UpstreamResponse, upstream_us: int
) -> InvocationResult:
    """Turn an instance's 2xx response into the result the runtime API relays."""
    headers = response.headers
    latency = headers.get(b"x-sageport-model-latency-us")
    content_type = headers.get(b"content-type")
    return InvocationResult(
        body=response.body,
        content_type=content_type.decode("latin-1") if content_type else DEFAULT_CONTENT_TYPE,
        variant=variant.name,
        custom_attributes=relayed_custom_attributes(route, headers),
        model_latency_us=int(latency) if latency and latency.isdigit() else None,
        upstream_us=upstream_us,
    )


def ready_deadline(route: EndpointRoute) -> float:
    """Return the event-loop time until which a new invocation may wait for an instance."""
    return asyncio.get_running_loop().time() + route.ready_wait


async def available_instance(
    route: EndpointRoute, variant: VariantRoute, tried: frozenset[str], deadline: float
) -> InstanceRoute:
    """Return the least busy healthy instance that is not in ``tried``.

    While there is none, wait until ``deadline`` for an instance to pass its
    health check. That happens while instances start after a server restart,
    or while a supervisor restarts one. An instance in ``tried`` that becomes
    healthy again was restarted, so it may take the request then.
    """
    instance = variant.pick_instance(tried)
    if instance is None:
        instance = await wait_for_instance(variant, variant.pick_instance, deadline)
    return usable_instance(route, variant, instance)


async def wait_for_instance(
    variant: VariantRoute, pick: Callable[[], InstanceRoute | None], deadline: float
) -> InstanceRoute | None:
    """Return the instance ``pick`` chooses, waiting for healthy instances until ``deadline``.

    ``pick`` must choose among all healthy instances, or this would wake
    again and again for an instance that it never chooses.
    """
    instance = pick()
    while instance is None and await variant.wait_for_healthy(deadline):
        instance = pick()
    return instance


def usable_instance(
    route: EndpointRoute, variant: VariantRoute, instance: InstanceRoute | None
) -> InstanceRoute:
    """Return ``instance``, or raise ServiceUnavailable if there is none or it is full."""
    if instance is None:
        raise ServiceUnavailable(
            f"Production variant {variant.name} of endpoint {route.name} has no healthy "
            "instance right now. Retry shortly."
        )
    if instance.in_flight >= instance.capacity:
        raise ServiceUnavailable(
            f"Production variant {variant.name} of endpoint {route.name} is at capacity: every "
            f"instance has {instance.capacity} requests in flight or queued. Retry shortly, "
            "or add instances."
        )
    return instance


def mark_unreachable(route: EndpointRoute, instance: InstanceRoute, exc: Exception) -> None:
    # The supervisor notices the process exit and restarts it; until then no
    # request should be sent there.
    instance.healthy = False
    logger.warning(
        "Instance %s of endpoint %s refused a connection (%s); routing around it",
        instance.instance_id,
        route.name,
        exc,
    )


def model_error(route: EndpointRoute, status: int, body: bytes) -> ModelError:
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


def timed_out_error(route: EndpointRoute, variant: VariantRoute) -> ModelError:
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


def log_unread_retry(route: EndpointRoute, instance: InstanceRoute, exc: Exception) -> None:
    logger.warning(
        "Instance %s of endpoint %s reset the connection before reading the request (%s); "
        "sending the request again",
        instance.instance_id,
        route.name,
        exc,
    )


def connection_lost_error(
    route: EndpointRoute, instance: InstanceRoute, exc: Exception
) -> ModelError | ServiceUnavailable:
    """Return the error for a connection lost before the whole response arrived.

    Retrying is safe only when the model never saw the request, so only then
    is the error ServiceUnavailable, which botocore retries.
    """
    if isinstance(exc, UpstreamRequestUnread):
        logger.warning(
            "Instance %s of endpoint %s reset the connection before reading the request: %s",
            instance.instance_id,
            route.name,
            exc,
        )
        return ServiceUnavailable(
            f"An instance of endpoint {route.name} closed the connection before reading "
            "the request, so the model did not run it. Retry shortly."
        )
    logger.warning(
        "Lost the connection to instance %s of endpoint %s: %s",
        instance.instance_id,
        route.name,
        exc,
    )
    message = (
        "The instance closed the connection before its response was complete "
        f"({type(exc).__name__}). It may have crashed or been stopped; its output is in the "
        "endpoint's logs."
    )
    return ModelError(
        f'Received server error (0) from {CONTAINER_NAME} with message "{message}".',
        OriginalStatusCode=0,
        OriginalMessage=message,
        LogStreamArn=route.log_group_arn,
        ErrorCode="CONNECTION_LOST",
    )

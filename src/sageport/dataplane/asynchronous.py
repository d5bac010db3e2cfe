"""InvokeEndpointAsync: a durable queue in the store, and the worker that drains it.

``AsyncInvocations.submit`` checks a request against the endpoint's
``AsyncInferenceConfig``, commits a row to the store and returns where the
result will land. The caller returns 202 only after that, so an accepted
request survives a crash of the server.

The worker takes each endpoint's rows oldest first. An endpoint runs at most
``MaxConcurrentInvocationsPerInstance`` invocations per instance at once (by
default, one per runtime worker of the instance). For each row the worker
reads the input, sends it through the same ``invoke`` path as InvokeEndpoint
under ``InvocationTimeoutSeconds``, writes the answer to the output location
or the reason to the failure location, and deletes the row.

Delivery is at least once. A row is deleted only after its output or failure
is written, so an invocation that was running when the server stopped or died
runs again at the next start, and a model with side effects may see a request
twice. An invocation interrupted ``MAX_ATTEMPTS`` times fails instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sageport.control.plane import ENDPOINT
from sageport.dataplane.invoke import DEFAULT_CONTENT_TYPE, invoke
from sageport.dataplane.locations import (
    LocationError,
    check_location,
    join_location,
    read_location,
    write_location,
)
from sageport.dataplane.path_names import is_plain_name, is_relative_path
from sageport.dataplane.routing import EndpointRoute, RoutingTable
from sageport.errors import RuntimeAPIError, ServiceUnavailable, ValidationError
from sageport.store import AsyncInvocationRow, Store

logger = logging.getLogger("sageport.dataplane")

# SageMaker's defaults, from the runtime model's documentation of
# RequestTTLSeconds (60 to 21,600) and InvocationTimeoutSeconds (1 to 3,600).
DEFAULT_REQUEST_TTL = 21_600
DEFAULT_INVOCATION_TIMEOUT = 900
# SageMaker's limits: 1 GB for an input in S3, 128,000 bytes for an inline Body.
MAX_INPUT_BYTES = 10**9
MAX_INLINE_BODY = 128_000
# Times one invocation may be interrupted by the server stopping before it
# fails instead, so that an input that crashes the server cannot loop forever.
MAX_ATTEMPTS = 3
# Seconds between looks at the queue when nothing wakes the worker: this is
# how soon retries, expiries and endpoints coming back are noticed.
POLL_INTERVAL = 1.0
# Seconds before an invocation that found no free instance is tried again.
RETRY_DELAY = 1.0
# Maximum invocations of a deleted or failed endpoint failed per pass.
ABANDON_BATCH = 16

# Endpoint statuses whose queued invocations wait for the route to appear.
_WAITING_STATUSES = frozenset({"Creating", "InService", "Updating", "SystemUpdating"})


@dataclass(frozen=True)
class AsyncRequest:
    """The members of one InvokeEndpointAsync request, as validated by the protocol layer."""

    endpoint_name: str
    # Headers for the model: Content-Type, Accept, custom attributes.
    headers: dict[str, str]
    input_location: str | None = None
    body: bytes | None = None
    inference_id: str | None = None
    output_path_extension: str | None = None
    filename: str | None = None
    request_ttl: int | None = None
    invocation_timeout: int | None = None


@dataclass(frozen=True)
class Accepted:
    """The output and failure locations of a queued invocation."""

    inference_id: str
    output_location: str
    failure_location: str


@dataclass
class _Outcome:
    """The result of one attempt: output to write, a failure text, or a retry later."""

    output: bytes | None = None
    content_type: str = DEFAULT_CONTENT_TYPE
    failure: str | None = None
    retry: bool = False


@dataclass
class AsyncInvocations:
    """The queue of InvokeEndpointAsync requests and its worker."""

    store: Store
    routing: RoutingTable
    account_id: str
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _worker: asyncio.Task[None] | None = field(default=None, init=False)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    _running: Counter[str] = field(default_factory=Counter, init=False)

    # Accepting requests.

    def submit(self, request: AsyncRequest) -> Accepted:
        """Queue an invocation durably; raise ValidationError if the endpoint cannot take it."""
        name = request.endpoint_name
        output_config = self._output_config(name)
        _check_input(request)
        _check_names(request)

        inference_id = request.inference_id or str(uuid.uuid4())
        accepted = _locations(output_config, inference_id, request)
        output_path, failure_path = _output_paths(output_config)
        received = time.time()
        headers = dict(request.headers)
        headers["X-Amzn-SageMaker-Inference-Id"] = inference_id
        row = AsyncInvocationRow(
            inference_id=inference_id,
            endpoint_name=name,
            received=received,
            expires=received + (request.request_ttl or DEFAULT_REQUEST_TTL),
            request={
                "InputLocation": request.input_location,
                "Headers": headers,
                "OutputLocation": accepted.output_location,
                "FailureLocation": accepted.failure_location,
                # The writer checks that each location stays under its configured path.
                "OutputPath": output_path,
                "FailurePath": failure_path,
                "InvocationTimeoutSeconds": request.invocation_timeout
                or DEFAULT_INVOCATION_TIMEOUT,
            },
            body=request.body,
        )
        self.store.enqueue_invocation(row)
        logger.info(
            "Queued async invocation %s for endpoint %s (queue position %d)",
            inference_id,
            name,
            row.seq,
        )
        self._wake.set()
        return accepted

    def _output_config(self, name: str) -> dict[str, Any]:
        route = self.routing.get(name)
        record = self.store.get(ENDPOINT, name)
        if route is None and name in self.routing.starting:
            raise self.routing.unavailable(name)
        if route is None or record is None:
            raise ValidationError(f"Endpoint {name} of account {self.account_id} not found.")

        config = record.spec.get("EndpointConfig", {})
        async_config = config.get("AsyncInferenceConfig")
        if async_config is None:
            raise ValidationError(
                f"Endpoint {name} is not an asynchronous endpoint: its endpoint config "
                f"{config.get('EndpointConfigName')} has no AsyncInferenceConfig. Use "
                "InvokeEndpoint, or deploy an endpoint config with an AsyncInferenceConfig."
            )
        output_config: dict[str, Any] = async_config.get("OutputConfig") or {}
        if not output_config.get("S3OutputPath"):
            raise ValidationError(
                f"Endpoint {name} has no AsyncInferenceConfig.OutputConfig.S3OutputPath, so "
                "there is nowhere to write results. Deploy an endpoint config that sets it."
            )
        return output_config

    # The worker.

    def start(self) -> None:
        """Queue again what a previous server left running, and start the worker."""
        requeued = self.store.requeue_running_invocations()
        if requeued:
            logger.warning(
                "Async invocations queued again after the previous server stopped: %d",
                requeued,
            )
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        """Stop the worker; invocations in progress go back to the queue for the next start."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if tasks:
            logger.info(
                "Returned %d async invocations in progress to the queue for the next start",
                len(tasks),
            )

    async def _work(self) -> None:
        logger.info("Started the async invocation worker")
        while True:
            self._wake.clear()
            try:
                self._dispatch(time.time())
            except Exception:
                logger.exception("Failed to take async invocations from the queue; trying again")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_INTERVAL):
                    await self._wake.wait()

    def _dispatch(self, now: float) -> None:
        for name in self.store.endpoints_with_queued_invocations(now):
            route = self.routing.get(name)
            if route is not None:
                free = self._capacity(name, route) - self._running[name]
                rows = self.store.claim_invocations(name, free, now) if free > 0 else []
            elif self._is_waiting(name):
                # Only expired rows are taken, to fail them; the rest wait
                # for the endpoint's instances.
                rows = self.store.claim_invocations(name, ABANDON_BATCH, now, expired_only=True)
            else:
                rows = self.store.claim_invocations(name, ABANDON_BATCH, now)
            for row in rows:
                self._start_task(row, route)

    def _capacity(self, name: str, route: EndpointRoute) -> int:
        record = self.store.get(ENDPOINT, name)
        config = record.spec.get("EndpointConfig", {}) if record is not None else {}
        client_config = (config.get("AsyncInferenceConfig") or {}).get("ClientConfig") or {}
        per_instance = client_config.get("MaxConcurrentInvocationsPerInstance")

        total = 0
        for variant in route.variants:
            for instance in variant.instances:
                # Each runtime worker serves one request at a time.
                workers = instance.workers
                total += per_instance or workers
        return max(1, total)

    def _is_waiting(self, name: str) -> bool:
        if name in self.routing.starting:
            return True
        record = self.store.get(ENDPOINT, name)
        return record is not None and record.name == name and record.status in _WAITING_STATUSES

    def _start_task(self, row: AsyncInvocationRow, route: EndpointRoute | None) -> None:
        self._running[row.endpoint_name] += 1
        task = asyncio.get_running_loop().create_task(self._process(row, route))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._task_done(done, row.endpoint_name))

    def _task_done(self, task: asyncio.Task[None], endpoint_name: str) -> None:
        self._tasks.discard(task)
        self._running[endpoint_name] -= 1
        if self._running[endpoint_name] <= 0:
            del self._running[endpoint_name]
        self._wake.set()

    # One invocation.

    async def _process(self, row: AsyncInvocationRow, route: EndpointRoute | None) -> None:
        try:
            outcome = await self._attempt(row, route)
            if outcome.retry:
                self.store.release_invocation(row.seq, time.time() + RETRY_DELAY)
                return
            await self._deliver(row, outcome)
        except asyncio.CancelledError:
            self.store.release_invocation(row.seq, row.not_before)
            raise
        except Exception:
            logger.exception(
                "Async invocation %s of endpoint %s failed in Sageport",
                row.inference_id,
                row.endpoint_name,
            )
            await self._deliver(
                row,
                _Outcome(
                    failure="Sageport failed to process the invocation; its log has the "
                    f"details under inference id {row.inference_id}."
                ),
            )
        self.store.finish_invocation(row.seq)

    async def _attempt(self, row: AsyncInvocationRow, route: EndpointRoute | None) -> _Outcome:
        request = row.request
        if time.time() >= row.expires:
            ttl = round(row.expires - row.received)
            return _Outcome(
                failure="The request expired: it waited in the queue for longer than "
                f"RequestTTLSeconds ({ttl} s) before endpoint {row.endpoint_name} could take it."
            )
        if row.attempts > MAX_ATTEMPTS:
            return _Outcome(
                failure=f"The invocation was interrupted {MAX_ATTEMPTS} times by the Sageport "
                "server stopping while it ran, so it was not tried again. Check the server's "
                "log for a crash around those times."
            )
        if route is None:
            return _Outcome(
                failure=f"Endpoint {row.endpoint_name} was deleted or failed before it could "
                "process the request."
            )

        try:
            body = row.body
            if body is None:
                body = await asyncio.to_thread(
                    read_location, request["InputLocation"], MAX_INPUT_BYTES
                )
        except LocationError as exc:
            return _Outcome(failure=str(exc))

        timeout = request["InvocationTimeoutSeconds"]
        try:
            async with asyncio.timeout(timeout):
                result = await invoke(route, body, dict(request["Headers"]), None)
        except ServiceUnavailable as exc:
            logger.debug("Async invocation %s waits: %s", row.inference_id, exc.message)
            return _Outcome(retry=True)
        except RuntimeAPIError as exc:
            return _Outcome(failure=exc.message)
        except TimeoutError:
            return _Outcome(
                failure="The invocation timed out: the model did not answer within "
                f"InvocationTimeoutSeconds ({timeout} s)."
            )
        return _Outcome(output=result.body, content_type=result.content_type)

    async def _deliver(self, row: AsyncInvocationRow, outcome: _Outcome) -> None:
        request = row.request
        if outcome.output is not None:
            try:
                await asyncio.to_thread(
                    write_location,
                    request["OutputLocation"],
                    outcome.output,
                    outcome.content_type,
                    within=request.get("OutputPath"),
                )
            except LocationError as exc:
                outcome = _Outcome(failure=f"The model answered, but {exc}")
            else:
                logger.info(
                    "Async invocation %s of endpoint %s succeeded; wrote %s",
                    row.inference_id,
                    row.endpoint_name,
                    request["OutputLocation"],
                )
                return

        failure = outcome.failure or "The invocation failed."
        logger.warning(
            "Async invocation %s of endpoint %s failed: %s",
            row.inference_id,
            row.endpoint_name,
            failure,
        )
        try:
            await asyncio.to_thread(
                write_location,
                request["FailureLocation"],
                failure.encode("utf-8"),
                "text/plain; charset=utf-8",
                within=request.get("FailurePath"),
            )
        except LocationError as exc:
            logger.error(
                "Could not record the failure of async invocation %s of endpoint %s: %s",
                row.inference_id,
                row.endpoint_name,
                exc,
            )


def _check_input(request: AsyncRequest) -> None:
    # botocore sends no body when Body is not given, so an empty body means none.
    if request.body and request.input_location:
        raise ValidationError(
            "Body and InputLocation are mutually exclusive: give the input inline in Body "
            "or as an InputLocation, not both."
        )
    if not request.body and not request.input_location:
        raise ValidationError(
            "InputLocation is required: give the s3:// or file:// URI of the input, or send "
            f"an input of at most {MAX_INLINE_BODY:,} bytes inline as Body."
        )
    if request.body and len(request.body) > MAX_INLINE_BODY:
        raise ValidationError(
            f"The inline Body has {len(request.body):,} bytes, more than the "
            f"{MAX_INLINE_BODY:,} an asynchronous invocation accepts. Upload the input and "
            "pass its URI as InputLocation."
        )
    if request.input_location:
        _check(request.input_location, "InputLocation")


def _locations(output_config: dict[str, Any], inference_id: str, request: AsyncRequest) -> Accepted:
    # SageMaker names results <id>.out and <id>-error.out. Without an
    # S3FailurePath, Sageport writes failures beside the outputs.
    # NOTE: SageMaker does not document the failure file's name when Filename
    # is given, so Sageport keeps <id>-error.out.
    output_path, failure_path = _output_paths(output_config)
    extension = [request.output_path_extension] if request.output_path_extension else []
    for part in extension:
        # The extension may not climb out of the configured output paths.
        if not is_relative_path(part):
            raise ValidationError(
                f"S3OutputPathExtension {part!r} must be a relative path without '.' or '..' "
                "segments; it is appended to the endpoint config's output paths."
            )
    output = join_location(output_path, *extension, request.filename or f"{inference_id}.out")
    failure = join_location(failure_path, *extension, f"{inference_id}-error.out")

    _check(output, "S3OutputPath")
    _check(failure, "S3FailurePath")
    return Accepted(inference_id, output, failure)


def _output_paths(output_config: dict[str, Any]) -> tuple[str, str]:
    output_path = str(output_config["S3OutputPath"])
    return output_path, str(output_config.get("S3FailurePath") or output_path)


def _check_names(request: AsyncRequest) -> None:
    # SageMaker's InferenceId pattern (\A\S[\p{Print}]*\z) allows '/' and '.',
    # but here the id names the output files, so it must be one plain path
    # segment, also after percent-decoding, which a file:// path goes through.
    if request.inference_id is not None and not is_plain_name(request.inference_id):
        raise ValidationError(
            f"Invalid InferenceId {request.inference_id!r}: it names the output files, so it "
            "may not contain '/' or '\\', be '.' or '..', or contain them once percent-decoded."
        )
    if request.filename is not None and not is_plain_name(request.filename):
        raise ValidationError(
            f"Invalid Filename {request.filename!r}: use one file name without '/' or '\\'."
        )


def _check(uri: str, member: str) -> None:
    try:
        check_location(uri, member)
    except LocationError as exc:
        raise ValidationError(str(exc)) from None

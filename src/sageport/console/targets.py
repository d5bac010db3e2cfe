"""The console's custom URL: send a test request to an operator-allowed origin, and nowhere else.

The console runs inside the server, so a custom URL would otherwise let anyone
who can open the console make the server connect anywhere (server-side request
forgery). The guard therefore:

- accepts only origins the operator listed with ``--allow-test-target``,
  compared exactly after normalising (scheme, lower-case host, explicit port);
- resolves the host once per request and rejects the request if any address is
  link-local or a cloud metadata address, even when the origin is allowed;
- connects to the addresses it checked, through a resolver that returns only
  them, so a second DNS response cannot swap the target;
- follows no redirects, and bounds the time and the size of the response;
- raises the same ``TargetRejected`` for every reason, so the feature cannot be
  used to learn which hosts exist or listen. The reason goes to the server log.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import SplitResult, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from sageport.errors import SageportError

logger = logging.getLogger("sageport.console")

DEFAULT_PORTS = {"http": 80, "https": 443}
# Bounds for one test request to a custom URL. SageMaker's real-time invocations
# time out after 60 seconds and return at most 25 MB (per its quotas page). The
# same bounds keep a custom target from holding the server longer than an endpoint could.
TARGET_TIMEOUT_SECONDS = 60.0
MAX_TARGET_RESPONSE_BYTES = 25 * 2**20

# Never connected to, even when the allow list contains them: the link-local
# ranges, which contain the cloud metadata services (169.254.169.254, and
# fd00:ec2::254 on AWS).
_FORBIDDEN_NETWORKS = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
)

REJECTED_MESSAGE = (
    "The custom URL was rejected. The server sends test requests only to origins its operator "
    "allows, and never to link-local or metadata addresses. To allow one, start the server "
    "with `sageport serve --allow-test-target http://HOST:PORT` (repeatable, or "
    "SAGEPORT_ALLOW_TEST_TARGET with a space-separated list)."
)


class InvalidOrigin(ValueError):
    """An ``--allow-test-target`` value that is not an http or https origin."""


class TargetRejected(SageportError):
    """A custom URL the guard will not connect to. The message is the same for every reason."""

    code = "TestTargetRejected"
    status = 403

    def __init__(self) -> None:
        super().__init__(REJECTED_MESSAGE)


class TargetFailed(SageportError):
    """An allowed target that could not be reached, timed out or returned too large a body."""

    code = "TestTargetFailed"
    status = 502


@dataclass
class TargetResponse:
    """The response of an allowed custom URL."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str]
    elapsed_us: int


def normalize_origin(value: str) -> str:
    """Return ``scheme://host:port`` for an origin; raise InvalidOrigin for anything else."""
    parts = urlsplit(value.strip())
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise InvalidOrigin(
            f"{value!r} is not an origin: give scheme://host[:port] with http or https, "
            "e.g. http://127.0.0.1:9000."
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise InvalidOrigin(
            f"{value!r} is not an origin: leave out the path, query and credentials, "
            "e.g. http://127.0.0.1:9000."
        )
    return _origin_of(parts)


def _origin_of(parts: SplitResult) -> str:
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}"


def is_forbidden_address(address: str) -> bool:
    """Check whether an IP address is link-local or metadata, including IPv4-mapped IPv6 forms."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in _FORBIDDEN_NETWORKS)


class _PinnedResolver(AbstractResolver):
    """Returns only the addresses the guard checked, for the one host it checked."""

    def __init__(self, host: str, addresses: list[ResolveResult]) -> None:
        self._host = host
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host != self._host:
            raise OSError(f"The pinned resolver serves only {self._host}")
        return [dict(address, port=port) for address in self._addresses]  # type: ignore[misc]

    async def close(self) -> None:
        return None


class TargetGuard:
    """Checks custom URLs against the allow list and sends test requests to them."""

    def __init__(self, allowed_origins: tuple[str, ...]) -> None:
        self._allowed = frozenset(allowed_origins)

    async def send(self, url: str, body: bytes, headers: dict[str, str]) -> TargetResponse:
        """POST ``body`` to ``url`` if it is allowed; raise TargetRejected otherwise."""
        parts = self._check_url(url)
        host = parts.hostname or ""
        port = parts.port or DEFAULT_PORTS[parts.scheme]
        addresses = await self._resolve(host, port)
        return await self._post(url, host, addresses, body, headers)

    def _check_url(self, url: str) -> SplitResult:
        try:
            parts = urlsplit(url)
            allowed = (
                parts.scheme in DEFAULT_PORTS
                and bool(parts.hostname)
                and parts.username is None
                and parts.password is None
                and _origin_of(parts) in self._allowed
            )
        except ValueError:
            allowed = False
        if not allowed:
            _reject("the origin is not in --allow-test-target", url)
        return parts

    async def _resolve(self, host: str, port: int) -> list[ResolveResult]:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except OSError as exc:
            _reject(f"resolving the host failed ({exc})", host)

        results: list[ResolveResult] = []
        for family, _type, proto, _name, sockaddr in infos:
            address = str(sockaddr[0])
            if is_forbidden_address(address):
                _reject(f"it resolves to the link-local or metadata address {address}", host)
            results.append(
                {
                    "hostname": host,
                    "host": address,
                    "port": port,
                    "family": family,
                    "proto": proto,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        if not results:
            _reject("the host has no address", host)
        return results

    async def _post(
        self,
        url: str,
        host: str,
        addresses: list[ResolveResult],
        body: bytes,
        headers: dict[str, str],
    ) -> TargetResponse:
        connector = aiohttp.TCPConnector(
            resolver=_PinnedResolver(host, addresses), use_dns_cache=False, force_close=True
        )
        timeout = aiohttp.ClientTimeout(total=TARGET_TIMEOUT_SECONDS)
        started = time.perf_counter_ns()
        try:
            async with (
                aiohttp.ClientSession(
                    connector=connector,
                    timeout=timeout,
                    auto_decompress=False,
                    # No proxy from the environment, and no headers beyond Host,
                    # Content-Length and the checked rows.
                    trust_env=False,
                    skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                ) as session,
                session.post(
                    url, data=body, headers=headers, allow_redirects=False, max_redirects=0
                ) as response,
            ):
                content = await _read_bounded(response)
                return TargetResponse(
                    status=response.status,
                    content_type=response.headers.get("Content-Type", "application/octet-stream"),
                    body=content,
                    headers=_sagemaker_headers(response.headers),
                    elapsed_us=(time.perf_counter_ns() - started) // 1000,
                )
        except TimeoutError:
            raise TargetFailed(
                f"The custom URL timed out: no response within {TARGET_TIMEOUT_SECONDS:g} seconds."
            ) from None
        except aiohttp.ClientError as exc:
            raise TargetFailed(
                f"Sending to the custom URL failed ({type(exc).__name__}: {exc})."
            ) from None


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_TARGET_RESPONSE_BYTES:
            raise TargetFailed(
                f"The custom URL returned more than {MAX_TARGET_RESPONSE_BYTES // 2**20} MB, "
                "the most a real-time endpoint may return."
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _sagemaker_headers(headers: Any) -> dict[str, str]:
    return {
        name: value
        for name, value in headers.items()
        if name.lower().startswith("x-amzn-sagemaker-")
    }


def _reject(reason: str, value: str) -> NoReturn:
    logger.info("Rejected a console test request to %r: %s", value, reason)
    raise TargetRejected

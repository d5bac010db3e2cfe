"""Limits on failed console sign-ins, per client address and for the whole server.

Every failed sign-in takes one token from the client address's bucket and one
from the server's. While either bucket is empty, every sign-in attempt is
rejected before its credentials are checked, whether they are right or wrong,
so a guesser learns nothing from the responses it gets while locked out.
Buckets refill at a steady rate, and successful sign-ins take no token.

The server-wide bucket caps guessing from many addresses at once. The cost is
that a flood of failures can make every user wait before signing in. Sessions
that already exist, and the SigV4 APIs, are not affected.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class FailureRate:
    """How many failures a bucket allows at once, and the seconds it takes to regain one."""

    burst: int
    refill_seconds: float


# A user who mistypes a secret ten times in a row then gets one attempt every
# 30 seconds, which is at most 120 guesses an hour from one address.
PER_ADDRESS = FailureRate(burst=10, refill_seconds=30.0)
# All addresses together: at most 3,600 guesses an hour.
SERVER_WIDE = FailureRate(burst=100, refill_seconds=1.0)
# The maximum number of addresses whose failures are remembered. Past it, the
# address with the oldest failure is forgotten, because its bucket is the fullest.
MAX_TRACKED_ADDRESSES = 10_000


@dataclass(frozen=True)
class Lockout:
    """A rejection of sign-ins: which bucket is empty, and whole seconds until it refills."""

    server_wide: bool
    retry_after: int


class _Bucket:
    def __init__(self, rate: FailureRate, now: float) -> None:
        self._rate = rate
        self._tokens = float(rate.burst)
        self._updated_at = now

    def seconds_until_token(self, now: float) -> float:
        """Return 0 while the bucket has a token, else the seconds until it regains one."""
        self._refill(now)
        return max(0.0, (1.0 - self._tokens) * self._rate.refill_seconds)

    def take(self, now: float) -> bool:
        """Take a token; return whether that emptied the bucket."""
        self._refill(now)
        self._tokens = max(0.0, self._tokens - 1.0)
        return self._tokens < 1.0

    def _refill(self, now: float) -> None:
        gained = (now - self._updated_at) / self._rate.refill_seconds
        self._tokens = min(float(self._rate.burst), self._tokens + gained)
        self._updated_at = now


class SignInLimiter:
    """Token buckets of failed sign-ins: one per client address and one for the server."""

    def __init__(
        self,
        per_address: FailureRate = PER_ADDRESS,
        server_wide: FailureRate = SERVER_WIDE,
        max_addresses: int = MAX_TRACKED_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_address = per_address
        self._max_addresses = max_addresses
        self._clock = clock
        self._server = _Bucket(server_wide, clock())
        self._addresses: OrderedDict[str, _Bucket] = OrderedDict()

    def check(self, address: str | None) -> Lockout | None:
        """Return the lockout that rejects an attempt from ``address`` now, or None."""
        now = self._clock()
        bucket = self._addresses.get(address_key(address))
        own_wait = bucket.seconds_until_token(now) if bucket is not None else 0.0
        server_wait = self._server.seconds_until_token(now)
        if own_wait == 0.0 and server_wait == 0.0:
            return None
        retry_after = max(1, math.ceil(max(own_wait, server_wait)))
        return Lockout(server_wide=server_wait > own_wait, retry_after=retry_after)

    def record_failure(self, address: str | None) -> tuple[bool, bool]:
        """Count a failed sign-in.

        Returns whether it emptied the address's bucket and whether it emptied the server's.
        """
        now = self._clock()
        key = address_key(address)
        bucket = self._addresses.pop(key, None) or _Bucket(self._per_address, now)
        self._addresses[key] = bucket
        while len(self._addresses) > self._max_addresses:
            self._addresses.popitem(last=False)
        return bucket.take(now), self._server.take(now)


def address_key(address: str | None) -> str:
    """Return the key an address's failures count under.

    An IPv6 client usually controls a whole /64 network, so its addresses
    share one bucket. An IPv4-mapped IPv6 address counts as its IPv4 address.
    """
    if address is None:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network(f"{parsed}/64", strict=False))
    return str(parsed)

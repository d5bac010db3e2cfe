"""The authentication a running server enforces, which may tighten while it runs.

With ``--auth``, the mode is fixed. Without it, a server whose listeners are
all loopback starts in ``none`` while no access key exists, and switches to
``sigv4`` the first time its key ring holds a key, so ``sageport keys create``
locks a running server within about a second.

It never switches back while it runs. Deleting the last key leaves a server
that rejects every API request, not one that silently accepts them. The key
ring also reads a credentials file it cannot parse as holding no keys, and a
broken edit must not open the server. A restart with no keys starts in
``none`` again, as the start-up log then reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sageport.auth.keys import KeyRing
from sageport.auth.mode import AuthMode
from sageport.auth.sigv4 import SigV4Verifier
from sageport.protocol.asgi import Scope

logger = logging.getLogger("sageport.auth")


class ServerAuth:
    """The server's current mode, and the SigV4 checks that apply while it is ``sigv4``."""

    def __init__(
        self,
        mode: AuthMode,
        keys: KeyRing,
        follow_keys: bool = False,
        on_sigv4: Callable[[], None] | None = None,
    ) -> None:
        self._mode = mode
        self._keys = keys
        # Only a server that started in none without --auth follows the key ring.
        self._follow_keys = follow_keys and mode == "none"
        self._on_sigv4 = on_sigv4
        self._verifier = SigV4Verifier(keys)
        self._reported_no_keys = False

    @property
    def mode(self) -> AuthMode:
        if self._follow_keys:
            self._follow_key_ring()
        return self._mode

    def check_headers(self, scope: Scope) -> None:
        """Run the SigV4 checks that need no body; raise an AuthenticationError to reject."""
        if self.mode == "sigv4":
            self._verifier.check_headers(scope)

    def check_request(self, scope: Scope, body: bytes) -> None:
        """Verify the request's SigV4 signature over its whole body, while the mode is sigv4."""
        if self.mode == "sigv4":
            self._verifier(scope, body)

    def _follow_key_ring(self) -> None:
        # KeyRing.count stats the credentials file at most once per RELOAD_INTERVAL.
        count = self._keys.count()
        if self._mode == "none":
            if count > 0:
                self._switch_to_sigv4()
            return

        if count == 0 and not self._reported_no_keys:
            logger.warning(
                "No access keys are left; authentication stays sigv4, so every API request is "
                "rejected. Create a key with 'sageport keys create', or restart the server to "
                "run without authentication"
            )
        self._reported_no_keys = count == 0

    def _switch_to_sigv4(self) -> None:
        self._mode = "sigv4"
        logger.warning(
            "An access key now exists: authentication switched from none to sigv4. Unsigned "
            "requests are rejected from now on, and the console needs sign-in"
        )
        if self._on_sigv4 is not None:
            self._on_sigv4()

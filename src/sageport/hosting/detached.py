"""Run blocking hosting work in a thread that a stopping server does not wait for.

``asyncio.to_thread`` uses the loop's default executor, and both
``asyncio.run`` and the interpreter join its threads on the way out. A model
download that stalls would then keep a server that has already logged that
it stopped alive until the download's own deadline, up to an hour, holding the
data directory's lock. The work here runs in a daemon thread instead: the
server waits for its result while it runs, and leaves it behind when it
exits. Fetches unpack into a temporary directory and rename it into place
last, so a fetch left behind leaves no half-written model.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


async def run_detached(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``function`` in a daemon thread and return its result, or raise its exception."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if outcome.done():  # the caller was cancelled
            return
        if error is not None:
            outcome.set_exception(error)
        else:
            outcome.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result = function(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            report: tuple[T | None, BaseException | None] = (None, exc)
        else:
            report = (result, None)
        # A closed loop raises RuntimeError: the server has stopped, so no task waits.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, *report)

    name = getattr(function, "__name__", "work")
    threading.Thread(target=work, name=f"detached-{name}", daemon=True).start()
    return await outcome

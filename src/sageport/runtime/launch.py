"""Start a model server of the user's own so that it dies with the Sageport server.

``python -m sageport.runtime.launch --parent-pid PID -- COMMAND [ARGS...]``
has Linux kill this process when its parent exits, then replaces itself
with COMMAND. The request survives ``execve``, so a server of any kind
(not only the built-in runtime) is stopped when Sageport dies, even by
``kill -9``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from sageport.runtime.process import EXIT_ERROR, EXIT_USAGE, die_with_parent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sageport.runtime.launch")
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.print_usage(sys.stderr)
        return EXIT_USAGE

    if not die_with_parent(args.parent_pid):
        return EXIT_ERROR
    try:
        os.execvp(command[0], command)  # noqa: S606 - the operator's configured command
    except OSError as exc:
        sys.stderr.write(f"Could not start {command[0]}: {exc.strerror}\n")
        return EXIT_ERROR
    return EXIT_ERROR  # not reached: execvp returns only by raising


if __name__ == "__main__":
    raise SystemExit(main())

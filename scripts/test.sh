#!/usr/bin/env bash
# Install the project with its test tools, then run the linters, the type
# checker and the test suite. Works on a fresh machine: it installs uv with pip
# when uv is missing, and Debian's Chromium for the browser tests when apt-get
# is there and Chromium is not.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_uv
ensure_chromium
"${UV[@]}" sync --frozen

"${UV[@]}" run ruff check .
"${UV[@]}" run ruff format --check .
"${UV[@]}" run mypy
"${UV[@]}" run pytest "$@"

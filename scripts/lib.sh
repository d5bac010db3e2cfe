# Shared by the scripts in this folder; sourced, not run.

# Sets UV to a command that runs uv, installing uv with pip if it is missing.
ensure_uv() {
  if command -v uv >/dev/null 2>&1; then
    UV=(uv)
    return
  fi
  if ! python3 -m uv --version >/dev/null 2>&1; then
    echo "Installing uv with pip..." >&2
    python3 -m pip install --quiet --disable-pip-version-check uv
  fi
  UV=(python3 -m uv)
}

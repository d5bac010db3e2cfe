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

# Installs Debian's Chromium for the browser tests when it is missing, if this
# is root on a machine with apt-get (as CI is). Playwright drives
# /usr/bin/chromium and cannot download a browser of its own here; without it
# the browser tests are skipped, except under CI, where they fail.
ensure_chromium() {
  if [[ -x /usr/bin/chromium ]]; then
    return
  fi
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "Chromium is missing: the browser tests will be skipped." \
      "Install it with: sudo apt-get install chromium" >&2
    return
  fi
  echo "Installing Chromium with apt-get..." >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
}

#!/usr/bin/env bash
# The Python side of a fresh machine: Python 3.11 (Debian's, if the machine has none), uv (pinned, from PyPI, into
# the user's cache) and the locked workspace environment in .venv. Idempotent and quick when nothing changed.
set -euo pipefail
UV_VERSION=0.13.9
tools=${XDG_CACHE_HOME:-$HOME/.cache}/sidecart/tools
export UV_PYTHON_DOWNLOADS=never

say() { printf '[setup %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if ! command -v python3.11 >/dev/null 2>&1; then
  say "installing Python 3.11 from Debian's packages"
  sudo=$([[ $(id -u) == 0 ]] || echo "sudo -n")
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3.11 python3.11-venv >/dev/null
fi
if [[ ! -x "$tools/bin/uv" ]] || [[ "$("$tools/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]]; then
  say "installing uv $UV_VERSION into $tools"
  python3.11 -m venv "$tools"
  "$tools/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
"$tools/bin/uv" sync --frozen --python python3.11 --quiet
say "Python environment ready (.venv, locked by uv.lock)"

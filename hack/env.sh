#!/usr/bin/env bash
# Sourced by the other hack/ scripts: makes (or reuses) the Python environment dlscaler runs in.
#
# The virtualenv lives in a user-level cache (not in the clone), keyed by a hash of
# pyproject.toml, so a fresh clone on the same machine reuses it and a change of pinned
# versions builds a new one. Override the cache root with DLSCALER_CACHE.
set -euo pipefail

DLSCALER_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export DLSCALER_ROOT
export DLSCALER_CACHE="${DLSCALER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dlscaler}"
mkdir -p "$DLSCALER_CACHE"

PYTHON="${PYTHON:-python3}"
# Keyed by the pinned dependencies only, so editing tool settings in pyproject.toml
# does not rebuild the environment.
deps_hash="$("$PYTHON" -c 'import sys, tomllib; p = tomllib.load(open(sys.argv[1], "rb"))["project"]; print(p["dependencies"], p.get("optional-dependencies"))' "$DLSCALER_ROOT/pyproject.toml" | sha256sum | cut -c1-12)"
VENV="$DLSCALER_CACHE/venv-$("$PYTHON" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')-$deps_hash"
export VENV

# One environment build at a time (two clones or shells may start at once).
exec {DLSCALER_LOCK_FD}>"$DLSCALER_CACHE/.venv.lock"
flock "$DLSCALER_LOCK_FD"
if [[ ! -x "$VENV/bin/python" || ! -f "$VENV/.complete" ]]; then
  echo "dlscaler: creating Python environment in $VENV (first run only; a few minutes)" >&2
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade "pip==25.3" >&2
  "$VENV/bin/pip" install --quiet -e "$DLSCALER_ROOT[dev]" >&2
  touch "$VENV/.complete"
fi

# The venv is shared between clones: point its editable install at *this* clone.
installed_root="$(cat "$VENV/.root" 2>/dev/null || true)"
if [[ "$installed_root" != "$DLSCALER_ROOT" ]]; then
  "$VENV/bin/pip" install --quiet --no-deps -e "$DLSCALER_ROOT" >&2
  echo "$DLSCALER_ROOT" > "$VENV/.root"
fi
flock -u "$DLSCALER_LOCK_FD"
exec {DLSCALER_LOCK_FD}>&-
export PATH="$VENV/bin:$PATH"
# And put this clone first on the import path: another clone sourcing this script
# re-points the shared editable install, which must not change what runs here meanwhile.
export PYTHONPATH="$DLSCALER_ROOT${PYTHONPATH:+:$PYTHONPATH}"

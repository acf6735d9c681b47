#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the Python environment, builds (or
# reuses) the control-plane binaries, then runs ruff, mypy, import-linter and pytest.
# Extra arguments go to pytest (e.g. `hack/test.sh -k simulator -x`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$DLSCALER_ROOT"

if [[ -x hack/control-plane.sh ]]; then
  hack/control-plane.sh build
  eval "$(hack/control-plane.sh env)"
fi

echo "== ruff"
ruff check .
ruff format --check .
echo "== mypy (strict: dlscaler, simulator)"
mypy
echo "== import-linter"
lint-imports
echo "== pytest"
set +e
HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}" pytest "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit $rc

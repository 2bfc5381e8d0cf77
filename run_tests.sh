#!/usr/bin/env bash
# The tests: unit tests, then nbval re-executes the committed notebooks (smoke profile) and
# compares the outputs of the cells marked NBVAL_CHECK_OUTPUT. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")"
source ./setup_env.sh
export MPLBACKEND=agg PYTHONUNBUFFERED=1
exec python -m pytest tests notebooks --nbval-lax --nbval-current-env \
    --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider "$@"

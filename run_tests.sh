#!/usr/bin/env bash
# The tests: nbval re-executes the committed notebooks (smoke profile: the real pipeline on 14
# grid nodes) and compares the outputs of the cells marked NBVAL_CHECK_OUTPUT, then the unit
# tests (some use the smoke artefacts). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")"
source ./setup_env.sh
export MPLBACKEND=agg PYTHONUNBUFFERED=1
exec python -m pytest notebooks tests --nbval-lax --nbval-current-env \
    --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider "$@"

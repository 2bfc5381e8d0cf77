#!/usr/bin/env bash
# The main job: run every notebook in order with papermill.
#
#   ./run_all.sh                       # smoke profile (minutes, CPU)
#   ./run_all.sh --profile cpu         # the real CPU run (builds the full grid first: ~80 min)
#   ./run_all.sh --profile paper       # the paper's settings (GPU)
#   ./run_all.sh --from 03             # start at notebook 03 (earlier results must exist)
#   ./run_all.sh --update-notebooks    # smoke only: store the executed notebooks as notebooks/*.ipynb
#
# Stops at the first failing notebook and says which cell failed.
set -euo pipefail
cd "$(dirname "$0")"
source ./setup_env.sh
export MPLBACKEND=agg PYTHONUNBUFFERED=1
exec python -m paper_lib run "$@"

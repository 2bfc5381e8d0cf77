#!/usr/bin/env bash
# The documentation site: a strict MkDocs build of docs/, the committed cpu run's executed
# notebooks and figures into site/ (git-ignored). Fails on a broken link, a missing image or an
# unknown reference. Extra arguments go to `mkdocs build`.
#
#   ./build_docs.sh               # → site/index.html
#   ./build_docs.sh -d /tmp/site  # elsewhere
set -euo pipefail
cd "$(dirname "$0")"
source ./setup_env.sh
export NO_MKDOCS_2_WARNING=1   # Material's banner about MkDocs 2, printed on every build
exec python -m mkdocs build --strict "$@"

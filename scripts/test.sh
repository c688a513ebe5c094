#!/usr/bin/env bash
# The whole test suite: lint, types, unit and integration tests against real sshd hosts.
# Run as root on Debian (the suite starts sshd servers on 127.0.0.x). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check src tests bench
.venv/bin/mypy
# The docs site, in strict mode: a broken link or anchor, or a page not in the nav, fails.
docs_site=$(mktemp -d)
trap 'rm -rf "$docs_site"' EXIT
.venv/bin/mkdocs build --strict --quiet --site-dir "$docs_site"
status=0
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" || status=$?
if [ "$status" = 5 ]; then
  echo "test.sh: pytest collected no tests; an empty run is a failure, not a pass" >&2
  exit 1
fi
exit "$status"

#!/usr/bin/env bash
# Runs every check and test of the project. This is what `make test` and CI run.
# It installs what the checks need (staticcheck, pinned) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK_VERSION="0.8.2"  # honnef.co/go/tools, pinned
export PATH="$(go env GOPATH)/bin:$PATH"

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...
# The comparison benchmark against DBOS is a module of its own (bench/dbos),
# so that docket's module does not depend on DBOS; it must still build.
(cd bench/dbos && go vet ./...)

echo "== staticcheck"
if ! staticcheck -version 2>/dev/null | grep -qF "($STATICCHECK_VERSION)"; then
  go install "honnef.co/go/tools/cmd/staticcheck@v$STATICCHECK_VERSION"
fi
staticcheck ./...
(cd bench/dbos && staticcheck ./...)

./scripts/chromium.sh
echo "== go test -race"
source scripts/postgres.sh
go test -race -count=1 "$@" ./...

# Every benchmark runs once (both modules), so that one broken at run time
# fails here rather than when someone next measures; the figures themselves
# are measured by hand into BENCHMARKS.md, never asserted. Skipped when the
# script is given go test arguments (a chosen -run, say).
if [ $# -eq 0 ]; then
  echo "== benchmarks, once each"
  go test -run '^$' -bench . -benchtime 1x ./...
  # DBOS's side needs the server that scripts/postgres.sh found or started.
  if [ -n "${DOCKET_TEST_POSTGRES:-}" ]; then
    (cd bench/dbos && DOCKET_BENCH_URL="$DOCKET_TEST_POSTGRES" go test -run '^$' -bench . -benchtime 1x ./...)
  fi
fi

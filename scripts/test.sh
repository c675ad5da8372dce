#!/usr/bin/env bash
# The README's test command: vet, then every test with the race detector.
# Tests start their own PostgreSQL and redis-server (see internal/testenv).
set -euo pipefail
cd "$(dirname "$0")/.."
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi
go vet ./...
go test -race -count=1 -timeout 20m ./... "$@"

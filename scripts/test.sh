#!/usr/bin/env bash
# The README's test command. It sets up what the tests need, then runs the
# gofmt check, go vet, every test with the race detector and every benchmark
# once. Tests start
# their own PostgreSQL, redis-server and pgbouncer (see internal/testenv);
# nothing needs to be running.
#
#   ./scripts/test.sh                  everything
#   ./scripts/test.sh -run TestX ...   arguments go to `go test`
#
# Set-up, before anything runs:
#   1. Go: the one on PATH, else /usr/local/go/bin/go (where go.dev's
#      tarball puts it). Go is not installed for you.
#   2. Room: a run takes about 3 GiB of disk at its peak. When Go's build
#      cache, work directory or module cache has less than 4 GiB free,
#      the run keeps them (and the tests' temporary files) under /dev/shm
#      if it has the room, saying so; otherwise it says how little room
#      there is and goes on.
#   3. Every command listed in NEEDS below is looked up on PATH, in /usr/bin,
#      /usr/sbin and /usr/lib/postgresql/*/bin (where the tests look too),
#      and every Python module in PY_MODULES is imported with
#      /usr/bin/python3. The gcc found must build a C program as cgo does
#      (libc's headers, crt1.o: libc6-dev); one that cannot counts as
#      missing, so build-essential is installed.
#      The Debian packages of the missing ones are installed with apt-get,
#      after one line saying which: as root, or through sudo when
#      `sudo -n true` works. Otherwise the script stops, before running
#      anything, with the exact `sudo apt-get install` line to run.
#
# Test hooks, for exercising the set-up on a machine that has everything
# (each says on stderr that it is in effect):
#   TEST_SH_PROBE_PATH=dir:dir  look the NEEDS commands up only in these
#                               directories (set but empty: nowhere, so
#                               every package counts as missing).
#   TEST_SH_DRY_RUN=1           do the set-up checks, print what would be
#                               installed (or the line the user would be
#                               told to run), then exit without installing
#                               or testing anything: 0 if the set-up would
#                               go ahead, 1 if it would stop.
#   TEST_SH_FREE_KB=N           count Go's build cache, work directory and
#                               module cache as having N KiB free.
#   TEST_SH_SPARE_DIR=dir       use dir where /dev/shm would be used.
# scripts/readme_test.go uses them, and checks that the README's commands
# and .ci/run still call this script.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "test.sh: $*" >&2; }

# NEEDS: each command the tests run, and the Debian package that provides
# it. To need another command, add a line.
NEEDS=(
	"redis-server redis-server"  # internal/testenv starts one per test
	"redis-cli    redis-tools"   # Redis Cluster tests
	"pdftotext    poppler-utils" # tests read the text of rendered PDFs
	"pgbouncer    pgbouncer"     # integration: transaction pooling (/usr/sbin)
	"initdb       postgresql"    # internal/pgserver (/usr/lib/postgresql/*/bin)
	"postgres     postgresql"
	# go test -race needs cgo, which the go command turns off when it finds
	# no C compiler ("-race requires cgo"); build-essential brings gcc with
	# libc6-dev's headers, which gcc alone (without recommends) lacks: a gcc
	# that builds no C program (cc_builds) counts as missing too.
	"gcc          build-essential"
)

# PY_MODULES: each Python module the tests import with Debian's python3
# (/usr/bin/python3: the load command's python scenario runs a Celery
# worker), and the Debian package that provides it. A module counts as
# present when `python3 -c 'import MODULE'` succeeds; with
# TEST_SH_PROBE_PATH set, with the first python3 found there.
PY_MODULES=(
	"celery    python3-celery"
	"reportlab python3-reportlab"
	"psycopg2  python3-psycopg2"
	"redis     python3-redis"
)

dry_run=
if [ -n "${TEST_SH_DRY_RUN:-}" ]; then
	dry_run=1
	say "TEST_SH_DRY_RUN set: checking the set-up only; nothing is installed or run"
fi

# 1. Go.
if ! command -v go >/dev/null 2>&1; then
	if [ -x /usr/local/go/bin/go ]; then
		export PATH="/usr/local/go/bin:$PATH"
	else
		say "go not found on PATH or in /usr/local/go/bin: install Go $(sed -n 's/^go //p' go.mod) or newer (https://go.dev/doc/install), then run ./scripts/test.sh again"
		exit 1
	fi
fi
say "$(go version)"

# 2. Room. A run takes about 3 GiB of disk at its peak: Go's build cache
# (GOCACHE, the packages built with and without the race detector), the go
# command's work directory (GOTMPDIR, else TMPDIR, else /tmp: the test
# binaries it links) and the module cache (GOMODCACHE); the tests' own
# servers live in /dev/shm where there is one (internal/testenv). When the
# file system of any of them has less than NEED_KB free, and /dev/shm has
# that much and lets programs run from it, the run keeps all four in a
# directory there (the caches unless the user set GOCACHE or GOMODCACHE),
# saying so, and removes it when it ends: the next run builds everything
# again. Otherwise it says how little room there is and goes on: the run
# may then fail with "no space left on device".
NEED_KB=$((4 * 1024 * 1024))
free_kb() { # free KiB on the file system of $1, or of its nearest existing parent
	local p=$1
	while [ ! -e "$p" ] && [ "$p" != / ]; do p=$(dirname "$p"); done
	df -Pk "$p" 2>/dev/null | awk 'NR == 2 { print $4 }'
}
human() { awk -v k="$1" 'BEGIN { if (k >= 1048576) printf "%.1f GiB", k / 1048576; else printf "%.0f MiB", k / 1024 }'; }
for hook in TEST_SH_FREE_KB TEST_SH_SPARE_DIR; do
	if [ -n "${!hook:-}" ]; then
		say "$hook=${!hook} set: a test hook for the room check"
	fi
done
short=()
for entry in "GOCACHE=$(go env GOCACHE)" "GOTMPDIR=${GOTMPDIR:-${TMPDIR:-/tmp}}" "GOMODCACHE=$(go env GOMODCACHE)"; do
	var=${entry%%=*} dir=${entry#*=}
	if [ -n "${TEST_SH_FREE_KB:-}" ]; then
		kb=$TEST_SH_FREE_KB
	else
		kb=$(free_kb "$dir")
	fi
	if [ -n "$kb" ] && [ "$kb" -lt "$NEED_KB" ]; then
		short+=("$var ($dir: $(human "$kb") free)")
	fi
done
if [ ${#short[@]} -gt 0 ]; then
	short_list=$(printf '%s, ' "${short[@]}")
	short_list=${short_list%, }
	spare=${TEST_SH_SPARE_DIR:-/dev/shm}
	spare_kb=$(free_kb "$spare")
	runs=
	if [ -d "$spare" ] && [ -w "$spare" ] && [ -n "$spare_kb" ] && [ "$spare_kb" -ge "$NEED_KB" ]; then
		probe=$(mktemp "$spare/test-sh-exec.XXXXXX")
		printf '#!/bin/sh\nexit 0\n' >"$probe"
		chmod +x "$probe"
		"$probe" 2>/dev/null && runs=1
		rm -f "$probe"
	fi
	if [ -n "$runs" ]; then
		say "less than $(human "$NEED_KB") free for $short_list: keeping Go's build cache, work and module cache and the tests' temporary files in a directory under $spare ($(human "$spare_kb") free there), removed when the run ends"
		if [ -z "$dry_run" ]; then
			spare_root=$(mktemp -d "$spare/tenantworker-test.XXXXXX")
			trap 'rm -rf "$spare_root"' EXIT
			mkdir "$spare_root/tmp"
			[ -n "$(go env -changed GOCACHE 2>/dev/null)" ] || export GOCACHE="$spare_root/gocache"
			[ -n "$(go env -changed GOMODCACHE 2>/dev/null)" ] || export GOMODCACHE="$spare_root/gomodcache"
			export GOTMPDIR="$spare_root/tmp" TMPDIR="$spare_root/tmp"
		fi
	else
		say "less than $(human "$NEED_KB") free for $short_list, which a run needs at its peak, and no room in $spare to use instead: the run may fail with \"no space left on device\""
	fi
fi

# 3. The commands in NEEDS.
probe_dirs() {
	if [ -n "${TEST_SH_PROBE_PATH+set}" ]; then
		echo "$TEST_SH_PROBE_PATH"
		return
	fi
	local dirs="$PATH:/usr/bin:/usr/sbin:/bin:/sbin" d
	for d in /usr/lib/postgresql/*/bin; do
		[ -d "$d" ] && dirs+=":$d"
	done
	echo "$dirs"
}

# cc_builds reports whether the C compiler $1 compiles and links a program
# that includes libc's headers, as go test -race's cgo does (runtime/cgo).
# A gcc without libc6-dev (installed without recommends, or libc6-dev
# removed since) fails here ("stdlib.h: No such file or directory", "cannot
# find crt1.o"), and go test -race would fail the same way building
# runtime/cgo, after gofmt and go vet.
cc_builds() {
	local dir ok=0
	dir=$(mktemp -d)
	printf '#include <stdlib.h>\n#include <pthread.h>\nint main(void) { return 0; }\n' >"$dir/cgo.c"
	"$1" -o "$dir/cgo" "$dir/cgo.c" -lpthread >/dev/null 2>&1 || ok=1
	rm -rf "$dir"
	return $ok
}

# find_missing sets missing (commands) and pkgs (their packages, once each).
find_missing() {
	local dirs entry cmd pkg d ok
	IFS=: read -ra dirs <<<"$(probe_dirs)"
	missing=() pkgs=()
	for entry in "${NEEDS[@]}"; do
		read -r cmd pkg <<<"$entry"
		ok=
		for d in "${dirs[@]}"; do
			if [ -n "$d" ] && [ -f "$d/$cmd" ] && [ -x "$d/$cmd" ]; then
				ok=1
				break
			fi
		done
		if [ -n "$ok" ] && [ "$cmd" = gcc ] && ! cc_builds "$d/$cmd"; then
			cmd="libc6-dev (gcc builds no C program)"
			ok=
		fi
		[ -n "$ok" ] && continue
		missing+=("$cmd")
		[[ " ${pkgs[*]} " == *" $pkg "* ]] || pkgs+=("$pkg")
	done
	local py=/usr/bin/python3 mod
	if [ -n "${TEST_SH_PROBE_PATH+set}" ]; then
		py=
		for d in "${dirs[@]}"; do
			if [ -n "$d" ] && [ -f "$d/python3" ] && [ -x "$d/python3" ]; then
				py="$d/python3"
				break
			fi
		done
	fi
	for entry in "${PY_MODULES[@]}"; do
		read -r mod pkg <<<"$entry"
		if [ -n "$py" ] && [ -x "$py" ] && "$py" -c "import $mod" >/dev/null 2>&1; then
			continue
		fi
		missing+=("python3:$mod")
		[[ " ${pkgs[*]} " == *" $pkg "* ]] || pkgs+=("$pkg")
	done
}

if [ -n "${TEST_SH_PROBE_PATH+set}" ]; then
	say "TEST_SH_PROBE_PATH set: looking for ${NEEDS[*]%% *} only in '${TEST_SH_PROBE_PATH}', and for the Python modules ${PY_MODULES[*]%% *} with the python3 there"
fi
find_missing
if [ ${#pkgs[@]} -gt 0 ]; then
	install=(install -y --no-install-recommends "${pkgs[@]}")
	if ! command -v apt-get >/dev/null 2>&1; then
		say "missing ${missing[*]}, and there is no apt-get to install them: install them (Debian packages: ${pkgs[*]}), then run ./scripts/test.sh again"
		exit 1
	fi
	if [ "$(id -u)" -eq 0 ]; then
		sudo=()
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo=(sudo)
	else
		say "missing ${missing[*]}; install with this command, then run ./scripts/test.sh again:"
		echo "sudo apt-get ${install[*]}" >&2
		exit 1
	fi
	if [ -n "$dry_run" ]; then
		say "dry run: would install ${pkgs[*]} (for ${missing[*]}) with: ${sudo[*]:+sudo }apt-get update && ${sudo[*]:+sudo }apt-get ${install[*]}"
		exit 0
	fi
	say "installing ${pkgs[*]} (for ${missing[*]}) with ${sudo[*]:+sudo }apt-get"
	log=$(mktemp)
	# Debian's packages start their system services on install; the tests
	# start their own servers on free ports and do not use them.
	if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq "${install[@]}"; } >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		say "apt-get failed (output above); fix that and run ./scripts/test.sh again, or install the packages yourself: sudo apt-get ${install[*]}"
		exit 1
	fi
	rm -f "$log"
	find_missing
	if [ ${#missing[@]} -gt 0 ]; then
		say "still missing ${missing[*]} after installing; looked in $(probe_dirs)"
		exit 1
	fi
elif [ -n "$dry_run" ]; then
	say "dry run: nothing to install"
fi
if [ -n "$dry_run" ]; then
	exit 0
fi

# 4. The checks and the tests.
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "gofmt needed:"
	echo "$unformatted"
	exit 1
fi
go vet ./...
go test -race -count=1 -timeout 20m ./... "$@"
# Every benchmark once, without the race detector, so that one the README or
# docs/performance.md cites cannot break unnoticed (about 2 min); skipped
# when arguments pick what to test.
if [ $# -eq 0 ]; then
	go test -run '^$' -bench . -benchtime 1x -timeout 10m ./...
fi

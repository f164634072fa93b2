#!/usr/bin/env bash
# Makes sure a PostgreSQL server is there for the tests of store/postgres
# (and whatever else uses store/postgres/pgtest), and exports its URL as
# DOCKET_TEST_POSTGRES.
#
#   source scripts/postgres.sh   # from a test script: exports the URL; a server
#                                # it started is stopped when that shell exits
#   scripts/postgres.sh          # by hand: starts one if need be, prints the
#                                # export line and the command that stops it
#
# In order:
#   1. DOCKET_TEST_POSTGRES, if it is set and answers.
#   2. A server on 127.0.0.1:5432 that lets user postgres in without a password
#      (trust authentication), as on developers' machines and CI.
#   3. A throwaway cluster: PostgreSQL is installed from Debian's packages if
#      it is missing, a cluster is made with initdb in a temporary directory
#      (trust authentication, fsync off) and started with pg_ctl on a free
#      loopback port from 55432 on, as user postgres when run by root. It is
#      stopped and removed by docket_pg_stop, which an EXIT trap calls (after
#      any EXIT trap that was set before).
# DOCKET_PG_THROWAWAY=1 skips 1 and 2, to try 3 on a machine that has a server.
# DOCKET_PG_LIB is where Debian's packages put each version's programs
# (/usr/lib/postgresql).
#
# With CI=true, failing to provide a server is an error; otherwise the
# tests that need one skip themselves.
#
# Sourced, this file defines functions prefixed docket_pg_ and variables
# prefixed DOCKET_PG_, and leaves the shell's options as they were.

docket_pg_log() { echo "postgres.sh: $*" >&2; }

# docket_pg_answers URL: does a server at URL let us in?
docket_pg_answers() {
  if command -v psql >/dev/null 2>&1; then
    PGCONNECT_TIMEOUT=5 psql -w -X -q -At -d "$1" -c 'SELECT 1' >/dev/null 2>&1
  elif command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -t 5 -d "$1" >/dev/null 2>&1
  else
    return 1
  fi
}

# docket_pg_listening PORT: does anything listen on 127.0.0.1:PORT?
docket_pg_listening() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# docket_pg_root_do CMD...: runs CMD as root (through sudo when not root).
docket_pg_root_do() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    docket_pg_log "need root to run: $*"
    return 1
  fi
}

# docket_pg_install PACKAGE...: installs Debian packages.
docket_pg_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    docket_pg_log "no apt-get to install $*"
    return 1
  fi
  docket_pg_log "installing $* from Debian packages"
  docket_pg_root_do env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
    docket_pg_root_do env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# docket_pg_bindir: prints the directory of initdb and pg_ctl, newest
# version first, installing PostgreSQL when there is none.
docket_pg_bindir() {
  local dir attempt
  for attempt in 1 2; do
    dir=$(printf '%s\n' "${DOCKET_PG_LIB:-/usr/lib/postgresql}"/*/bin | sort -V | tail -n 1)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
      dirname "$(command -v initdb)"
      return 0
    fi
    [ "$attempt" = 1 ] && { docket_pg_install postgresql || return 1; }
  done
  docket_pg_log "PostgreSQL installed, but no initdb found"
  return 1
}

# docket_pg_as_owner CMD...: runs CMD as DOCKET_PG_USER (the cluster's owner).
docket_pg_as_owner() {
  if [ "$DOCKET_PG_USER" = "$(id -un)" ]; then
    "$@"
  elif command -v runuser >/dev/null 2>&1; then
    runuser -u "$DOCKET_PG_USER" -- "$@"
  else
    su -s /bin/sh "$DOCKET_PG_USER" -c "$(printf '%q ' "$@")"
  fi
}

# docket_pg_throwaway: starts a throwaway cluster and sets DOCKET_PG_URL.
docket_pg_throwaway() {
  local bin port
  bin=$(docket_pg_bindir) || return 1
  # PostgreSQL refuses to run as root: root runs it as user postgres.
  DOCKET_PG_USER=$(id -un)
  if [ "$(id -u)" = 0 ]; then
    DOCKET_PG_USER=postgres
    if ! id postgres >/dev/null 2>&1; then
      useradd --system --no-create-home --shell /usr/sbin/nologin postgres || return 1
    fi
  fi
  DOCKET_PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/docket-pg.XXXXXX") || return 1
  chmod 700 "$DOCKET_PG_DIR"
  [ "$(id -u)" = 0 ] && chown "$DOCKET_PG_USER" "$DOCKET_PG_DIR"
  port=55432
  while docket_pg_listening "$port"; do
    port=$((port + 1))
    if [ "$port" -gt 55532 ]; then
      docket_pg_log "no free port in 55432-55532"
      return 1
    fi
  done
  docket_pg_log "starting a throwaway cluster in $DOCKET_PG_DIR on 127.0.0.1:$port ($bin)"
  if ! docket_pg_as_owner "$bin/initdb" -D "$DOCKET_PG_DIR/data" -U postgres -A trust -E UTF8 --locale=C \
    --no-sync >"$DOCKET_PG_DIR/initdb.log" 2>&1; then
    docket_pg_log "initdb failed:"; cat "$DOCKET_PG_DIR/initdb.log" >&2
    return 1
  fi
  DOCKET_PG_CTL="$bin/pg_ctl"
  if ! docket_pg_as_owner "$bin/pg_ctl" -D "$DOCKET_PG_DIR/data" -l "$DOCKET_PG_DIR/server.log" -w -t 60 \
    -o "-p $port -k $DOCKET_PG_DIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off -c full_page_writes=off" \
    start >/dev/null; then
    docket_pg_log "the server did not start:"; cat "$DOCKET_PG_DIR/server.log" >&2
    docket_pg_stop
    return 1
  fi
  DOCKET_PG_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
}

# docket_pg_stop: stops and removes the throwaway cluster, if one was started.
docket_pg_stop() {
  [ -n "${DOCKET_PG_DIR:-}" ] || return 0
  if [ -f "$DOCKET_PG_DIR/data/postmaster.pid" ]; then
    docket_pg_as_owner "$DOCKET_PG_CTL" -D "$DOCKET_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$DOCKET_PG_DIR"
  DOCKET_PG_DIR=
}

# docket_pg_trap_exit: makes the EXIT trap stop the cluster, after running
# the EXIT trap that was there before.
docket_pg_trap_exit() {
  local prev  # trap -- 'command' EXIT
  eval "prev=($(trap -p EXIT))"
  DOCKET_PG_PREV_EXIT=${prev[2]:-}
  trap 'docket_pg_stop; eval "$DOCKET_PG_PREV_EXIT"' EXIT
}

docket_pg_main() {
  local default="postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
  DOCKET_PG_URL=
  if [ "${DOCKET_PG_THROWAWAY:-}" != 1 ]; then
    if [ -n "${DOCKET_TEST_POSTGRES:-}" ]; then
      if docket_pg_answers "$DOCKET_TEST_POSTGRES"; then
        DOCKET_PG_URL=$DOCKET_TEST_POSTGRES
      else
        docket_pg_log "DOCKET_TEST_POSTGRES is set but does not answer; looking further"
      fi
    fi
    if [ -z "$DOCKET_PG_URL" ] && docket_pg_listening 5432; then
      if ! command -v psql >/dev/null 2>&1; then
        docket_pg_install postgresql-client || true
      fi
      if docket_pg_answers "$default"; then
        DOCKET_PG_URL=$default
      else
        docket_pg_log "something listens on 127.0.0.1:5432 but does not let user postgres in without a password"
      fi
    fi
  fi
  if [ -z "$DOCKET_PG_URL" ] && ! docket_pg_throwaway; then
    docket_pg_stop
    if [ "${CI:-}" = true ]; then
      docket_pg_log "no PostgreSQL server for the tests"
      return 1
    fi
    docket_pg_log "no PostgreSQL server: its tests will be skipped"
    return 0
  fi
  export DOCKET_TEST_POSTGRES=$DOCKET_PG_URL
  docket_pg_log "DOCKET_TEST_POSTGRES=$DOCKET_TEST_POSTGRES"
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  # Sourced: the cluster lives as long as the shell that sourced this.
  docket_pg_main || return 1
  if [ -n "${DOCKET_PG_DIR:-}" ]; then
    docket_pg_trap_exit
  fi
else
  # Run: leave the cluster running and say how to use and stop it.
  set -euo pipefail
  docket_pg_main
  echo "export DOCKET_TEST_POSTGRES='$DOCKET_TEST_POSTGRES'"
  if [ -n "${DOCKET_PG_DIR:-}" ]; then
    if [ "$DOCKET_PG_USER" = "$(id -un)" ]; then
      echo "# to stop it: $DOCKET_PG_CTL -D $DOCKET_PG_DIR/data -m immediate stop && rm -rf $DOCKET_PG_DIR"
    else
      echo "# to stop it: runuser -u $DOCKET_PG_USER -- $DOCKET_PG_CTL -D $DOCKET_PG_DIR/data -m immediate stop && rm -rf $DOCKET_PG_DIR"
    fi
  fi
fi

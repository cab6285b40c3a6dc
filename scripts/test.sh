#!/usr/bin/env bash
# Build Emporium and run its test suite against throwaway PostgreSQL and Redis instances.
#
#   scripts/test.sh [extra ctest args...]        e.g. scripts/test.sh -R persistence
#
# Environment:
#   EMPORIUM_BUILD_DIR    build directory (default build; relative to the repository root)
#   EMPORIUM_BUILD_TYPE   CMAKE_BUILD_TYPE (default Release)
#   EMPORIUM_CMAKE_ARGS   extra cmake arguments, split on whitespace
#   EMPORIUM_JOBS         build parallelism (default 2)
#   EMPORIUM_TEST_KEEP_LOGS  when set, the logs of the servers the tests started are copied to
#                         BUILD_DIR/test-logs/ before the scratch directory is removed
#
# Exported to the tests:
#   EMPORIUM_TEST_PG_URL      postgresql://emporium@127.0.0.1:PORT/emporium_test (emporium is a
#                             superuser of this throwaway cluster)
#   EMPORIUM_TEST_REDIS_URL   redis://127.0.0.1:PORT/0
#   EMPORIUM_TEST_PG_BIN      /usr/lib/postgresql/15/bin
#   EMPORIUM_TEST_PG_DATA     the cluster's data directory
#   EMPORIUM_TEST_PG_PORT, EMPORIUM_TEST_REDIS_PORT
#   EMPORIUM_TEST_PG_OPTS     the postmaster options it was started with (pg_ctl -o "...")
#   EMPORIUM_TEST_PG_CTL      a pg_ctl wrapper that runs as the cluster's owner (as root, the
#                             server must run as user postgres), e.g.
#                             "$EMPORIUM_TEST_PG_CTL" -D "$EMPORIUM_TEST_PG_DATA" -m immediate stop
#                             "$EMPORIUM_TEST_PG_CTL" -D "$EMPORIUM_TEST_PG_DATA" -w \
#                                 -l "$EMPORIUM_TEST_PG_DATA/server.log" -o "$EMPORIUM_TEST_PG_OPTS" start
#   EMPORIUM_TEST_REDIS_DIR   Redis's directory (redis.pid, redis.log)
#   EMPORIUM_TEST_TMP         a scratch directory removed at exit
#   EMPORIUM_TEST_NODE_MODULES  npm packages the tests run with node (.local/npm/node_modules)
#   EMPORIUM_TEST_CHROMIUM    the browser the browser test drives (default /usr/bin/chromium)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$EMPORIUM_ROOT"

build_dir="${EMPORIUM_BUILD_DIR:-build}"
[[ "$build_dir" == /* ]] || build_dir="$EMPORIUM_ROOT/$build_dir"
build_type="${EMPORIUM_BUILD_TYPE:-Release}"
cmake_args=()
if [[ -n "${EMPORIUM_CMAKE_ARGS:-}" ]]; then
  read -r -a cmake_args <<<"$EMPORIUM_CMAKE_ARGS"
fi

# Headless Chromium for the live page's browser test (tests/browser/, label browser).
EMPORIUM_DEPS+=(chromium)
emporium_ensure_deps
emporium_build "$build_dir" "$build_type" "${cmake_args[@]}"
# A real OpenAPI 3.1 validator for the "openapi: ..." test, and playwright-core for the browser
# test (1.61.1: the last release whose engines accept Node 18, Debian 12's; it drives Debian's
# Chromium 15x over CDP), from the npm registry.
emporium_npm_install "$EMPORIUM_ROOT/.local/npm" @seriousme/openapi-schema-validator@2.11.0 \
  playwright-core@1.61.1

tmp=""
pg_data=""
redis_dir=""
# shellcheck disable=SC2317 # functions below run from traps
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n "$pg_data" ]]; then
    emporium_pg_stop "$pg_data" >/dev/null 2>&1 || emporium_err "could not stop PostgreSQL in $pg_data"
  fi
  if [[ -n "$redis_dir" ]]; then
    emporium_redis_stop "$redis_dir" >/dev/null 2>&1 || emporium_err "could not stop Redis in $redis_dir"
  fi
  if [[ -n "$tmp" && -d "$tmp" ]]; then
    # EMPORIUM_TEST_KEEP_LOGS: the servers' logs outlive the scratch directory (.ci/run's
    # sanitizer step looks for reports in them).
    if [[ -n "${EMPORIUM_TEST_KEEP_LOGS:-}" ]] && compgen -G "$tmp/emporium-e2e-*.log" >/dev/null; then
      mkdir -p "$build_dir/test-logs" && cp "$tmp"/emporium-e2e-*.log "$build_dir/test-logs/" || true
    fi
    rm -rf "$tmp"
  fi
  if [[ -n "$pg_data" || -n "$redis_dir" ]]; then
    echo "test.sh: stopped services"
  fi
  exit "$rc"
}
trap cleanup EXIT
child_pid=""
# shellcheck disable=SC2317
on_signal() {
  local code="$1"
  trap '' INT TERM
  if [[ -n "$child_pid" ]]; then
    # ctest runs in its own process group: stop it and the test it is running.
    kill -TERM -- "-$child_pid" 2>/dev/null || true
    (sleep 15 && kill -KILL -- "-$child_pid" 2>/dev/null) &
    local watchdog=$!
    wait "$child_pid" 2>/dev/null || true
    kill "$watchdog" 2>/dev/null || true
  fi
  exit "$code"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

tmp="$(mktemp -d /tmp/emporium-test.XXXXXXXX)"
chmod 755 "$tmp" # user postgres must traverse it to reach the data directory

pg_opts=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off)
pg_port=""
for attempt in 1 2 3 4 5; do
  port="$(emporium_free_port)"
  pg_data="$tmp/pg"
  if emporium_pg_start "$pg_data" "$port" --db emporium_test --superuser "${pg_opts[@]}"; then
    pg_port="$port"
    break
  fi
  emporium_log "PostgreSQL start attempt $attempt failed; retrying on another port"
done
if [[ -z "$pg_port" ]]; then
  emporium_err "could not start PostgreSQL after 5 attempts"
  exit 1
fi

redis_port=""
redis_dir="$tmp/redis"
for attempt in 1 2 3 4 5; do
  port="$(emporium_free_port)"
  if emporium_redis_start "$redis_dir" "$port"; then
    redis_port="$port"
    break
  fi
  emporium_log "Redis start attempt $attempt failed; retrying on another port"
done
if [[ -z "$redis_port" ]]; then
  emporium_err "could not start Redis after 5 attempts"
  exit 1
fi

# A pg_ctl that runs as the cluster's owner, for fault-injection tests.
mkdir -p "$tmp/bin"
if [[ "$(id -u)" == 0 ]]; then
  cat >"$tmp/bin/pg_ctl" <<EOF
#!/bin/sh
cd / && exec runuser -u postgres -- "$EMPORIUM_PG_BIN/pg_ctl" "\$@"
EOF
else
  cat >"$tmp/bin/pg_ctl" <<EOF
#!/bin/sh
exec "$EMPORIUM_PG_BIN/pg_ctl" "\$@"
EOF
fi
chmod 755 "$tmp/bin/pg_ctl"

export EMPORIUM_TEST_PG_URL="postgresql://emporium@127.0.0.1:$pg_port/emporium_test"
export EMPORIUM_TEST_REDIS_URL="redis://127.0.0.1:$redis_port/0"
export EMPORIUM_TEST_PG_BIN="$EMPORIUM_PG_BIN"
export EMPORIUM_TEST_PG_DATA="$pg_data"
export EMPORIUM_TEST_PG_PORT="$pg_port"
export EMPORIUM_TEST_PG_OPTS="${EMPORIUM_PG_STARTED_OPTS:-}"
export EMPORIUM_TEST_PG_CTL="$tmp/bin/pg_ctl"
export EMPORIUM_TEST_REDIS_PORT="$redis_port"
export EMPORIUM_TEST_REDIS_DIR="$redis_dir"
export EMPORIUM_TEST_TMP="$tmp"
export EMPORIUM_TEST_NODE_MODULES="$EMPORIUM_ROOT/.local/npm/node_modules"

emporium_log "PostgreSQL on 127.0.0.1:$pg_port, Redis on 127.0.0.1:$redis_port; running ctest"
# In the background and its own process group, so that a signal to this script is handled at once
# (bash runs traps only between foreground commands) and reaches the tests too.
setsid ctest --test-dir "$build_dir" --output-on-failure --timeout 600 -j1 --no-tests=error "$@" &
child_pid=$!
status=0
wait "$child_pid" || status=$?
child_pid=""
exit "$status"

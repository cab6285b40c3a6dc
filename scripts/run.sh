#!/usr/bin/env bash
# Build Emporium (Release) and run it locally with project-local PostgreSQL and Redis.
#
#   scripts/run.sh            then Ctrl-C to stop the server and the services this script started
#
# Environment:
#   EMPORIUM_PG_URL             use this PostgreSQL instead of starting .local/pg
#   EMPORIUM_REDIS_URL          use this Redis instead of starting .local/redis
#   EMPORIUM_LOCAL_PG_PORT      port of the local PostgreSQL (default 54329)
#   EMPORIUM_LOCAL_REDIS_PORT   port of the local Redis (default 63799)
#   EMPORIUM_LOCAL_PG_DATA      data directory of the local PostgreSQL (default .local/pg; as root,
#                               user postgres must be able to traverse every parent directory)
#   EMPORIUM_ADMIN_KEY          admin key (default: generated once into .local/admin_key)
#   EMPORIUM_SEED_PRODUCTS      products seeded into an empty catalogue (default 1000)
#   EMPORIUM_HTTP_HOST/PORT     where the server listens (default 127.0.0.1:8080)
#   EMPORIUM_BUILD_DIR          build directory (default build)
#   EMPORIUM_JOBS               build parallelism (default 2)
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$EMPORIUM_ROOT"

local_dir="$EMPORIUM_ROOT/.local"
build_dir="${EMPORIUM_BUILD_DIR:-build}"
[[ "$build_dir" == /* ]] || build_dir="$EMPORIUM_ROOT/$build_dir"
bin="$build_dir/emporium"

emporium_ensure_deps
emporium_build "$build_dir" Release
if [[ ! -x "$bin" ]]; then
  emporium_err "the build did not produce $bin"
  exit 1
fi

mkdir -p "$local_dir"
chmod 755 "$local_dir" # user postgres must traverse it to reach .local/pg

started_pg=""
started_redis=""
server_pid=""
# stop_server: SIGTERM to the server, wait for it (killed after 30 s); sets server_status.
server_status=0
# shellcheck disable=SC2317
stop_server() {
  [[ -n "$server_pid" ]] || return 0
  emporium_log "stopping the server (pid $server_pid)"
  kill -TERM "$server_pid" 2>/dev/null || true
  (sleep 30 && kill -KILL "$server_pid" 2>/dev/null) &
  local watchdog=$!
  server_status=0
  wait "$server_pid" 2>/dev/null || server_status=$?
  kill "$watchdog" 2>/dev/null || true
  wait "$watchdog" 2>/dev/null || true
  server_pid=""
}
# shellcheck disable=SC2317 # functions below run from traps
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_server
  if [[ -n "$started_pg" ]]; then
    if emporium_pg_stop "$started_pg"; then
      emporium_log "stopped PostgreSQL ($started_pg)"
    fi
  fi
  if [[ -n "$started_redis" ]]; then
    if emporium_redis_stop "$started_redis"; then
      emporium_log "stopped Redis ($started_redis)"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# -- PostgreSQL --------------------------------------------------------------------------------
if [[ -z "${EMPORIUM_PG_URL:-}" ]]; then
  pg_data="${EMPORIUM_LOCAL_PG_DATA:-$local_dir/pg}"
  pg_port="${EMPORIUM_LOCAL_PG_PORT:-54329}"
  was_running=0
  emporium_pg_running "$pg_data" && was_running=1
  if ((!was_running)); then
    started_pg="$pg_data" # set before starting so that a half-started cluster is stopped too
  fi
  if ! emporium_pg_start "$pg_data" "$pg_port" --db emporium; then
    emporium_err "could not start the local PostgreSQL on port $pg_port" \
      "(another port: EMPORIUM_LOCAL_PG_PORT=...; your own server: EMPORIUM_PG_URL=...)"
    exit 1
  fi
  export EMPORIUM_PG_URL="postgresql://emporium@127.0.0.1:$pg_port/emporium"
else
  emporium_log "using EMPORIUM_PG_URL from the environment"
fi

# -- Redis -------------------------------------------------------------------------------------
if [[ -z "${EMPORIUM_REDIS_URL:-}" ]]; then
  redis_dir="$local_dir/redis"
  redis_port="${EMPORIUM_LOCAL_REDIS_PORT:-63799}"
  if ! emporium_redis_running "$redis_dir"; then
    started_redis="$redis_dir"
  fi
  if ! emporium_redis_start "$redis_dir" "$redis_port"; then
    emporium_err "could not start the local Redis on port $redis_port" \
      "(another port: EMPORIUM_LOCAL_REDIS_PORT=...; your own server: EMPORIUM_REDIS_URL=...)"
    exit 1
  fi
  export EMPORIUM_REDIS_URL="redis://127.0.0.1:$redis_port/0"
else
  emporium_log "using EMPORIUM_REDIS_URL from the environment"
fi

# -- admin key ---------------------------------------------------------------------------------
emporium_admin_key "$local_dir/admin_key"
key_expr="$EMPORIUM_ADMIN_KEY_EXPR"

# -- schema and data ---------------------------------------------------------------------------
"$bin" migrate
"$bin" seed --products "${EMPORIUM_SEED_PRODUCTS:-1000}" --if-empty

# -- serve -------------------------------------------------------------------------------------
http_host="${EMPORIUM_HTTP_HOST:-127.0.0.1}"
http_port="${EMPORIUM_HTTP_PORT:-8080}"
case "$http_host" in
  0.0.0.0 | '' | '*') curl_host=127.0.0.1 ;;
  ::) curl_host='[::1]' ;;
  *:*) curl_host="[$http_host]" ;;
  *) curl_host="$http_host" ;;
esac
base="http://$curl_host:$http_port"

# On Ctrl-C/TERM: forward SIGTERM to the server and wait for it; a clean server exit is success.
# shellcheck disable=SC2317
on_signal() {
  local code="$1"
  trap '' INT TERM
  if [[ -n "$server_pid" ]]; then
    stop_server
    if ((server_status == 0)); then
      code=0
    fi
  fi
  exit "$code"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

# Its own session: signals reach it only through us (once), as SIGTERM.
setsid "$bin" serve &
server_pid=$!

# Wait (bounded) for it to answer, then show what to try with a real product id.
ready=0
for ((i = 0; i < 600; i++)); do
  kill -0 "$server_pid" 2>/dev/null || break
  if curl -fsS -m 2 -o /dev/null "$base/healthz" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done

if ((ready)); then
  first="$(curl -fsS -m 5 "$base/products?limit=1" 2>/dev/null || true)"
  product_id="$(printf '%s' "$first" | grep -o '"id":"[^"]*"' | head -n1 | cut -d'"' -f4 || true)"
  word="$(printf '%s' "$first" | grep -o '"name":"[^"]*"' | head -n1 | cut -d'"' -f4 |
    tr -c 'A-Za-z0-9\n' ' ' | awk '{print tolower($1)}' || true)"
  cat <<EOF

==================================================================================================
 Emporium is listening on $base   (Ctrl-C stops it and the services this script started)

 In a browser: $base/   (the live page: catalog with live stock, sign in, order, pay)

 Try:
   curl -s $base/healthz
   curl -s '$base/products?limit=3'
   curl -s $base/products/${product_id:-PRODUCT_ID}
   curl -s -X POST $base/products \\
        -H "Authorization: Bearer $key_expr" \\
        -H 'Content-Type: application/json' \\
        -d '{"sku":"DEMO-1","name":"Demo mug","price_cents":1299,"currency":"EUR","stock":10}'
   curl -s '$base/search?q=${word:-mug}&limit=5'

 A customer's journey (sign up, log in, order, pay):
   curl -s -X POST $base/customers -H 'Content-Type: application/json' \\
        -d '{"email":"ann@example.com","name":"Ann","password":"correct horse battery"}'
   TOKEN=\$(curl -s -X POST $base/sessions -H 'Content-Type: application/json' \\
        -d '{"email":"ann@example.com","password":"correct horse battery"}' | sed 's/.*"token":"\([^"]*\)".*/\1/')
   curl -s -X POST $base/orders -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
        -H 'Idempotency-Key: first-order' \\
        -d '{"items":[{"product_id":"${product_id:-PRODUCT_ID}","quantity":1}],
             "shipping_address":{"name":"Ann","line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}'
   curl -s -X POST $base/orders/ORDER_ID/payments -H "Authorization: Bearer \$TOKEN" \\
        -H 'Content-Type: application/json' -d '{"payment_method":"tok_visa"}'

 Live stock of that product (Server-Sent Events; order it in another terminal and watch):
   curl -sN $base/products/${product_id:-PRODUCT_ID}/events
==================================================================================================

EOF
elif kill -0 "$server_pid" 2>/dev/null; then
  emporium_log "the server does not answer $base/healthz after 60 s; still waiting for it to exit"
fi

status=0
wait "$server_pid" || status=$?
server_pid=""
exit "$status"

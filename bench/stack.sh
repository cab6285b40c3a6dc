# shellcheck shell=bash
# Shared by bench/compare.sh and bench/scale.sh: a private PostgreSQL, Redis and Emporium (and
# nginx), on free loopback ports with their data in one temporary directory, all stopped by
# bench_cleanup (installed as the EXIT trap by bench_init), also on failure or Ctrl-C.
# Source it; do not execute it.

# shellcheck source-path=SCRIPTDIR source=../scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

BENCH_DIR="$EMPORIUM_ROOT/bench"
bench_tmp=""
bench_pg_data=""
bench_redis_dir=""
bench_server_pid=""
bench_nginx_pid=""
bench_keep="${BENCH_KEEP:-0}"
bench_extra_pids=() # helper processes (samplers) stopped first by bench_cleanup
bench_server_wrapper=() # a command the server runs under (bench/profile.sh: valgrind), or none

bench_log() { printf '[bench] %s\n' "$*" >&2; }

# bench_init: temp directory and the cleanup trap.
bench_init() {
  bench_tmp="$(mktemp -d /tmp/emporium-bench.XXXXXXXX)"
  chmod 755 "$bench_tmp" # postgres and nginx's workers must traverse it
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# shellcheck disable=SC2317 # runs from the EXIT trap
bench_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local p
  for p in "${bench_extra_pids[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  bench_stop_server
  if [[ -n "$bench_nginx_pid" ]]; then
    kill -TERM "$bench_nginx_pid" 2>/dev/null || true
    wait "$bench_nginx_pid" 2>/dev/null || true
    bench_nginx_pid=""
  fi
  if [[ -n "$bench_pg_data" ]]; then
    emporium_pg_stop "$bench_pg_data" >/dev/null 2>&1 || emporium_err "could not stop PostgreSQL"
  fi
  if [[ -n "$bench_redis_dir" ]]; then
    emporium_redis_stop "$bench_redis_dir" >/dev/null 2>&1 || emporium_err "could not stop Redis"
  fi
  if [[ -n "$bench_tmp" && -d "$bench_tmp" ]]; then
    if [[ "$bench_keep" == 1 ]]; then
      bench_log "kept $bench_tmp"
    else
      rm -rf "$bench_tmp"
    fi
  fi
  exit "$rc"
}

# bench_deps: the Debian packages the harness needs on top of the project's.
bench_deps() {
  EMPORIUM_DEPS+=(wrk nginx-light gnuplot-nox jq bc bsdextrautils)
  emporium_ensure_deps
}

# bench_build: a Release build of emporium and emporium-bench. Uses EMPORIUM_BUILD_DIR (default
# build) when it is a Release build, else build-release. Sets EMPORIUM_BIN and BENCH_BIN.
bench_build() {
  local dir="${EMPORIUM_BUILD_DIR:-build}" type=""
  [[ "$dir" == /* ]] || dir="$EMPORIUM_ROOT/$dir"
  if [[ -f "$dir/CMakeCache.txt" ]]; then
    type="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$dir/CMakeCache.txt")"
    if [[ "$type" != Release ]]; then
      bench_log "$dir is a '$type' build; benchmarks use a Release build in $EMPORIUM_ROOT/build-release"
      dir="$EMPORIUM_ROOT/build-release"
    fi
  fi
  export CCACHE_DIR="${CCACHE_DIR:-$EMPORIUM_ROOT/.local/ccache}"
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$EMPORIUM_ROOT}"
  mkdir -p "$CCACHE_DIR"
  EMPORIUM_BIN="$dir/emporium"
  BENCH_BIN="$dir/bench/emporium-bench"
  if [[ "${BENCH_SKIP_BUILD:-0}" == 1 && -x "$EMPORIUM_BIN" && -x "$BENCH_BIN" ]]; then
    bench_log "BENCH_SKIP_BUILD=1: using the binaries in $dir as they are"
    return 0
  fi
  if [[ ! -f "$dir/CMakeCache.txt" ]]; then
    cmake -S "$EMPORIUM_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  bench_log "building emporium and emporium-bench (Release) in $dir"
  cmake --build "$dir" -j "${EMPORIUM_JOBS:-2}" --target emporium emporium-bench >"$bench_tmp/build.log" 2>&1 || {
    tail -n 40 "$bench_tmp/build.log" >&2
    emporium_err "build failed"
    return 1
  }
}

# bench_start_services [extra emporium_pg_start args...]: PostgreSQL (databases emporium and
# emporium_pgbench) and Redis. Sets BENCH_PG_URL, BENCH_PG_PGB_URL, BENCH_REDIS_URL,
# BENCH_PG_PORT, BENCH_PG_PID, BENCH_REDIS_PID.
bench_start_services() {
  local attempt port
  bench_pg_data="$bench_tmp/pg"
  # Durable settings (fsync on): the checkout numbers are about committed writes. Enough
  # connections for pgbench's 64 clients beside the server's pool.
  for attempt in 1 2 3 4 5; do
    port="$(emporium_free_port)"
    if emporium_pg_start "$bench_pg_data" "$port" --db emporium --db emporium_pgbench \
      -c max_connections=200 -c shared_buffers=256MB "$@"; then
      BENCH_PG_PORT="$port"
      break
    fi
    bench_log "PostgreSQL start attempt $attempt failed; retrying on another port"
  done
  [[ -n "${BENCH_PG_PORT:-}" ]] || { emporium_err "could not start PostgreSQL"; return 1; }
  BENCH_PG_URL="postgresql://emporium@127.0.0.1:$BENCH_PG_PORT/emporium"
  BENCH_PG_PGB_URL="postgresql://emporium@127.0.0.1:$BENCH_PG_PORT/emporium_pgbench"
  BENCH_PG_PID="$(head -n1 "$bench_pg_data/postmaster.pid")"

  bench_redis_dir="$bench_tmp/redis"
  for attempt in 1 2 3 4 5; do
    port="$(emporium_free_port)"
    if emporium_redis_start "$bench_redis_dir" "$port"; then
      BENCH_REDIS_URL="redis://127.0.0.1:$port/0"
      break
    fi
  done
  [[ -n "${BENCH_REDIS_URL:-}" ]] || { emporium_err "could not start Redis"; return 1; }
  BENCH_REDIS_PID="$(head -n1 "$bench_redis_dir/redis.pid")"
}

# bench_seed N: N products in the emporium database, then a history of BENCH_HISTORY_ORDERS
# (default 100,000; 0: none) orders and VACUUM ANALYZE (bench/history.sql says why).
# The seed is one COPY: it must not be cut by the statement timeout meant for requests.
bench_seed() {
  bench_log "seeding $1 products"
  EMPORIUM_PG_URL="$BENCH_PG_URL" EMPORIUM_LOG_LEVEL=warn \
    EMPORIUM_POSTGRES_STATEMENT_TIMEOUT_MS=3600000 "$EMPORIUM_BIN" seed --products "$1" >&2
  local orders="${BENCH_HISTORY_ORDERS:-100000}"
  if ((orders > 0)); then
    bench_log "seeding a history of $orders orders, then VACUUM ANALYZE (bench/history.sql)"
    local started="$SECONDS"
    "$EMPORIUM_PG_BIN/psql" -X -q "$BENCH_PG_URL" -v orders="$orders" \
      -f "$EMPORIUM_ROOT/bench/history.sql" >&2
    bench_log "history seeded and analyzed in $((SECONDS - started)) s"
  fi
}

# The server's environment for benchmarks. Rate limits: every request of the generator comes
# from one address, so the per-client buckets are made too large to matter (the limiter still
# runs on every request). The set-up signs up many customers at once and each benchmark
# customer leaves many orders unpaid: the hashing queues and the unpaid-order cap are lifted too.
# Logging at warn: no access log line per request.
bench_server_env() {
  printf '%s\n' \
    "EMPORIUM_PG_URL=$BENCH_PG_URL" \
    "EMPORIUM_REDIS_URL=$BENCH_REDIS_URL" \
    "EMPORIUM_ADMIN_KEY=bench-admin-key-not-secret-0123456789" \
    "EMPORIUM_LOG_LEVEL=warn" \
    "EMPORIUM_RATE_CAPACITY=1000000000" \
    "EMPORIUM_RATE_REFILL=1000000000" \
    "EMPORIUM_RATE_LIMIT_LOGIN_CAPACITY=1000000000" \
    "EMPORIUM_RATE_LIMIT_LOGIN_REFILL_PER_S=1000000000" \
    "EMPORIUM_RATE_LIMIT_SIGNUP_CAPACITY=1000000000" \
    "EMPORIUM_RATE_LIMIT_SIGNUP_REFILL_PER_S=1000000000" \
    "EMPORIUM_AUTH_SIGNUP_QUEUE_LIMIT=100000" \
    "EMPORIUM_AUTH_LOGIN_QUEUE_LIMIT=100000" \
    "EMPORIUM_ORDERS_MAX_OPEN_UNPAID_PER_CUSTOMER=10000"
}

# bench_start_server [VAR=value...]: emporium serve on a free port with bench_server_env plus
# the given variables, under bench_server_wrapper when set; BENCH_SERVER_START_S (default 60)
# bounds the wait for /healthz. Sets BENCH_PORT, BENCH_URL, bench_server_pid.
bench_start_server() {
  local attempt port env_lines=() unknown
  mapfile -t env_lines < <(bench_server_env)
  env_lines+=("$@")
  for attempt in 1 2 3 4 5 6; do
    port="$(emporium_free_port)"
    env "${env_lines[@]}" EMPORIUM_HTTP_PORT="$port" "${bench_server_wrapper[@]}" "$EMPORIUM_BIN" serve \
      >"$bench_tmp/server.log" 2>&1 &
    bench_server_pid=$!
    local deadline=$((SECONDS + ${BENCH_SERVER_START_S:-60}))
    while ((SECONDS < deadline)); do
      if ! kill -0 "$bench_server_pid" 2>/dev/null; then
        break
      fi
      if curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then
        BENCH_PORT="$port"
        BENCH_URL="http://127.0.0.1:$port"
        bench_log "emporium serve (pid $bench_server_pid) on $BENCH_URL"
        return 0
      fi
      sleep 0.2
    done
    bench_stop_server
    # A build that predates one of our settings refuses it by name: go on without it.
    unknown="$(sed -n 's/.*unknown environment variable \(EMPORIUM_[A-Z0-9_]*\).*/\1/p' "$bench_tmp/server.log" | head -n1)"
    if [[ -n "$unknown" ]]; then
      bench_log "this emporium does not know $unknown; starting without it"
      local kept=() line
      for line in "${env_lines[@]}"; do
        [[ "$line" == "$unknown="* ]] || kept+=("$line")
      done
      env_lines=("${kept[@]}")
      continue
    fi
    bench_log "server start attempt $attempt failed"
    emporium_log_tail "$bench_tmp/server.log" 20
  done
  emporium_err "emporium serve did not come up"
  return 1
}

bench_stop_server() {
  [[ -n "$bench_server_pid" ]] || return 0
  kill -TERM "$bench_server_pid" 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  while kill -0 "$bench_server_pid" 2>/dev/null && ((SECONDS < deadline)); do
    sleep 0.1
  done
  kill -KILL "$bench_server_pid" 2>/dev/null || true
  wait "$bench_server_pid" 2>/dev/null || true
  bench_server_pid=""
}

# bench_start_nginx BODY_FILE: nginx (one worker) answering every GET /products/* with the
# file's bytes as application/json. Sets BENCH_NGINX_URL, bench_nginx_pid.
bench_start_nginx() {
  local body="$1" dir="$bench_tmp/nginx" port attempt
  mkdir -p "$dir/html" "$dir/tmp" "$dir/logs"
  cp "$body" "$dir/html/product.json"
  chmod -R a+rX "$dir"
  for attempt in 1 2 3; do
    port="$(emporium_free_port)"
    cat >"$dir/nginx.conf" <<EOF
# One worker: the generator takes one of the two cores, as with Emporium.
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  keepalive_requests 1000000000;
  keepalive_timeout 300s;
  types { }
  default_type application/json;
  server {
    listen 127.0.0.1:$port;
    root $dir/html;
    location /products/ { try_files /product.json =404; }
  }
}
EOF
    nginx -e "$dir/logs/error.log" -p "$dir" -c "$dir/nginx.conf" &
    bench_nginx_pid=$!
    local deadline=$((SECONDS + 15))
    while ((SECONDS < deadline)) && kill -0 "$bench_nginx_pid" 2>/dev/null; do
      if curl -sf "http://127.0.0.1:$port/products/x" >/dev/null 2>&1; then
        BENCH_NGINX_URL="http://127.0.0.1:$port"
        bench_log "nginx (pid $bench_nginx_pid) on $BENCH_NGINX_URL"
        return 0
      fi
      sleep 0.1
    done
    kill -TERM "$bench_nginx_pid" 2>/dev/null || true
    wait "$bench_nginx_pid" 2>/dev/null || true
    bench_nginx_pid=""
    emporium_log_tail "$dir/logs/error.log" 10
  done
  emporium_err "nginx did not come up"
  return 1
}

# bench_rss_kib PID [KEY]: VmRSS (or KEY) of a process in KiB.
bench_rss_kib() {
  local v
  v="$(awk -v k="${2:-VmRSS}:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || true)"
  echo "${v:-0}"
}

# bench_tree_cpu PID: CPU seconds of a process, its live children and its reaped children.
bench_tree_cpu() {
  local pid="$1" tck
  tck="$(getconf CLK_TCK)"
  {
    # fields after the command name: 14 utime 15 stime 16 cutime 17 cstime (1-based, whole line)
    sed -E 's/^.*\) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }' || true
    local child
    # Processes come and go while we read: a vanished one counts nothing (and fails nothing).
    for child in $(ps -o pid= --ppid "$pid" 2>/dev/null || true); do
      { sed -E 's/^.*\) //' "/proc/$child/stat" 2>/dev/null | awk '{ print $12 + $13 }'; } || true
    done
  } | awk -v t="$tck" '{ s += $1 } END { printf "%.3f\n", s / t }'
}

# bench_tree_pss_kib PID: proportional set size of a process and its children (shared memory
# counted once across them), in KiB.
bench_tree_pss_kib() {
  local pid="$1" p
  for p in "$pid" $(ps -o pid= --ppid "$pid" 2>/dev/null || true); do
    awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || true
  done | awk '{ s += $1 } END { print s + 0 }'
}

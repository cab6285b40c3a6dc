#!/usr/bin/env bash
# Run an Emporium cluster on this machine: N nodes behind nginx, on project-local PostgreSQL and
# Redis (the same ones scripts/run.sh uses).
#
#   scripts/cluster.sh up [N] [--tls] [--detach]   start N nodes (default 3) and nginx; without
#                                                  --detach, Ctrl-C stops everything it started
#   scripts/cluster.sh down                        stop a cluster started with --detach
#   scripts/cluster.sh status                      what runs, and the cluster as node 1 sees it
#   scripts/cluster.sh start-node K                start node K again (after it was killed)
#
# Node K (1-based) serves HTTP on 127.0.0.1:(8080 + K) and talks to its peers on node port
# 127.0.0.1:(7000 + K), so it is called 127.0.0.1:(7000 + K); every node gets the same peers
# list. nginx listens on 127.0.0.1:8080, round-robin over the nodes. Logs: .local/cluster/
# node-K.log and .local/cluster/nginx/logs/; pid files and each node's environment (mode 600: it
# holds the admin key) in .local/cluster/run/. --tls makes a throwaway CA and one certificate per
# node in .local/cluster/tls (CN = the node's name) and runs the node links over TLS; without
# it they are plaintext, on loopback only.
#
# Environment:
#   EMPORIUM_LB_PORT            nginx's port (default 8080)
#   EMPORIUM_FIRST_HTTP_PORT    node 1's HTTP port, node K's is this + K - 1 (default 8081)
#   EMPORIUM_FIRST_NODE_PORT    node 1's node port, node K's is this + K - 1 (default 7001)
#   EMPORIUM_PG_URL / EMPORIUM_REDIS_URL, EMPORIUM_LOCAL_PG_PORT / EMPORIUM_LOCAL_REDIS_PORT,
#   EMPORIUM_LOCAL_PG_DATA, EMPORIUM_ADMIN_KEY, EMPORIUM_SEED_PRODUCTS, EMPORIUM_BUILD_DIR,
#   EMPORIUM_JOBS               as for scripts/run.sh
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=cluster-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/cluster-lib.sh"
cd "$EMPORIUM_ROOT"

local_dir="$EMPORIUM_ROOT/.local"
cluster_dir="$local_dir/cluster"
run_dir="$cluster_dir/run"
state_file="$run_dir/state"
nginx_dir="$cluster_dir/nginx"
tls_dir="$cluster_dir/tls"
build_dir="${EMPORIUM_BUILD_DIR:-build}"
[[ "$build_dir" == /* ]] || build_dir="$EMPORIUM_ROOT/$build_dir"
bin="$build_dir/emporium"
node_host=127.0.0.1

usage() {
  sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'
}

# -- state -------------------------------------------------------------------------------------
# run/state holds lines key=value: nodes, lb_port, first_http_port, first_node_port, tls,
# started_pg (a data directory) and started_redis (a directory) when `up` started them.

state_get() {
  [[ -f "$state_file" ]] || return 0
  sed -n "s/^$1=//p" "$state_file" | tail -n1
}

# pid_of FILE EXPECTED: the pid in FILE if that process is alive and its command line contains
# EXPECTED (a recycled pid is not ours), else nothing.
pid_of() {
  local file="$1" expected="$2" pid
  [[ -f "$file" ]] || return 0
  pid="$(head -n1 "$file" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$expected" || return 0
  printf '%s\n' "$pid"
}

node_pid() { pid_of "$run_dir/node-$1.pid" "$bin"; }
nginx_pid() { pid_of "$nginx_dir/nginx.pid" nginx; }

# build_server: the emporium target only (Release), not the tests: a cluster needs the server.
build_server() {
  export CCACHE_DIR="${CCACHE_DIR:-$local_dir/ccache}"
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$EMPORIUM_ROOT}"
  mkdir -p "$CCACHE_DIR"
  local type=""
  [[ ! -f "$build_dir/CMakeCache.txt" ]] ||
    type="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build_dir/CMakeCache.txt")"
  if [[ "$type" != Release ]]; then
    emporium_log "configuring $build_dir (Release)"
    cmake -S "$EMPORIUM_ROOT" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
  fi
  emporium_log "building emporium in $build_dir with ${EMPORIUM_JOBS:-2} jobs"
  cmake --build "$build_dir" -j "${EMPORIUM_JOBS:-2}" --target emporium
}

# -- down --------------------------------------------------------------------------------------

cluster_down() {
  if [[ ! -f "$state_file" ]]; then
    emporium_log "no cluster state in $run_dir: nothing to stop"
    return 0
  fi
  local n k pid pids=()
  n="$(state_get nodes)"
  pid="$(nginx_pid)"
  if [[ -n "$pid" ]]; then
    emporium_log "stopping nginx (pid $pid)"
    emporium_cluster_stop_pids 10 "$pid"
  fi
  for ((k = 1; k <= ${n:-0}; k++)); do
    pid="$(node_pid "$k")"
    [[ -z "$pid" ]] || pids+=("$pid")
  done
  if ((${#pids[@]})); then
    emporium_log "stopping ${#pids[@]} node(s) (pids ${pids[*]}): each drains its requests"
    emporium_cluster_stop_pids 30 "${pids[@]}"
  fi
  local pg redis
  pg="$(state_get started_pg)"
  redis="$(state_get started_redis)"
  if [[ -n "$pg" ]] && emporium_pg_stop "$pg"; then
    emporium_log "stopped PostgreSQL ($pg)"
  fi
  if [[ -n "$redis" ]] && emporium_redis_stop "$redis"; then
    emporium_log "stopped Redis ($redis)"
  fi
  rm -f "$run_dir"/node-*.pid "$state_file"
  emporium_log "cluster stopped"
}

# -- status ------------------------------------------------------------------------------------

cluster_status() {
  if [[ ! -f "$state_file" ]]; then
    echo "no cluster running (no $state_file)"
    return 1
  fi
  local n k pid lb first_http
  n="$(state_get nodes)"
  lb="$(state_get lb_port)"
  first_http="$(state_get first_http_port)"
  pid="$(nginx_pid)"
  printf 'nginx     http://127.0.0.1:%s  %s\n' "$lb" "$(shown_pid "$pid")"
  for ((k = 1; k <= n; k++)); do
    pid="$(node_pid "$k")"
    printf 'node %-3s  http://127.0.0.1:%s  node %s:%s  %s\n' "$k" "$((first_http + k - 1))" \
      "$node_host" "$(($(state_get first_node_port) + k - 1))" "$(shown_pid "$pid")"
  done
  local key
  key="$(node_env_value 1 EMPORIUM_ADMIN_KEY)"
  for ((k = 1; k <= n; k++)); do
    [[ -n "$(node_pid "$k")" ]] || continue
    echo "GET /cluster on node $k:"
    curl -s -m 5 -H "Authorization: Bearer $key" "http://127.0.0.1:$((first_http + k - 1))/cluster" || true
    echo
    break
  done
}

shown_pid() {
  if [[ -n "$1" ]]; then echo "pid $1"; else echo "NOT RUNNING"; fi
}

node_env_value() {
  sed -n "s/^$2=//p" "$run_dir/node-$1.env" 2>/dev/null | tail -n1
}

# -- start-node --------------------------------------------------------------------------------

start_node() {
  local k="$1" pid http_port
  if [[ ! -f "$run_dir/node-$k.env" ]]; then
    emporium_err "no node $k in this cluster ($run_dir/node-$k.env is missing)"
    return 1
  fi
  pid="$(node_pid "$k")"
  if [[ -n "$pid" ]]; then
    emporium_log "node $k already runs (pid $pid)"
    return 0
  fi
  http_port="$(node_env_value "$k" EMPORIUM_HTTP_PORT)"
  if _emporium_port_in_use "$http_port"; then
    emporium_err "port $http_port of node $k is taken by another process"
    return 1
  fi
  printf '\n==== node %s started %s ====\n' "$k" "$(date -u +%FT%TZ)" >>"$cluster_dir/node-$k.log"
  pid="$(emporium_cluster_node_start "$bin" "$cluster_dir/node-$k.log" "$run_dir/node-$k.env")"
  printf '%s\n' "$pid" >"$run_dir/node-$k.pid"
  if ! emporium_cluster_wait_http "http://127.0.0.1:$http_port/healthz" "$pid" 60; then
    emporium_err "node $k did not come up on http://127.0.0.1:$http_port"
    emporium_log_tail "$cluster_dir/node-$k.log" 30
    return 1
  fi
  emporium_log "node $k (pid $pid) answers on http://127.0.0.1:$http_port"
}

# -- up ----------------------------------------------------------------------------------------

cluster_up() {
  local n="$1" tls="$2" detach="$3"
  local lb_port="${EMPORIUM_LB_PORT:-8080}"
  local first_http="${EMPORIUM_FIRST_HTTP_PORT:-8081}"
  local first_node="${EMPORIUM_FIRST_NODE_PORT:-7001}"
  local k p
  for p in "$lb_port" "$first_http" "$first_node"; do
    if [[ ! "$p" =~ ^[0-9]+$ ]] || ((p < 1 || p + n > 65536)); then
      emporium_err "bad port '$p'"
      return 2
    fi
  done

  # Another cluster of this checkout still running?
  if [[ -f "$state_file" ]]; then
    local running=""
    [[ -z "$(nginx_pid)" ]] || running=1
    for ((k = 1; k <= $(state_get nodes); k++)); do
      [[ -z "$(node_pid "$k")" ]] || running=1
    done
    if [[ -n "$running" ]]; then
      emporium_err "a cluster of this checkout is running already (scripts/cluster.sh status;" \
        "scripts/cluster.sh down stops it)"
      return 1
    fi
    rm -f "$state_file" "$run_dir"/node-*.pid
  fi
  # Every port free before anything starts.
  local ports=("$lb_port")
  for ((k = 0; k < n; k++)); do
    ports+=("$((first_http + k))" "$((first_node + k))")
  done
  for p in "${ports[@]}"; do
    if _emporium_port_in_use "$p"; then
      emporium_err "port $p is in use (ports: EMPORIUM_LB_PORT, EMPORIUM_FIRST_HTTP_PORT," \
        "EMPORIUM_FIRST_NODE_PORT)"
      return 1
    fi
  done

  EMPORIUM_DEPS+=(nginx)
  ((tls)) && EMPORIUM_DEPS+=(openssl)
  emporium_ensure_deps
  build_server
  if [[ ! -x "$bin" ]]; then
    emporium_err "the build did not produce $bin"
    return 1
  fi

  mkdir -p "$local_dir" "$run_dir"
  chmod 755 "$local_dir" "$cluster_dir" # postgres and nginx's workers traverse them
  chmod 700 "$run_dir"
  {
    echo "nodes=$n"
    echo "lb_port=$lb_port"
    echo "first_http_port=$first_http"
    echo "first_node_port=$first_node"
    echo "tls=$tls"
  } >"$state_file"

  # From here on a failure stops what was started (the EXIT trap), detached or not.
  trap 'rc=$?; trap - EXIT; if ((rc != 0)); then emporium_err "start-up failed; stopping what started"; cluster_down; fi; exit "$rc"' EXIT

  # PostgreSQL and Redis: scripts/run.sh's, left alone when they run already.
  if [[ -z "${EMPORIUM_PG_URL:-}" ]]; then
    local pg_data="${EMPORIUM_LOCAL_PG_DATA:-$local_dir/pg}" pg_port="${EMPORIUM_LOCAL_PG_PORT:-54329}"
    emporium_pg_running "$pg_data" || echo "started_pg=$pg_data" >>"$state_file"
    if ! emporium_pg_start "$pg_data" "$pg_port" --db emporium; then
      emporium_err "could not start the local PostgreSQL on port $pg_port" \
        "(another port: EMPORIUM_LOCAL_PG_PORT=...; your own server: EMPORIUM_PG_URL=...)"
      return 1
    fi
    export EMPORIUM_PG_URL="postgresql://emporium@127.0.0.1:$pg_port/emporium"
  fi
  if [[ -z "${EMPORIUM_REDIS_URL:-}" ]]; then
    local redis_dir="$local_dir/redis" redis_port="${EMPORIUM_LOCAL_REDIS_PORT:-63799}"
    emporium_redis_running "$redis_dir" || echo "started_redis=$redis_dir" >>"$state_file"
    if ! emporium_redis_start "$redis_dir" "$redis_port"; then
      emporium_err "could not start the local Redis on port $redis_port" \
        "(another port: EMPORIUM_LOCAL_REDIS_PORT=...; your own server: EMPORIUM_REDIS_URL=...)"
      return 1
    fi
    export EMPORIUM_REDIS_URL="redis://127.0.0.1:$redis_port/0"
  fi

  # One admin key for every node (they also derive the session-token signing key from it).
  emporium_admin_key "$local_dir/admin_key"
  local key_expr="$EMPORIUM_ADMIN_KEY_EXPR"

  # Schema and data once, before any node starts (the nodes then serve with --no-migrate).
  "$bin" migrate
  "$bin" seed --products "${EMPORIUM_SEED_PRODUCTS:-1000}" --if-empty

  if ((tls)); then
    emporium_log "making a throwaway CA and $n node certificates in $tls_dir"
    emporium_cluster_tls "$tls_dir" "$node_host" "$first_node" "$n"
  fi

  # Each node's environment, kept (mode 600) so that start-node can start it again alike.
  local peers
  peers="$(emporium_cluster_peers "$node_host" "$first_node" "$n")"
  for ((k = 1; k <= n; k++)); do
    (
      umask 077
      {
        echo "EMPORIUM_PG_URL=$EMPORIUM_PG_URL"
        echo "EMPORIUM_REDIS_URL=$EMPORIUM_REDIS_URL"
        echo "EMPORIUM_ADMIN_KEY=$EMPORIUM_ADMIN_KEY"
        echo "EMPORIUM_HTTP_HOST=127.0.0.1"
        echo "EMPORIUM_HTTP_PORT=$((first_http + k - 1))"
        echo "EMPORIUM_HTTP_TRUSTED_PROXIES=127.0.0.1/32"
        echo "EMPORIUM_NODE_HOST=$node_host"
        echo "EMPORIUM_NODE_PORT=$((first_node + k - 1))"
        echo "EMPORIUM_PEERS=$peers"
        if ((tls)); then
          echo "EMPORIUM_CLUSTER_TLS_CERTIFICATE=$tls_dir/node-$k.pem"
          echo "EMPORIUM_CLUSTER_TLS_KEY=$tls_dir/node-$k.key"
          echo "EMPORIUM_CLUSTER_TLS_CAFILE=$tls_dir/ca.pem"
        fi
      } >"$run_dir/node-$k.env"
    )
  done

  # The nodes, all at once (each waits for its peers), then nginx in front of them.
  local pids=()
  for ((k = 1; k <= n; k++)); do
    : >"$cluster_dir/node-$k.log"
    pids+=("$(emporium_cluster_node_start "$bin" "$cluster_dir/node-$k.log" "$run_dir/node-$k.env")")
    printf '%s\n' "${pids[k - 1]}" >"$run_dir/node-$k.pid"
  done
  for ((k = 1; k <= n; k++)); do
    if ! emporium_cluster_wait_http "http://127.0.0.1:$((first_http + k - 1))/healthz" "${pids[k - 1]}" 60; then
      emporium_err "node $k did not come up on http://127.0.0.1:$((first_http + k - 1))"
      emporium_log_tail "$cluster_dir/node-$k.log" 30
      return 1
    fi
  done
  local upstreams=()
  for ((k = 0; k < n; k++)); do
    upstreams+=("127.0.0.1:$((first_http + k))")
  done
  emporium_lb_nginx_conf "$nginx_dir" "$lb_port" "${upstreams[@]}"
  local lb_pid
  lb_pid="$(emporium_lb_nginx_start "$nginx_dir")"
  if ! emporium_cluster_wait_http "http://127.0.0.1:$lb_port/healthz" "$lb_pid" 15; then
    emporium_err "nginx did not answer on http://127.0.0.1:$lb_port"
    emporium_log_tail "$nginx_dir/logs/error.log" 20
    emporium_log_tail "$nginx_dir/logs/stderr.log" 20
    return 1
  fi
  # The cluster has formed when node 1 sees every member up (the admin route, if this build has it).
  local auth="Authorization: Bearer $EMPORIUM_ADMIN_KEY" seen="" i
  for ((i = 0; i < 100; i++)); do
    seen="$(curl -s -m 2 -H "$auth" -w ' %{http_code}' "http://127.0.0.1:$first_http/cluster" 2>/dev/null || true)"
    [[ "$seen" == *"\"live\":$n"* || "$seen" == *" 404" ]] && break
    sleep 0.2
  done
  if [[ "$seen" == *" 404" ]]; then
    emporium_log "this build has no GET /cluster: the nodes run, but not as one cluster"
  elif [[ "$seen" != *"\"live\":$n"* ]]; then
    emporium_log "node 1 does not see all $n members yet: ${seen% *}"
  fi
  if ((tls)); then
    check_tls "$n" "$first_node"
  fi
  trap - EXIT

  print_tour "$n" "$lb_port" "$first_http" "$first_node" "$key_expr" "$tls" "$detach"

  if ((detach)); then
    emporium_log "detached: scripts/cluster.sh down stops it"
    return 0
  fi
  watch_foreground "$n"
}

# check_tls N FIRST_NODE_PORT: every node port completes a TLS handshake with a certificate the
# cluster CA signed (a client presenting node 1's certificate); says so loudly otherwise.
check_tls() {
  local n="$1" first="$2" k out bad=0
  for ((k = 0; k < n; k++)); do
    if out="$(timeout 10 openssl s_client -connect "$node_host:$((first + k))" \
      -CAfile "$tls_dir/ca.pem" -cert "$tls_dir/node-1.pem" -key "$tls_dir/node-1.key" \
      -verify_return_error </dev/null 2>&1)" && [[ "$out" == *"Verify return code: 0 (ok)"* ]]; then
      continue
    fi
    bad=1
    emporium_err "node port $node_host:$((first + k)) does not complete a TLS handshake with the" \
      "cluster CA's certificates although EMPORIUM_CLUSTER_TLS_* are set: $(grep -m1 -iE 'error|alert' <<<"$out")"
  done
  ((bad)) || emporium_log "every node port speaks TLS with a certificate of the cluster CA"
}

print_tour() {
  local n="$1" lb="$2" first_http="$3" first_node="$4" key_expr="$5" tls="$6" detach="$7"
  local b="http://127.0.0.1:$lb" k product_id="" first last
  first="$(curl -fsS -m 5 "$b/products?limit=1" 2>/dev/null || true)"
  product_id="$(printf '%s' "$first" | grep -o '"id":"[^"]*"' | head -n1 | cut -d'"' -f4 || true)"
  product_id="${product_id:-PRODUCT_ID}"
  last=$((first_http + n - 1))
  local victim=$((n > 1 ? n : 1)) tls_note=""
  ((tls)) && tls_note=", node links over TLS (CA: ${tls_dir#"$EMPORIUM_ROOT"/}/ca.pem)"
  cat <<EOF

==================================================================================================
 Emporium cluster of $n node(s)$tls_note
   load balancer (nginx)  $b
EOF
  for ((k = 1; k <= n; k++)); do
    printf '   %-21s  http://127.0.0.1:%s   (node %s:%s, log .local/cluster/node-%s.log)\n' \
      "node $k" "$((first_http + k - 1))" "$node_host" "$((first_node + k - 1))" "$k"
  done
  local stop="Ctrl-C stops it all"
  ((detach)) && stop="scripts/cluster.sh down stops it all"
  cat <<EOF
 $stop

 A tour:
   B=$b
   ADMIN="Authorization: Bearer $key_expr"
   curl -s -H "\$ADMIN" \$B/cluster                       # members, ring_version, serving
   # one product through two nodes: same answer, X-Emporium-Node says who answered
   curl -si http://127.0.0.1:$first_http/products/$product_id | grep -i -e '^HTTP' -e x-emporium-node
   curl -si http://127.0.0.1:$last/products/$product_id | grep -i -e '^HTTP' -e x-emporium-node
   curl -s -H "\$ADMIN" \$B/cluster/owner/$product_id      # the node that holds its actor
   for i in 1 2 3 4 5 6; do curl -s -o /dev/null -D - \$B/healthz | grep -i x-emporium-node; done
   # kill a node (as a crash would) and watch the others notice it within the peer timeout
   kill -9 \$(cat .local/cluster/run/node-$victim.pid)
   watch -n 0.5 "curl -s -H '\$ADMIN' \$B/cluster; echo; curl -s -H '\$ADMIN' \$B/cluster/owner/$product_id"
   curl -si \$B/products/$product_id | grep -i -e '^HTTP' -e x-emporium-node   # still answered
   scripts/cluster.sh start-node $victim                    # it rejoins; the ring moves back
   tail -f .local/cluster/nginx/logs/access.log           # which node nginx chose, per request
==================================================================================================

EOF
}

# watch_foreground N: until Ctrl-C, report nodes that die or come back; then stop everything.
watch_foreground() {
  local n="$1" k pid
  local -a was=()
  # shellcheck disable=SC2317 # runs from the traps
  on_stop() {
    trap '' INT TERM
    echo
    cluster_down
    exit 0
  }
  trap on_stop INT TERM
  for ((k = 1; k <= n; k++)); do was[k]=up; done
  while true; do
    for ((k = 1; k <= n; k++)); do
      pid="$(node_pid "$k")"
      if [[ -z "$pid" && "${was[k]}" == up ]]; then
        emporium_log "node $k exited (log: .local/cluster/node-$k.log; scripts/cluster.sh start-node $k)"
        was[k]=down
      elif [[ -n "$pid" && "${was[k]}" == down ]]; then
        emporium_log "node $k runs again (pid $pid)"
        was[k]=up
      fi
    done
    if [[ -z "$(nginx_pid)" ]]; then
      emporium_err "nginx exited (log: .local/cluster/nginx/logs/error.log); stopping the cluster"
      cluster_down
      exit 1
    fi
    sleep 1 &
    wait $! || true
  done
}

# -- main --------------------------------------------------------------------------------------

command="${1:-}"
(($#)) && shift
case "$command" in
  up)
    nodes=3 tls=0 detach=0
    while (($#)); do
      case "$1" in
        --tls) tls=1 ;;
        --detach) detach=1 ;;
        [0-9]*)
          if [[ ! "$1" =~ ^[1-9][0-9]?$ ]]; then
            emporium_err "N must be 1..99, got '$1'"
            exit 2
          fi
          nodes="$1"
          ;;
        *) emporium_err "unknown argument '$1'"; usage >&2; exit 2 ;;
      esac
      shift
    done
    cluster_up "$nodes" "$tls" "$detach"
    ;;
  down) cluster_down ;;
  status) cluster_status ;;
  start-node)
    if [[ ! "${1:-}" =~ ^[1-9][0-9]?$ ]]; then
      emporium_err "usage: scripts/cluster.sh start-node K"
      exit 2
    fi
    start_node "$1"
    ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac

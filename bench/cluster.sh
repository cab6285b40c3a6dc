#!/usr/bin/env bash
# bench/cluster.sh: Emporium as a cluster of 1, 2 and 3 nodes behind nginx, and the cost of a
# request a node forwards to the entity's owner against one it answers itself.
#
#   bench/cluster.sh [--duration S] [--connections N] [--products N] [--nodes "1 2 3"]
#                    [--out DIR] [--keep]
#
# Starts its own PostgreSQL and Redis (like compare.sh, data in a temporary directory), seeds
# --products (default 10,000), then for each cluster size in --nodes: that many nodes on free
# loopback ports (every node given the same peers list, rate limits in shared Redis buckets),
# nginx in front of them configured as scripts/cluster.sh configures it, and with the same
# generator (emporium-bench) and connections (default 64), all through nginx:
#   activate   every product once (its actor starts on its owner; not in the table)
#   product-get  GET /products/{id}, uniform, warm
#   checkout   cart, 1-3 lines, check out, pay (with the PostgreSQL accounting)
# and, on the largest size, sent straight to node 1 (no nginx): product GETs for ids node 1 owns
# ("local") and for ids other nodes own ("forwarded"; GET /cluster/owner/{id} tells which), with
# 1 connection (the latency of one request alone) and with --connections (CPU per request: the
# CPU of every node over the window, and node 1's share).
# CPU figures are CPU seconds per 1,000 answered requests: of every node together, of nginx (master
# and worker), of PostgreSQL + Redis.
# Prints two tables, writes DIR/results.json (every raw result) and DIR/table.txt.
#
# This machine has 2 cores: nodes, nginx, PostgreSQL, Redis and the generator share them, so
# more nodes cannot be faster here. See bench/README.md for the model of N machines.
#
# Exit status: 0, or 1 when a run failed (a correctness check included).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=stack.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack.sh"
# shellcheck source-path=SCRIPTDIR source=../scripts/cluster-lib.sh
source "$EMPORIUM_ROOT/scripts/cluster-lib.sh"
cd "$EMPORIUM_ROOT"

duration=10
connections=64
products=10000
sizes="1 2 3"
out=""
while (($#)); do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --products) products="$2"; shift 2 ;;
    --nodes) sizes="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --keep) bench_keep=1; shift ;;
    -h | --help) sed -n '2,27p' "$0"; exit 0 ;;
    *) emporium_err "unknown argument '$1' (see --help)"; exit 2 ;;
  esac
done
for n in $sizes; do
  [[ "$n" =~ ^[1-9]$ ]] || { emporium_err "--nodes: sizes 1..9, got '$n'"; exit 2; }
done
largest="$(tr ' ' '\n' <<<"$sizes" | sort -n | tail -n1)"
[[ -n "$out" ]] || out="$EMPORIUM_ROOT/bench/results/cluster-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
out="$(cd "$out" && pwd -P)"
started=$SECONDS
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"

bench_init
EMPORIUM_DEPS+=(nginx jq bc bsdextrautils)
emporium_ensure_deps
bench_build
# shellcheck disable=SC2119 # no extra PostgreSQL options
bench_start_services
bench_seed "$products"

admin_key="$(bench_server_env | sed -n 's/^EMPORIUM_ADMIN_KEY=//p')"
node_pids=()
node_names=()
node_urls=()
lb_pid=""
LB_URL=""

# shellcheck disable=SC2317 # runs from the EXIT trap, before bench_cleanup
stop_cluster() {
  if [[ -n "$lb_pid" ]]; then
    emporium_cluster_stop_pids 10 "$lb_pid"
    lb_pid=""
  fi
  if ((${#node_pids[@]})); then
    emporium_cluster_stop_pids 10 "${node_pids[@]}"
  fi
  node_pids=()
  node_names=()
  node_urls=()
}
# bench_cleanup exits with the status it finds in \$?: keep the script's.
trap 'rc=$?; stop_cluster; (exit "$rc"); bench_cleanup' EXIT

# start_cluster N: N nodes and nginx in front of them. Sets node_pids, node_names, node_urls,
# lb_pid, LB_URL.
start_cluster() {
  local n="$1" k dir="$bench_tmp/cluster-$1" peers="" http_ports=() node_ports=() p
  mkdir -p "$dir"
  chmod 755 "$dir"
  for ((k = 0; k < n; k++)); do
    p="$(emporium_free_port)"
    http_ports+=("$p")
    while p="$(emporium_free_port)" && [[ " ${http_ports[*]} " == *" $p "* ]]; do :; done
    node_ports+=("$p")
    peers+="${peers:+,}127.0.0.1:$p"
  done
  local env_lines=()
  mapfile -t env_lines < <(bench_server_env)
  for ((k = 0; k < n; k++)); do
    {
      printf '%s\n' "${env_lines[@]}"
      echo "EMPORIUM_HTTP_PORT=${http_ports[k]}"
      echo "EMPORIUM_HTTP_TRUSTED_PROXIES=127.0.0.1/32"
      echo "EMPORIUM_NODE_HOST=127.0.0.1"
      echo "EMPORIUM_NODE_PORT=${node_ports[k]}"
      echo "EMPORIUM_PEERS=$peers"
      # The same limiter for every size (a cluster shares its buckets in Redis).
      echo "EMPORIUM_RATE_LIMIT_MODE=redis"
    } >"$dir/node-$((k + 1)).env"
    node_pids+=("$(emporium_cluster_node_start "$EMPORIUM_BIN" "$dir/node-$((k + 1)).log" "$dir/node-$((k + 1)).env")")
    node_names+=("127.0.0.1:${node_ports[k]}")
    node_urls+=("http://127.0.0.1:${http_ports[k]}")
  done
  for ((k = 0; k < n; k++)); do
    if ! emporium_cluster_wait_http "${node_urls[k]}/healthz" "${node_pids[k]}" 60; then
      emporium_log_tail "$dir/node-$((k + 1)).log" 30
      emporium_err "node $((k + 1)) of $n did not come up"
      return 1
    fi
  done
  # Formed when node 1 sees every member up (when the build has GET /cluster).
  local seen="" i
  for ((i = 0; i < 150; i++)); do
    seen="$(curl -s -m 2 -H "Authorization: Bearer $admin_key" -w ' %{http_code}' "${node_urls[0]}/cluster" || true)"
    [[ "$seen" == *"\"live\":$n"* || "$seen" == *" 404" ]] && break
    sleep 0.2
  done
  [[ "$seen" == *"\"live\":$n"* ]] || bench_log "cluster of $n: node 1 answers /cluster with: $seen"
  p="$(emporium_free_port)"
  emporium_lb_nginx_conf "$dir/nginx" "$p" "${node_urls[@]#http://}"
  lb_pid="$(emporium_lb_nginx_start "$dir/nginx")"
  LB_URL="http://127.0.0.1:$p"
  if ! emporium_cluster_wait_http "$LB_URL/healthz" "$lb_pid" 15; then
    emporium_log_tail "$dir/nginx/logs/error.log" 20
    emporium_err "nginx did not come up"
    return 1
  fi
  bench_log "cluster of $n node(s) (${node_names[*]}) behind nginx on $LB_URL"
}

failed=0
runs=()

# bench LABEL ARGS...: one emporium-bench run into $out/LABEL.json.
bench() {
  local label="$1" rc=0
  shift
  bench_log "run: $label"
  "$BENCH_BIN" --label "$label" --json "$out/$label.json" "$@" 2>"$out/$label.log" || rc=$?
  cat "$out/$label.log" >&2
  if ((rc != 0 && rc != 3)); then
    failed=1
    if [[ ! -s "$out/$label.json" ]]; then
      jq -n --arg l "$label" --arg e "emporium-bench exited with $rc" \
        '{label: $l, available: true, passed: false, error: $e}' >"$out/$label.json"
    fi
  fi
  runs+=("$out/$label.json")
}

# annotate FILE KEY JSON: add a field to a result file.
annotate() {
  jq --arg k "$2" --argjson v "$3" '.[$k] = $v' "$1" >"$1.tmp" && mv "$1.tmp" "$1"
}

server_pids() {
  local p
  for p in "${node_pids[@]}"; do printf -- '--server-pid\n%s\n' "$p"; done
}

# owners N_IDS: split N_IDS product ids by owner as node 1 sees the ring, into
# $bench_tmp/local.ids (node 1 owns them) and $bench_tmp/forwarded.ids. False when the build
# has no GET /cluster/owner/{id}.
owners() {
  local ids="$bench_tmp/sample.ids" cfg="$bench_tmp/owners.curl"
  "$EMPORIUM_PG_BIN/psql" -X -qAt "$BENCH_PG_URL" -c "SELECT id FROM products ORDER BY id LIMIT $1" >"$ids"
  {
    echo "header = \"Authorization: Bearer $admin_key\""
    echo 'silent'
    printf '%s\n' 'write-out = "\n"'
    sed "s|.*|url = \"${node_urls[0]}/cluster/owner/&\"|" "$ids"
  } >"$cfg"
  curl -K "$cfg" >"$bench_tmp/owners.jsonl" 2>/dev/null || true
  if ! jq -e -s 'length > 0 and all(.[]; has("owner"))' "$bench_tmp/owners.jsonl" >/dev/null 2>&1; then
    bench_log "GET /cluster/owner/{id} does not answer owners: $(head -c 300 "$bench_tmp/owners.jsonl")"
    return 1
  fi
  jq -r --arg me "${node_names[0]}" 'select(.owner == $me) | .id' "$bench_tmp/owners.jsonl" >"$bench_tmp/local.ids"
  jq -r --arg me "${node_names[0]}" 'select(.owner != $me) | .id' "$bench_tmp/owners.jsonl" >"$bench_tmp/forwarded.ids"
  bench_log "of $(wc -l <"$ids") ids, node 1 (${node_names[0]}) owns $(wc -l <"$bench_tmp/local.ids")," \
    "others $(wc -l <"$bench_tmp/forwarded.ids")"
  [[ -s "$bench_tmp/local.ids" && -s "$bench_tmp/forwarded.ids" ]]
}

customers_file="$bench_tmp/customers.jsonl"
for n in $sizes; do
  start_cluster "$n"
  mapfile -t spids < <(server_pids)
  db=(--db-pid "$BENCH_PG_PID" --db-pid "$BENCH_REDIS_PID")
  # nginx's CPU is sampled with the nodes' (one more --server-pid) and told apart in the table.
  common=(--connections "$connections" --pg-url "$BENCH_PG_URL" --ids-from-pg "${spids[@]}"
          --server-pid "$lb_pid" "${db[@]}")

  bench "activate-n$n" --target "$LB_URL" --scenario product-get --once --duration 300 "${common[@]}"
  bench "product-get-n$n" --target "$LB_URL" --scenario product-get --duration "$duration" --warmup 1 "${common[@]}"
  bench "checkout-n$n" --target "$LB_URL" --scenario checkout --duration "$duration" --warmup 1 \
    --customers-file "$customers_file" "${common[@]}"
  for f in "$out/activate-n$n.json" "$out/product-get-n$n.json" "$out/checkout-n$n.json"; do
    annotate "$f" nodes "$n"
    annotate "$f" lb_pid "$lb_pid"
    annotate "$f" node_names "$(printf '%s\n' "${node_names[@]}" | jq -R . | jq -s .)"
  done

  if ((n == largest && n > 1)); then
    if owners 3000; then
      direct=(--target "${node_urls[0]}" --scenario product-get --warmup 1 --duration "$duration" "${spids[@]}" "${db[@]}")
      # Warm every sampled actor on its owner first (through node 1: forwarded ones too).
      bench "direct-warm" --target "${node_urls[0]}" --scenario product-get --once --duration 300 \
        --connections "$connections" --ids-file "$bench_tmp/sample.ids"
      for kind in local forwarded; do
        bench "direct-$kind-c1" "${direct[@]}" --connections 1 --ids-file "$bench_tmp/$kind.ids"
        bench "direct-$kind-c$connections" "${direct[@]}" --connections "$connections" --ids-file "$bench_tmp/$kind.ids"
        for f in "$out/direct-$kind-c1.json" "$out/direct-$kind-c$connections.json"; do
          annotate "$f" nodes "$n"
          annotate "$f" keys "\"$kind\""
          annotate "$f" entry_pid "${node_pids[0]}"
        done
      done
    else
      jq -n '{label: "direct", available: false,
              unavailable_reason: "GET /cluster/owner/{id} is not on this build"}' >"$out/direct.json"
      runs+=("$out/direct.json")
    fi
  fi
  stop_cluster
done

# -- results -----------------------------------------------------------------------------------
commit="$(git -C "$EMPORIUM_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$EMPORIUM_ROOT" status --porcelain 2>/dev/null | grep -q . && echo true || echo false)"
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"
jq -s --arg date "$(date -u +%FT%TZ)" --arg commit "$commit" --argjson dirty "$dirty" \
  --arg load_start "$load_start" --arg load_end "$load_end" \
  --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" \
  --argjson cores "$(nproc)" --argjson conns "$connections" --argjson products "$products" \
  --argjson duration "$duration" --arg sizes "$sizes" \
  '{meta: {date: $date, commit: $commit, dirty_tree: $dirty, cpu: $cpu, cores: $cores,
           connections: $conns, products: $products, duration_s: $duration, sizes: $sizes,
           load_average_start: $load_start, load_average_end: $load_end,
           command: "bench/cluster.sh"}, runs: .}' "${runs[@]}" >"$out/results.json"

{
  echo "Through nginx (round-robin over the nodes), $connections connections, $duration s each:"
  jq -r '
    def f(x; n): if x == null then "-" else (x * pow(10; n) | round / pow(10; n) | tostring) end;
    ["nodes", "run", "ok req/s", "orders/s", "p50 ms", "p99 ms", "errors", "CPU s/1k nodes",
     "CPU s/1k nginx", "CPU s/1k db", "note"],
    (.runs[] | select(.label | test("^(product-get|checkout)-n")) |
      if .error != null then [(.nodes // "-" | tostring), .label, "-", "-", "-", "-", "-", "-", "-", "-", "FAILED: " + .error]
      elif .available == false then [(.nodes // "-" | tostring), .label, "-", "-", "-", "-", "-", "-", "-", "-", "not available: " + .unavailable_reason]
      else
        (.server.by_pid[.lb_pid | tostring].cpu_s_per_1k // 0) as $lb
        | [(.nodes | tostring), (.label | sub("-n[0-9]+$"; "")), f(.ok_per_second; 0), f(.orders.per_second; 1),
         f(.latency_ms.p50; 2), f(.latency_ms.p99; 2), ((.errors.total // 0) | tostring),
         f(.server.cpu_s_per_1k - $lb; 3), f($lb; 3), f(.db.cpu_s_per_1k; 3),
         (if .accounting.checked == true then
            (if .accounting.passed then "accounting passed (\(.accounting.acknowledged) orders)"
             else "ACCOUNTING FAILED: \(.accounting.failures[0] // "")" end)
          else "" end)]
      end) | @tsv' "$out/results.json" | column -t -s $'\t'
  echo
  echo "Straight to node 1: product GETs for ids it owns (local) and ids another node owns (forwarded):"
  jq -r '
    def f(x; n): if x == null then "-" else (x * pow(10; n) | round / pow(10; n) | tostring) end;
    ["keys", "conns", "ok req/s", "p50 ms", "p99 ms", "errors", "CPU s/1k all nodes",
     "CPU s/1k node 1", "CPU s/1k others"],
    (.runs[] | select(.label | test("^direct")) | select(.label != "direct-warm") |
      if .available == false then ["-", "-", "-", "-", "-", "-", "-", "-", "not available: " + .unavailable_reason]
      elif .error != null then [.label, "-", "-", "-", "-", "-", "-", "-", "FAILED: " + .error]
      else
        (.entry_pid | tostring) as $entry
        | (.server.by_pid[$entry].cpu_s_per_1k) as $mine
        | [.keys, (.connections | tostring), f(.ok_per_second; 0), f(.latency_ms.p50; 3),
           f(.latency_ms.p99; 3), ((.errors.total // 0) | tostring), f(.server.cpu_s_per_1k; 3),
           f($mine; 3), f(.server.cpu_s_per_1k - $mine; 3)]
      end) | @tsv' "$out/results.json" | column -t -s $'\t'
  jq -r '"load average (1, 5, 15 min) at start \(.meta.load_average_start), at end \(.meta.load_average_end) on \(.meta.cores) cores; commit \(.meta.commit)\(if .meta.dirty_tree then " (dirty)" else "" end)"' \
    "$out/results.json"
} | tee "$out/table.txt"

bench_log "results: $out/results.json, $out/table.txt ($((SECONDS - started)) s in all)"
exit "$failed"

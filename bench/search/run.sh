#!/usr/bin/env bash
# bench/search/run.sh: GET /search against the same SQL run directly by pgbench, in one run.
#
#   bench/search/run.sh [--duration S] [--connections N] [--products N] [--rounds R]
#                       [--out DIR] [--keep]
#
# Starts its own PostgreSQL and Redis and a Release build of Emporium on free loopback ports
# (bench/stack.sh, on scripts/lib.sh), seeds --products (default 100,000), and then measures,
# one after the other, at the same concurrency (--connections, default 16):
#   emporium-cached    emporium-bench --scenario search: a realistic query mix (one or two
#                      words, some narrowed by category, price or stock, sorted, misspelt,
#                      category browsing, one answer in five followed by its next page), with
#                      the Redis cache of results as deployed;
#   emporium-uncached  the same with Redis out of reach: every search runs its SQL;
#   pgbench-cN         the same mix of statements by pgbench (bench/search/pgbench/*.sql, in the
#                      mix's proportions), the database alone, with N clients;
#   pgbench-cP         and with the server's pool size P (the server never runs more than P
#                      searches at once).
# The four runs are repeated --rounds times (default 2), interleaved, so that a change in the
# load of this shared machine during the run hits all of them alike. Prints every run, then the
# median of each kind with the ratios of Emporium to pgbench; writes every raw result to DIR
# (default bench/results/search-<time>). Stops everything at the end, also on failure. Not a
# test: numbers from this shared machine compare only within one run.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=../stack.sh
source "$(dirname "${BASH_SOURCE[0]}")/../stack.sh"
cd "$EMPORIUM_ROOT"

duration=20
connections=16
products=100000
rounds=2
out=""
while (($#)); do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --products) products="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --keep) bench_keep=1; shift ;;
    -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
    *) emporium_err "unknown argument '$1' (see --help)"; exit 2 ;;
  esac
done
[[ -n "$out" ]] || out="$EMPORIUM_ROOT/bench/results/search-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
out="$(cd "$out" && pwd -P)"
scripts="$BENCH_DIR/search/pgbench"
started=$SECONDS

bench_init
bench_deps
bench_build
bench_start_services
bench_seed "$products"
# As autovacuum would after a bulk load: statistics for the planner, the visibility map for
# index-only counting.
PGCONNECT_TIMEOUT=10 "$EMPORIUM_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$BENCH_PG_URL" \
  -c "VACUUM ANALYZE products" >/dev/null
pool_size="${EMPORIUM_POSTGRES_POOL_SIZE:-4}" # the server's search workers (its default)

runs=()
failed=0

# emporium_run LABEL: emporium-bench's search scenario against the running server.
emporium_run() {
  local label="$1" rc=0
  bench_log "run: $label"
  "$BENCH_BIN" --label "$label" --json "$out/$label.json" --target "$BENCH_URL" --scenario search \
    --connections "$connections" --duration "$duration" --warmup 2 \
    --pg-url "$BENCH_PG_URL" --ids-from-pg --ids-limit 1000 \
    --server-pid "$bench_server_pid" --db-pid "$BENCH_PG_PID" --db-pid "$BENCH_REDIS_PID" \
    2>"$out/$label.log" || rc=$?
  cat "$out/$label.log" >&2
  if ((rc != 0)); then
    failed=1
    [[ -s "$out/$label.json" ]] ||
      jq -n --arg l "$label" --arg e "emporium-bench exited with $rc" '{label: $l, error: $e}' >"$out/$label.json"
  fi
  runs+=("$out/$label.json")
}

# pgbench_run LABEL CLIENTS: the mix of statements, in the proportions of emporium-bench's mix
# (bench/scenarios.cpp, search_user: 40 % one noun, 20 % modifier and noun, 15 % noun in a
# category, 10 % noun in a price range, 5 % modifier in stock sorted by price, 5 % category
# browsing, 5 % misspelt). The next pages the generator also asks for are keyset pages of the
# same statements.
pgbench_run() {
  local label="$1" clients="$2" threads=1 logdir="$bench_tmp/pgbench-$1" rc=0
  ((clients > 1)) && threads=2
  mkdir -p "$logdir"
  chmod 777 "$logdir"
  bench_log "run: $label"
  (cd "$logdir" && PGCONNECT_TIMEOUT=10 "$EMPORIUM_PG_BIN/pgbench" -n -M extended \
    -c "$clients" -j "$threads" -T "$duration" --log --log-prefix=tx \
    -f "$scripts/noun.sql@80" -f "$scripts/modifier_noun.sql@40" \
    -f "$scripts/noun_category.sql@30" -f "$scripts/noun_price.sql@20" \
    -f "$scripts/modifier_in_stock_price_asc.sql@5" -f "$scripts/modifier_in_stock_price_desc.sql@5" \
    -f "$scripts/category_newest.sql@10" -f "$scripts/misspelt.sql@10" \
    "$BENCH_PG_URL") >"$out/$label.log" 2>&1 || rc=$?
  cat "$out/$label.log" >&2
  if ((rc != 0)); then
    failed=1
    jq -n --arg l "$label" --arg e "pgbench exited with $rc" '{label: $l, error: $e}' >"$out/$label.json"
    runs+=("$out/$label.json")
    return 0
  fi
  local tps n
  tps="$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$out/$label.log")"
  cat "$logdir"/tx.* | awk '{ print $3 }' | sort -n >"$logdir/sorted"
  n="$(wc -l <"$logdir/sorted")"
  awk -v n="$n" -v label="$label" -v c="$clients" -v tps="${tps:-0}" '
    { v[NR] = $1 }
    function at(p,   r) { r = int(p / 100 * n + 0.999999); if (r < 1) r = 1; if (r > n) r = n; return v[r] / 1000 }
    END {
      printf "{\"label\":\"%s\",\"scenario\":\"pgbench-search\",\"connections\":%d,", label, c
      printf "\"requests\":%d,\"ok_per_second\":%s,", n, tps
      printf "\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f},", at(50), at(90), at(99), at(100)
      printf "\"errors\":{\"total\":0}}\n"
    }' "$logdir/sorted" >"$out/$label.json"
  runs+=("$out/$label.json")
}

dead_redis_port="$(emporium_free_port)"
for ((round = 1; round <= rounds; round++)); do
  # Emporium, with its cache (emptied: every round starts cold).
  redis-cli -u "$BENCH_REDIS_URL" flushdb >/dev/null
  bench_start_server
  emporium_run "emporium-cached-r$round"
  bench_stop_server
  # Emporium, every search on PostgreSQL (Redis on a port nothing listens on).
  bench_start_server "EMPORIUM_REDIS_URL=redis://127.0.0.1:$dead_redis_port/0"
  emporium_run "emporium-uncached-r$round"
  bench_stop_server
  # The database alone.
  pgbench_run "pgbench-c$connections-r$round" "$connections"
  if [[ "$pool_size" != "$connections" ]]; then
    pgbench_run "pgbench-c$pool_size-r$round" "$pool_size"
  fi
done

# -- results -----------------------------------------------------------------------------------
commit="$(git -C "$EMPORIUM_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
jq -s --arg date "$(date -u +%FT%TZ)" --arg commit "$commit" --argjson conns "$connections" \
  --argjson products "$products" --argjson duration "$duration" --argjson pool "$pool_size" \
  --arg command "bench/search/run.sh --duration $duration --connections $connections --products $products --rounds $rounds" \
  '{meta: {date: $date, commit: $commit, cores: '"$(nproc)"', connections: $conns, pool: $pool,
           products: $products, duration_s: $duration, command: $command}, runs: .}' \
  "${runs[@]}" >"$out/results.json"

# Every run, then per kind (the label without its round) the median of each figure, and the
# ratios of the median queries per second to pgbench's at the same concurrency (cN) and at the
# server's pool size (cP).
jq -r --arg same "pgbench-c$connections" --arg pool "pgbench-c$pool_size" '
  def f(x; n): if x == null then "-" else (x * pow(10; n) | round / pow(10; n) | tostring) end;
  def median: sort | if length == 0 then null elif length % 2 == 1 then .[length / 2 | floor]
                      else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def row: [.label, (.connections | tostring), f(.ok_per_second; 1), f(.latency_ms.p50; 2),
            f(.latency_ms.p99; 2), ((.errors.total // 0) | tostring)];
  ([.runs[] | select(.error == null)] | group_by(.label | sub("-r[0-9]+$"; ""))
   | map({label: (.[0].label | sub("-r[0-9]+$"; "")), connections: .[0].connections,
          ok_per_second: (map(.ok_per_second) | median),
          latency_ms: {p50: (map(.latency_ms.p50) | median), p99: (map(.latency_ms.p99) | median)},
          errors: {total: (map(.errors.total // 0) | add)}})) as $kinds
  | ($kinds[] | select(.label == $same) | .ok_per_second) as $s
  | ($kinds[] | select(.label == $pool) | .ok_per_second) as $p
  | ["run", "conns", "queries/s", "p50 ms", "p99 ms", "errors", "vs " + $same, "vs " + $pool],
    (.runs[] | if .error != null then [.label, "-", "-", "-", "-", "FAILED: " + .error] else row end),
    ["", "", "", "", "", "", "", ""],
    ($kinds[] | row + [f(.ok_per_second / $s; 2), f(.ok_per_second / $p; 2)]
              | .[0] = "median " + .[0])
  | @tsv' "$out/results.json" | column -t -s $'\t' | tee "$out/table.txt"

bench_log "command: bench/search/run.sh --duration $duration --connections $connections --products $products --rounds $rounds"
bench_log "results: $out/results.json, $out/table.txt ($((SECONDS - started)) s in all)"
exit "$failed"

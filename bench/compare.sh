#!/usr/bin/env bash
# bench/compare.sh: Emporium measured side by side with this machine's ceilings, in one run.
#
#   bench/compare.sh [--duration S] [--connections N] [--products N] [--customers N]
#                    [--out DIR] [--keep]
#
# Starts its own PostgreSQL, Redis, a Release build of Emporium (seeded with --products,
# default 100,000) and nginx, all on free loopback ports with their data in a temporary
# directory, and stops them at the end, also on failure. Then, with the same generator
# (emporium-bench) and the same number of connections (default 64):
#   (1) the HTTP ceiling: nginx serving the exact bytes of one GET /products/{id} answer,
#       and wrk against the same URLs as emporium-bench, alternately, three rounds (the
#       generator cross-check, also on Emporium);
#   (2) the database references, pgbench on a database of the same schema: the least durable
#       work an order can cost (bench/pgbench/minimal.sql: one conditional stock UPDATE and one
#       order INSERT, one commit; 16 clients over the catalog, and 16 clients on one product),
#       and today's order SQL (bench/pgbench/checkout.sql, the first place_order()'s ten
#       statements) with the same concurrency as the HTTP runs and with the server's pool size;
#   (3) Emporium's scenarios: product-get (activation pass, warm uniform, Zipf, then nginx and
#       Emporium by turns, three rounds each, for the read ratio's median; open loop at
#       half the closed-loop rate), browse, search, checkout, mix, hot-sku (every connection
#       ordering one product) and hot-sku-sellout (the same with stock for about half the
#       window: never oversold, refused with 409 once sold out).
# Prints one table and the ratios the performance aims are stated in, writes DIR/results.json
# (every raw result) and DIR/latency.png (latency percentile curves). See bench/README.md for
# how to read them.
#
# Exit status: 0, or 1 when a run failed (a correctness check included). Scenarios whose
# endpoints the server does not have yet are reported as "not available" and do not fail it.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=stack.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack.sh"
cd "$EMPORIUM_ROOT"

duration=10
connections=64
products=100000
customers=1000
out=""
while (($#)); do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --products) products="$2"; shift 2 ;;
    --customers) customers="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --keep) bench_keep=1; shift ;;
    -h | --help) sed -n '2,31p' "$0"; exit 0 ;;
    *) emporium_err "unknown argument '$1' (see --help)"; exit 2 ;;
  esac
done
[[ -n "$out" ]] || out="$EMPORIUM_ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
out="$(cd "$out" && pwd -P)"
started=$SECONDS
load_start="$(cut -d' ' -f1-3 /proc/loadavg)" # other load on this machine skews everything

bench_init
bench_deps
bench_build
bench_start_services
bench_seed "$products"

# The pgbench database: Emporium's own schema (emporium migrate), bench rows (setup.sql).
pgb_customers=1000
pgb_carts=400000
bench_log "preparing the pgbench database (schema by emporium migrate)"
EMPORIUM_PG_URL="$BENCH_PG_PGB_URL" EMPORIUM_LOG_LEVEL=warn "$EMPORIUM_BIN" migrate >/dev/null
PGCONNECT_TIMEOUT=10 "$EMPORIUM_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 "$BENCH_PG_PGB_URL" \
  -v products="$products" -v customers="$pgb_customers" -v carts="$pgb_carts" \
  -f "$BENCH_DIR/pgbench/setup.sql" >/dev/null

bench_start_server
pool_size="${EMPORIUM_POSTGRES_POOL_SIZE:-4}" # the server's PostgreSQL pool (its default)

failed=0
runs=()  # result files, in table order

# bench LABEL ARGS...: one emporium-bench run into $out/LABEL.json (0, 1 failed, 3 not available).
bench() {
  local label="$1" rc=0
  shift
  bench_log "run: $label"
  "$BENCH_BIN" --label "$label" --json "$out/$label.json" "$@" 2>"$out/$label.log" || rc=$?
  cat "$out/$label.log" >&2
  case "$rc" in
    0 | 3) ;;
    *)
      failed=1
      if [[ ! -s "$out/$label.json" ]]; then
        jq -n --arg l "$label" --arg e "emporium-bench exited with $rc" \
          '{label: $l, available: true, passed: false, error: $e}' >"$out/$label.json"
      fi
      ;;
  esac
  runs+=("$out/$label.json")
  return 0
}

# wrk_run LABEL URL [SECONDS]: wrk with the same connections on one URL, as a result file.
wrk_run() {
  local label="$1" url="$2" secs="${3:-$duration}"
  bench_log "run: $label"
  wrk -t1 -c"$connections" -d"${secs}s" --latency "$url" >"$out/$label.log" 2>&1 || true
  cat "$out/$label.log" >&2
  awk -v label="$label" -v url="$url" -v c="$connections" '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec:/ { rps = $2 }
    /^ +50%/ { p50 = ms($2) } /^ +90%/ { p90 = ms($2) } /^ +99%/ { p99 = ms($2) }
    /Non-2xx or 3xx responses:/ { non2xx = $5 }
    /Socket errors:/ { gsub(",", ""); serr = $4 + $6 + $8 + $10 }
    END {
      printf "{\"label\":\"%s\",\"scenario\":\"wrk\",\"target\":\"%s\",\"connections\":%d,", label, url, c
      printf "\"available\":true,\"requests_per_second\":%s,\"ok_per_second\":%s,", rps + 0, rps + 0
      printf "\"latency_ms\":{\"p50\":%s,\"p90\":%s,\"p99\":%s},", p50 + 0, p90 + 0, p99 + 0
      printf "\"errors\":{\"total\":%d}}\n", non2xx + serr
    }' "$out/$label.log" >"$out/$label.json"
  runs+=("$out/$label.json")
}

# generator_check NAME URL_BASE PATH [--server-pid PID]: wrk and emporium-bench (scenario get)
# on the same URL with the same connections, alternately, three rounds each (this machine is
# shared: one pair can differ by 30 % from noise alone). The medians go to
# generator-check-NAME.json; the rounds stay out of the table.
generator_check() {
  local name="$1" base="$2" path="$3" secs r
  shift 3
  secs=$(((duration + 1) / 2))
  local saved=("${runs[@]}")
  for r in 1 2 3; do
    wrk_run "wrk-$name-$r" "$base$path" "$secs"
    bench "bench-$name-$r" --target "$base" --scenario get --path "$path" --duration "$secs" \
      --connections "$connections" "$@"
  done
  runs=("${saved[@]}")
  jq -s --arg name "$name" --arg url "$base$path" '
    def median: sort | .[length / 2 | floor];
    (map(select(.scenario == "wrk") | .requests_per_second)) as $w
    | (map(select(.scenario == "get") | .requests_per_second)) as $b
    | {target: $name, url: $url, rounds: [range(0; $w | length) | {wrk: $w[.], bench: $b[.]}],
       wrk_median: ($w | median), bench_median: ($b | median),
       difference_pct: ((($b | median) - ($w | median)) / ($w | median) * 100)}' \
    "$out/wrk-$name-"[123].json "$out/bench-$name-"[123].json >"$out/generator-check-$name.json"
}

# pgbench_run LABEL CLIENTS SCRIPT [PRODUCTS]: pgbench running bench/pgbench/SCRIPT.sql
# (scenario "pgbench-SCRIPT") over PRODUCTS products (default: the whole catalog), as a result
# file.
pgbench_run() {
  local label="$1" clients="$2" script="$3" spread="${4:-$products}" threads=1 logdir="$bench_tmp/pgbench-$1"
  ((clients > 1)) && threads=2
  rm -rf "$logdir"
  mkdir -p "$logdir"
  chmod 777 "$logdir"
  bench_log "run: $label"
  local cpu0 cpu1 pss_max=0 pss
  cpu0="$(bench_tree_cpu "$BENCH_PG_PID")"
  (cd "$logdir" && PGCONNECT_TIMEOUT=10 "$EMPORIUM_PG_BIN/pgbench" -n -M extended \
    -c "$clients" -j "$threads" -T "$duration" --log --log-prefix=tx \
    -D products="$spread" -D customers="$pgb_customers" -D carts="$pgb_carts" \
    -f "$BENCH_DIR/pgbench/$script.sql" "$BENCH_PG_PGB_URL") >"$out/$label.log" 2>&1 &
  local pgb=$!
  while kill -0 "$pgb" 2>/dev/null; do
    pss="$(bench_tree_pss_kib "$BENCH_PG_PID")"
    ((pss > pss_max)) && pss_max=$pss
    sleep 1
  done
  local rc=0
  wait "$pgb" || rc=$?
  cpu1="$(bench_tree_cpu "$BENCH_PG_PID")"
  cat "$out/$label.log" >&2
  if ((rc != 0)); then
    failed=1
    jq -n --arg l "$label" --arg s "pgbench-$script" --arg e "pgbench exited with $rc" \
      '{label: $l, scenario: $s, available: true, passed: false, error: $e}' \
      >"$out/$label.json"
    runs+=("$out/$label.json")
    return 0
  fi
  local tps failed_tx
  tps="$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$out/$label.log")"
  if [[ -z "$tps" ]] || ! grep -q '^number of transactions actually processed: [1-9]' "$out/$label.log"; then
    failed=1
    jq -n --arg l "$label" --arg s "pgbench-$script" '{label: $l, scenario: $s, available: true,
      passed: false, error: "pgbench completed no transaction"}' >"$out/$label.json"
    runs+=("$out/$label.json")
    return 0
  fi
  failed_tx="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out/$label.log")"
  # Per-transaction latencies (microseconds, third field of pgbench's log), sorted, into the
  # same percentile points as emporium-bench reports.
  cat "$logdir"/tx.* | awk '{ print $3 }' | sort -n >"$logdir/sorted"
  local n
  n="$(wc -l <"$logdir/sorted")"
  awk -v n="$n" -v label="$label" -v scenario="pgbench-$script" -v spread="$spread" \
    -v c="$clients" -v tps="${tps:-0}" -v f="${failed_tx:-0}" \
    -v cpu="$(echo "$cpu1 - $cpu0" | bc)" -v pss="$pss_max" '
    BEGIN {
      nps = split("0 50 75 87.5 90 93.75 96.875 98.4375 99 99.21875 99.609375 99.8046875 99.9 99.90234375 99.951171875 99.9755859375 99.99 100", ps, " ")
    }
    { v[NR] = $1 }
    function at(p,   r) { r = int(p / 100 * n + 0.999999); if (r < 1) r = 1; if (r > n) r = n; return v[r] / 1000 }
    END {
      printf "{\"label\":\"%s\",\"scenario\":\"%s\",\"connections\":%d,\"products\":%d,\"available\":true,", label, scenario, c, spread
      printf "\"requests\":%d,\"requests_per_second\":%s,\"ok_per_second\":%s,", n, tps, tps
      printf "\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},", at(50), at(90), at(99), at(99.9), at(100)
      printf "\"percentiles\":["
      for (i = 1; i <= nps; i++) printf "%s[%s,%.3f]", (i > 1 ? "," : ""), ps[i], at(ps[i])
      printf "],\"errors\":{\"total\":%d},", f
      printf "\"server\":{\"cpu_s\":%.3f,\"cpu_s_per_1k\":%.4f,\"pss_peak_kib\":%d}}\n", cpu + 0, (n ? cpu / n * 1000 : 0), pss
    }' "$logdir/sorted" >"$out/$label.json"
  runs+=("$out/$label.json")
}

# alternating_reads: product-get on nginx and on Emporium by turns, three rounds each of half the
# duration. This machine's speed drifts over minutes (one run of each, minutes apart, has
# differed by half from the VM alone), and a ratio of two runs taken in turn is less exposed to
# it: the median of the three rounds' ratios is the read aim's second row. The rounds go to
# alternating-reads.json and stay out of the table.
alternating_reads() {
  local secs r saved=("${runs[@]}")
  secs=$(((duration + 1) / 2))
  for r in 1 2 3; do
    bench "alt-nginx-$r" --target "$BENCH_NGINX_URL" --scenario product-get --duration "$secs" \
      --warmup 1 --connections "$connections" "${ids[@]}" --server-pid "$bench_nginx_pid"
    bench "alt-emporium-$r" --target "$BENCH_URL" --scenario product-get --duration "$secs" \
      --warmup 1 "${common[@]}"
  done
  runs=("${saved[@]}")
  jq -s '
    def median: sort | .[length / 2 | floor];
    (map(select(.label | startswith("alt-nginx-")) | .ok_per_second)) as $n
    | (map(select(.label | startswith("alt-emporium-")) | .ok_per_second)) as $e
    | [range(0; $n | length) | {nginx: $n[.], emporium: $e[.], ratio: ($e[.] / $n[.])}] as $rounds
    | {rounds: $rounds, ratio_median: ($rounds | map(.ratio) | median)}' \
    "$out"/alt-nginx-[123].json "$out"/alt-emporium-[123].json >"$out/alternating-reads.json"
}

# alternating_writes: the write aims' ratios as the reads' second row takes them. The database
# references run last, minutes after checkout and hot-sku (their WAL and dirty pages must not
# slow those runs), and this machine's speed drifts over minutes: the minimal reference alone
# has measured 1,010 to 1,972 tx/s in compare.sh runs of different days. So, after everything
# above: the minimal reference, today's SQL, checkout and hot-sku by turns, three rounds, and
# the median of the rounds' ratios. Each run takes the whole duration: today's SQL at 64
# clients waits on row locks (p50 ~250 ms), and in half the duration it measured half its
# rate. Every checkout and hot-sku round keeps its accounting. The rounds go to
# alternating-writes.json and stay out of the table.
alternating_writes() {
  local r saved=("${runs[@]}")
  for r in 1 2 3; do
    pgbench_run "alt-minimal-$r" 16 minimal
    pgbench_run "alt-todays-sql-$r" "$connections" checkout
    bench "alt-checkout-$r" --target "$BENCH_URL" --scenario checkout --duration "$duration" \
      --warmup 1 --customers-file "$bench_tmp/customers.jsonl" "${common[@]}"
    bench "alt-hot-sku-$r" "${hot[@]}" --hot-stock 1000000000
  done
  runs=("${saved[@]}")
  jq -s '
    def median: map(select(. != null)) | if length == 0 then null else sort | .[length / 2 | floor] end;
    def div(a; b): if a == null or b == null or b == 0 then null else a / b end;
    def of(p; f): [.[] | select(.label | startswith(p)) | f];
    of("alt-minimal-"; .requests_per_second) as $m
    | of("alt-todays-sql-"; .requests_per_second) as $t
    | of("alt-checkout-"; .orders.per_second) as $c
    | of("alt-hot-sku-"; .orders.per_second) as $h
    | [range(0; $m | length) | {minimal: $m[.], todays_sql: $t[.], checkout: $c[.], hot_sku: $h[.],
        checkout_vs_minimal: div($c[.]; $m[.]), checkout_vs_todays_sql: div($c[.]; $t[.]),
        hot_sku_vs_minimal: div($h[.]; $m[.])}] as $rounds
    | {rounds: $rounds,
       checkout_vs_minimal_median: ($rounds | map(.checkout_vs_minimal) | median),
       checkout_vs_todays_sql_median: ($rounds | map(.checkout_vs_todays_sql) | median),
       hot_sku_vs_minimal_median: ($rounds | map(.hot_sku_vs_minimal) | median)}' \
    "$out"/alt-minimal-[123].json "$out"/alt-todays-sql-[123].json "$out"/alt-checkout-[123].json \
    "$out"/alt-hot-sku-[123].json >"$out/alternating-writes.json"
}

ids=(--pg-url "$BENCH_PG_URL" --ids-from-pg)
common=(--connections "$connections" "${ids[@]}" --server-pid "$bench_server_pid"
        --db-pid "$BENCH_PG_PID" --db-pid "$BENCH_REDIS_PID")

# -- (1) the HTTP ceiling --------------------------------------------------------------------
one_id="$("$EMPORIUM_PG_BIN/psql" -X -qAt "$BENCH_PG_URL" -c "SELECT id FROM products ORDER BY id LIMIT 1 OFFSET 500")"
curl -sf "$BENCH_URL/products/$one_id" -o "$bench_tmp/product.json"
bench_start_nginx "$bench_tmp/product.json"
# --server-pid of nginx's master: its worker is counted with it.
bench nginx-product-get --target "$BENCH_NGINX_URL" --scenario product-get --duration "$duration" --warmup 1 \
  --connections "$connections" "${ids[@]}" --server-pid "$bench_nginx_pid"
generator_check nginx "$BENCH_NGINX_URL" "/products/$one_id" --server-pid "$bench_nginx_pid"

# -- (3) Emporium: reads ------------------------------------------------------------------------
# First pass: every product once, activating its actor (loads from Redis, then PostgreSQL).
bench emporium-activate-all --target "$BENCH_URL" --scenario product-get --once --duration 300 "${common[@]}"
generator_check emporium "$BENCH_URL" "/products/$one_id" --server-pid "$bench_server_pid"
bench product-get --target "$BENCH_URL" --scenario product-get --duration "$duration" --warmup 1 "${common[@]}"
bench product-get-zipf --target "$BENCH_URL" --scenario product-get --zipf 0.99 --duration "$duration" --warmup 1 "${common[@]}"
alternating_reads
closed_rps="$(jq -r '.ok_per_second // 0' "$out/product-get.json")"
open_rate="$(echo "$closed_rps / 2" | bc)"
if ((open_rate > 0)); then
  bench product-get-open --target "$BENCH_URL" --scenario product-get --rate "$open_rate" --duration "$duration" --warmup 1 "${common[@]}"
fi
bench browse --target "$BENCH_URL" --scenario browse --duration "$duration" --warmup 1 "${common[@]}"
bench search --target "$BENCH_URL" --scenario search --duration "$duration" --warmup 1 "${common[@]}"

# -- (3) Emporium: writes, with the accounting ----------------------------------------------
bench checkout --target "$BENCH_URL" --scenario checkout --duration "$duration" --warmup 1 \
  --customers-file "$bench_tmp/customers.jsonl" "${common[@]}"
bench mix --target "$BENCH_URL" --scenario mix --customers "$customers" --duration "$duration" --warmup 1 \
  --customers-file "$bench_tmp/customers.jsonl" "${common[@]}"
# One product, every connection a customer of its own ordering one unit at a time: first with
# stock that never runs out (orders/s on a hot row), then with stock for about half the window
# (it must sell out, never oversell, and refuse with 409 after).
admin_key="$(bench_server_env | sed -n 's/^EMPORIUM_ADMIN_KEY=//p')"
hot=(--target "$BENCH_URL" --scenario hot-sku --customers "$connections" --duration "$duration" --warmup 1
     --admin-key "$admin_key" --customers-file "$bench_tmp/customers.jsonl" "${common[@]}")
bench hot-sku "${hot[@]}" --hot-stock 1000000000
hot_rate="$(jq -r '.orders.per_second // 0' "$out/hot-sku.json")"
sellout_stock="$(echo "s = $hot_rate * $duration / 2; if (s < 20) s = 20; scale = 0; s / 1" | bc)"
bench hot-sku-sellout "${hot[@]}" --hot-stock "$sellout_stock" --expect-sellout

# -- (2) the database references (last: their WAL and dirty pages must not slow the runs above)
# The floor: the least an order can cost, 16 clients over the catalog, then all on one product.
pgbench_run pgbench-minimal-c16 16 minimal
# Today's order SQL, with the HTTP runs' concurrency and with the server's pool size.
pgbench_run "pgbench-todays-sql-c$connections" "$connections" checkout
if [[ "$pool_size" != "$connections" ]]; then
  pgbench_run "pgbench-todays-sql-c$pool_size" "$pool_size" checkout
fi
pgbench_run pgbench-minimal-1product-c16 16 minimal 1
alternating_writes
bench_stop_server

# -- results -----------------------------------------------------------------------------------
commit="$(git -C "$EMPORIUM_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$EMPORIUM_ROOT" status --porcelain 2>/dev/null | grep -q . && echo true || echo false)"
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"
jq -s --arg date "$(date -u +%FT%TZ)" --arg commit "$commit" --argjson dirty "$dirty" \
  --arg load_start "$load_start" --arg load_end "$load_end" \
  --slurpfile checks <(cat "$out"/generator-check-*.json 2>/dev/null) \
  --slurpfile alternating <(cat "$out/alternating-reads.json" 2>/dev/null) \
  --slurpfile alternating_w <(cat "$out/alternating-writes.json" 2>/dev/null) \
  --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" \
  --argjson cores "$(nproc)" --argjson conns "$connections" --argjson products "$products" \
  --argjson duration "$duration" \
  '{meta: {date: $date, commit: $commit, dirty_tree: $dirty, cpu: $cpu, cores: $cores,
           connections: $conns, products: $products, duration_s: $duration,
           load_average_start: $load_start, load_average_end: $load_end,
           command: "bench/compare.sh"}, generator_check: $checks,
    alternating_reads: ($alternating[0] // null),
    alternating_writes: ($alternating_w[0] // null), runs: .}' "${runs[@]}" >"$out/results.json"

# The table. Ratios: read scenarios against nginx's product-get; orders per second against
# pgbench's transactions per second: "vs minimal" the least an order can cost (minimal.sql, 16
# clients over the catalog), "vs today's SQL" the first place_order()'s SQL (checkout.sql) at
# the HTTP runs' concurrency.
ratio_refs=(--arg nginx nginx-product-get --arg minimal pgbench-minimal-c16
            --arg todays "pgbench-todays-sql-c$connections" --arg emp "$BENCH_URL")
# shellcheck disable=SC2016 # jq's variables
jq_common='
  def f(x; n): if x == null then "-" else (x * pow(10; n) | round / pow(10; n) | tostring) end;
  def find(l): (.runs[] | select(.label == l));
  def rate(l): ([find(l) | .ok_per_second // null] | first // null | if . == 0 then null else . end);
  def tps(l): ([find(l) | .requests_per_second // null] | first // null | if . == 0 then null else . end);
  def div(a; b): if a == null or b == null then null else a / b end;
  def hot_note: if .hot_sku == null then "" else .hot_sku as $h
    | (if $h.passed then "" else "OVERSELL CHECK FAILED: \($h.failures[0] // ""); " end)
      + (if $h.expect_sellout then
           "sold \($h.units_acknowledged_not_cancelled) of \($h.stock_before) (left \($h.stock_after)), \($h.checkout_409) x 409; "
         else "" end) end;
'
jq -r "${ratio_refs[@]}" "$jq_common"'
  rate($nginx) as $n | tps($minimal) as $m | tps($todays) as $t
  | ["run", "conns", "ok req/s", "orders/s", "p50 ms", "p99 ms", "errors", "CPU s/1k srv",
     "CPU s/1k db", "peak RSS MiB", "vs nginx", "vs minimal", "vs today'"'"'s SQL", "note"],
    (.runs[] |
      if .available == false then
        [.label, "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "not available: " + .unavailable_reason]
      elif .error != null then
        [.label, "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "FAILED: " + .error]
      else
        [.label, (.connections | tostring) + (if .mode == "open" then " @" + (.rate | tostring) + "/s" else "" end),
         f(.ok_per_second; 0), f(.orders.per_second; 1),
         f(.latency_ms.p50; 2), f(.latency_ms.p99; 2),
         ((.errors.total // 0) | tostring),
         f(.server.cpu_s_per_1k; 3), f(.db.cpu_s_per_1k; 3),
         f((.server.vm_hwm_kib // .server.pss_peak_kib // null) as $k | if $k == null then null else $k / 1024 end; 1),
         (if (.scenario | IN("product-get", "browse", "search", "get")) and .target == $emp and $n != null
          then f(.ok_per_second / $n; 2) else "" end),
         (if (.scenario | IN("checkout", "mix", "hot-sku")) and .orders.per_second != null and $m != null
             and (.hot_sku.expect_sellout | not)
          then f(.orders.per_second / $m; 2) else "" end),
         (if (.scenario | IN("checkout", "mix")) and .orders.per_second != null and $t != null
          then f(.orders.per_second / $t; 2) else "" end),
         hot_note + (if .accounting.checked == true then
            (if .accounting.passed then "accounting passed (\(.accounting.acknowledged) orders)"
             else "ACCOUNTING FAILED: \(.accounting.failures[0] // "")" end)
          elif .mode == "open" and (.unfinished // 0) > 0 then "\(.unfinished) unanswered at end"
          elif (.scenario | startswith("pgbench-")) and .products == 1 then "one product"
          else "" end)]
      end)
  | @tsv' "$out/results.json" | column -t -s $'\t' | tee "$out/table.txt"

# The performance aims as ratios of this run (each side measured in the same run), into the
# table and results.json.
jq "${ratio_refs[@]}" "$jq_common"'
  rate($nginx) as $n | tps($minimal) as $m | tps($todays) as $t
  | def p99(l): [find(l) | .latency_ms.p99 // null] | first // null;
    def aim(what; value; cmp; goal; unit):
      {what: what, value: value, aim: (cmp + " " + (goal | tostring) + unit),
       reached: (if value == null then null elif cmp == ">=" then value >= goal else value < goal end)};
    [aim("product-get ok/s / nginx"; div(rate("product-get"); $n); ">="; 0.8; ""),
     aim("product-get ok/s / nginx, median of 3 alternating rounds";
         .alternating_reads.ratio_median // null; ">="; 0.8; ""),
     aim("product-get p99 ms"; p99("product-get"); "<"; 5; " ms"),
     aim("product-get-zipf ok/s / nginx"; div(rate("product-get-zipf"); $n); ">="; 0.8; ""),
     aim("product-get-zipf p99 ms"; p99("product-get-zipf"); "<"; 5; " ms"),
     aim("checkout orders/s / minimal (pgbench c16)"; div([find("checkout") | .orders.per_second] | first; $m); ">="; 0.5; ""),
     aim("checkout orders/s / today'"'"'s SQL (pgbench c\($todays | ltrimstr("pgbench-todays-sql-c")))"; div([find("checkout") | .orders.per_second] | first; $t); ">="; 3; ""),
     aim("checkout orders/s / minimal, median of 3 alternating rounds";
         .alternating_writes.checkout_vs_minimal_median // null; ">="; 0.5; ""),
     aim("checkout orders/s / today'"'"'s SQL, median of 3 alternating rounds";
         .alternating_writes.checkout_vs_todays_sql_median // null; ">="; 3; ""),
     aim("hot-sku orders/s / minimal (pgbench c16)"; div([find("hot-sku") | .orders.per_second] | first; $m); ">="; 0.5; ""),
     aim("hot-sku orders/s / minimal, median of 3 alternating rounds";
         .alternating_writes.hot_sku_vs_minimal_median // null; ">="; 0.5; ""),
     aim("browse p99 ms"; p99("browse"); "<"; 50; " ms")]
    + [find("hot-sku-sellout") | {what: "hot-sku-sellout: never oversold, sold out, 409 after",
        value: (if .hot_sku == null then null else "\(.hot_sku.units_acknowledged_not_cancelled) of \(.hot_sku.stock_before) sold, \(.hot_sku.checkout_409) x 409" end),
        aim: "passed", reached: (.passed // false)}]' "$out/results.json" >"$out/aims.json"
{
  echo
  echo "Against the aims (ratios inside this run):"
  jq -r '.[] | [.what, (if .value == null then "-" elif (.value | type) == "number" then (.value * 100 | round / 100 | tostring) else .value end),
                .aim, (if .reached == null then "n/a" elif .reached then "yes" else "NO" end)] | @tsv' "$out/aims.json" \
    | column -t -s $'\t' | sed 's/^/  /'
} | tee -a "$out/table.txt"
jq --slurpfile aims "$out/aims.json" '. + {aims: $aims[0]}' "$out/results.json" >"$out/results.json.tmp" \
  && mv "$out/results.json.tmp" "$out/results.json"

# The generator cross-check: emporium-bench and wrk on the same URL and connections.
jq -r '.generator_check[] | "generator check on \(.target): wrk \(.wrk_median | round) req/s, emporium-bench \(.bench_median | round) req/s (medians of 3 alternating rounds), difference \(.difference_pct * 10 | round / 10) %"' \
  "$out/results.json" | tee -a "$out/table.txt"
jq -r '"load average (1, 5, 15 min) at start \(.meta.load_average_start), at end \(.meta.load_average_end) on \(.meta.cores) cores"' \
  "$out/results.json" | tee -a "$out/table.txt"

# The plot: latency by percentile, HdrHistogram-style (x = 1/(1-p), so the tail gets room).
mkdir -p "$out/curves"
plot_cmds=()
for f in "${runs[@]}"; do
  label="$(jq -r '.label' "$f")"
  [[ "$label" == bench-* || "$label" == wrk-* || "$label" == emporium-activate-all ]] && continue
  if jq -e '.percentiles | length > 0' "$f" >/dev/null 2>&1; then
    jq -r '.percentiles[] | [(if .[0] >= 100 then 100000 else ([1 / (1 - .[0] / 100), 100000] | min) end), .[1]] | @tsv' "$f" \
      >"$out/curves/$label.dat"
    style="with linespoints pointsize 0.5"
    [[ "$label" == nginx-* || "$label" == pgbench-* ]] && style="$style dashtype 2" # references
    plot_cmds+=("'$out/curves/$label.dat' using 1:2 $style title '$label'")
  fi
done
if ((${#plot_cmds[@]})); then
  {
    echo "set terminal pngcairo size 1280,760 font ',10'"
    echo "set output '$out/latency.png'"
    echo "set title 'Latency by percentile ($connections connections, ${duration} s per run; $(date -u +%F))'"
    echo "set logscale x"
    echo "set logscale y"
    echo "set xrange [1:100000]"
    echo "set xtics ('0%%' 1, '50%%' 2, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000, 'max' 100000)"
    echo "set xlabel 'percentile'"
    echo "set ylabel 'latency (ms)'"
    echo "set grid"
    echo "set key top left"
    printf 'plot '
    local_sep=""
    for c in "${plot_cmds[@]}"; do
      printf '%s%s' "$local_sep" "$c"
      local_sep=", "
    done
    echo
  } >"$out/latency.gp"
  gnuplot "$out/latency.gp" || bench_log "gnuplot failed (the JSON results are complete)"
fi

bench_log "results: $out/results.json, $out/table.txt, $out/latency.png ($((SECONDS - started)) s in all)"
exit "$failed"

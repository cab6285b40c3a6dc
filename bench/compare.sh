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
#   (2) the database ceiling: pgbench running the SQL of one checkout transaction
#       (bench/pgbench/checkout.sql) with the same concurrency, and with the server's pool size;
#   (3) Emporium's scenarios: product-get (activation pass, warm uniform, Zipf, open loop at
#       half the closed-loop rate), browse, search, checkout, mix.
# Prints one table, writes DIR/results.json (every raw result) and DIR/latency.png (latency
# percentile curves). See bench/README.md for how to read them.
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
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
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

# pgbench_run LABEL CLIENTS: the checkout transaction, as a result file.
pgbench_run() {
  local label="$1" clients="$2" threads=1 logdir="$bench_tmp/pgbench-$1"
  ((clients > 1)) && threads=2
  rm -rf "$logdir"
  mkdir -p "$logdir"
  chmod 777 "$logdir"
  bench_log "run: $label"
  local cpu0 cpu1 pss_max=0 pss
  cpu0="$(bench_tree_cpu "$BENCH_PG_PID")"
  (cd "$logdir" && PGCONNECT_TIMEOUT=10 "$EMPORIUM_PG_BIN/pgbench" -n -M extended \
    -c "$clients" -j "$threads" -T "$duration" --log --log-prefix=tx \
    -D products="$products" -D customers="$pgb_customers" -D carts="$pgb_carts" \
    -f "$BENCH_DIR/pgbench/checkout.sql" "$BENCH_PG_PGB_URL") >"$out/$label.log" 2>&1 &
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
    jq -n --arg l "$label" --arg e "pgbench exited with $rc" \
      '{label: $l, scenario: "pgbench-checkout", available: true, passed: false, error: $e}' \
      >"$out/$label.json"
    runs+=("$out/$label.json")
    return 0
  fi
  local tps failed_tx
  tps="$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' "$out/$label.log")"
  if [[ -z "$tps" ]] || ! grep -q '^number of transactions actually processed: [1-9]' "$out/$label.log"; then
    failed=1
    jq -n --arg l "$label" '{label: $l, scenario: "pgbench-checkout", available: true, passed: false,
      error: "pgbench completed no transaction"}' >"$out/$label.json"
    runs+=("$out/$label.json")
    return 0
  fi
  failed_tx="$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out/$label.log")"
  # Per-transaction latencies (microseconds, third field of pgbench's log), sorted, into the
  # same percentile points as emporium-bench reports.
  cat "$logdir"/tx.* | awk '{ print $3 }' | sort -n >"$logdir/sorted"
  local n
  n="$(wc -l <"$logdir/sorted")"
  awk -v n="$n" -v label="$label" -v c="$clients" -v tps="${tps:-0}" -v f="${failed_tx:-0}" \
    -v cpu="$(echo "$cpu1 - $cpu0" | bc)" -v pss="$pss_max" -v d="$duration" '
    BEGIN {
      nps = split("0 50 75 87.5 90 93.75 96.875 98.4375 99 99.21875 99.609375 99.8046875 99.9 99.90234375 99.951171875 99.9755859375 99.99 100", ps, " ")
    }
    { v[NR] = $1 }
    function at(p,   r) { r = int(p / 100 * n + 0.999999); if (r < 1) r = 1; if (r > n) r = n; return v[r] / 1000 }
    END {
      printf "{\"label\":\"%s\",\"scenario\":\"pgbench-checkout\",\"connections\":%d,\"available\":true,", label, c
      printf "\"requests\":%d,\"requests_per_second\":%s,\"ok_per_second\":%s,", n, tps, tps
      printf "\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},", at(50), at(90), at(99), at(99.9), at(100)
      printf "\"percentiles\":["
      for (i = 1; i <= nps; i++) printf "%s[%s,%.3f]", (i > 1 ? "," : ""), ps[i], at(ps[i])
      printf "],\"errors\":{\"total\":%d},", f
      printf "\"server\":{\"cpu_s\":%.3f,\"cpu_s_per_1k\":%.4f,\"pss_peak_kib\":%d}}\n", cpu + 0, (n ? cpu / n * 1000 : 0), pss
    }' "$logdir/sorted" >"$out/$label.json"
  runs+=("$out/$label.json")
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

# -- (2) the database ceiling (last: its WAL and dirty pages must not slow the runs above) ----
pgbench_run "pgbench-c$connections" "$connections"
if [[ "$pool_size" != "$connections" ]]; then
  pgbench_run "pgbench-c$pool_size" "$pool_size"
fi
bench_stop_server

# -- results -----------------------------------------------------------------------------------
commit="$(git -C "$EMPORIUM_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$EMPORIUM_ROOT" status --porcelain 2>/dev/null | grep -q . && echo true || echo false)"
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"
jq -s --arg date "$(date -u +%FT%TZ)" --arg commit "$commit" --argjson dirty "$dirty" \
  --arg load_start "$load_start" --arg load_end "$load_end" \
  --slurpfile checks <(cat "$out"/generator-check-*.json 2>/dev/null) \
  --arg cpu "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)" \
  --argjson cores "$(nproc)" --argjson conns "$connections" --argjson products "$products" \
  --argjson duration "$duration" \
  '{meta: {date: $date, commit: $commit, dirty_tree: $dirty, cpu: $cpu, cores: $cores,
           connections: $conns, products: $products, duration_s: $duration,
           load_average_start: $load_start, load_average_end: $load_end,
           command: "bench/compare.sh"}, generator_check: $checks, runs: .}' "${runs[@]}" >"$out/results.json"

# The table. Ratios: read scenarios against nginx's product-get, write scenarios (orders per
# second) against pgbench's checkout transactions per second at the same concurrency.
jq -r --arg pgb "pgbench-c$connections" --arg emp "$BENCH_URL" '
  def f(x; n): if x == null then "-" else (x * pow(10; n) | round / pow(10; n) | tostring) end;
  def find(l): (.runs[] | select(.label == l));
  (find("nginx-product-get").ok_per_second // null | if . == 0 then null else . end) as $nginx
  | (find($pgb).requests_per_second // null | if . == 0 then null else . end) as $pgbench
  | ["run", "conns", "ok req/s", "orders/s", "p50 ms", "p99 ms", "errors", "CPU s/1k srv",
     "CPU s/1k db", "peak RSS MiB", "vs nginx", "vs pgbench", "note"],
    (.runs[] |
      if .available == false then
        [.label, "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "not available: " + .unavailable_reason]
      elif .error != null then
        [.label, "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "FAILED: " + .error]
      else
        [.label, (.connections | tostring) + (if .mode == "open" then " @" + (.rate | tostring) + "/s" else "" end),
         f(.ok_per_second; 0), f(.orders.per_second; 1),
         f(.latency_ms.p50; 2), f(.latency_ms.p99; 2),
         ((.errors.total // 0) | tostring),
         f(.server.cpu_s_per_1k; 3), f(.db.cpu_s_per_1k; 3),
         f((.server.vm_hwm_kib // .server.pss_peak_kib // null) as $k | if $k == null then null else $k / 1024 end; 1),
         (if (.scenario | IN("product-get", "browse", "search", "get")) and .target == $emp and $nginx != null
          then f(.ok_per_second / $nginx; 2) else "" end),
         (if (.scenario | IN("checkout", "mix")) and $pgbench != null and .orders.per_second != null
          then f(.orders.per_second / $pgbench; 2) else "" end),
         (if .accounting.checked == true then
            (if .accounting.passed then "accounting passed (\(.accounting.acknowledged) orders)"
             else "ACCOUNTING FAILED: \(.accounting.failures[0] // "")" end)
          elif .mode == "open" and (.unfinished // 0) > 0 then "\(.unfinished) unanswered at end"
          else "" end)]
      end)
  | @tsv' "$out/results.json" | column -t -s $'\t' | tee "$out/table.txt"

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

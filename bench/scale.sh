#!/usr/bin/env bash
# bench/scale.sh: memory per active product actor, and passivation giving it back.
#
#   bench/scale.sh [--products N] [--idle-timeout S] [--connections N] [--out DIR] [--keep]
#                  [--malloc-trim-threshold BYTES] [--sigterm]
#
# Starts its own PostgreSQL, Redis and a Release build of Emporium (like compare.sh), seeds N
# products (default 1,000,000), starts the server with EMPORIUM_ACTORS_IDLE_TIMEOUT_S=S, then:
#   1. RSS before: the server warmed by a few requests (one actor active);
#   2. activates every product actor once: GET /products/{id} over all ids, in id order
#      (emporium-bench --scenario product-get --once);
#   3. RSS after, and the number of product actors alive (emporium_actors_active from /metrics,
#      when the server exports it; else N): memory per active actor = (after - before) / active;
#   4. waits past the idle timeout and samples again: passivation should bring both down;
#      or, with --sigterm, sends SIGTERM while every actor is still active and times the exit
#      (from the signal to the process gone; exit status and time in the output).
# Every 5 s it records RSS and the actor gauges in DIR/timeline.tsv, plotted to DIR/scale.png.
#
# The idle timeout must outlast the activation pass, or the first actors passivate before the
# last ones start and "active" never reaches N: the default (600 s) covers ~1.7k activations/s;
# the script reports how many were alive at once, whatever the timeout.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=stack.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack.sh"
cd "$EMPORIUM_ROOT"

products=1000000
idle=600
connections=64
trim=""
out=""
sigterm=0
while (($#)); do
  case "$1" in
    --products) products="$2"; shift 2 ;;
    --idle-timeout) idle="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --malloc-trim-threshold) trim="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --keep) bench_keep=1; shift ;;
    --sigterm) sigterm=1; shift ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    *) emporium_err "unknown argument '$1' (see --help)"; exit 2 ;;
  esac
done
[[ -n "$out" ]] || out="$EMPORIUM_ROOT/bench/results/scale-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
out="$(cd "$out" && pwd -P)"
started=$SECONDS

bench_init
bench_deps
bench_build
bench_start_services
# No order history (bench/history.sql): this measures product actors alone.
BENCH_HISTORY_ORDERS="${BENCH_HISTORY_ORDERS:-0}" bench_seed "$products"
server_env=(EMPORIUM_ACTORS_IDLE_TIMEOUT_S="$idle")
[[ -z "$trim" ]] || server_env+=(MALLOC_TRIM_THRESHOLD_="$trim")
bench_start_server "${server_env[@]}"
pid="$bench_server_pid"

# metric NAME: the product-kind sample of a gauge/counter on /metrics, or empty.
metric() {
  { curl -sf "$BENCH_URL/metrics" 2>/dev/null || true; } |
    awk -v m="$1" '$1 == m "{kind=\"product\"}" { printf "%d\n", $2 }' | head -n1
}

t0=$SECONDS
printf 't_s\tphase\trss_kib\tactive\tactivations\tpassivations\n' >"$out/timeline.tsv"
phase="idle"
sample() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$((SECONDS - t0))" "$phase" "$(bench_rss_kib "$pid")" \
    "$(metric emporium_actors_active)" "$(metric emporium_actor_activations_total)" \
    "$(metric emporium_actor_passivations_total)" >>"$out/timeline.tsv"
}
sampler() {
  while kill -0 "$pid" 2>/dev/null; do
    phase="$(cat "$bench_tmp/phase" 2>/dev/null || echo "?")"
    sample
    sleep 5
  done
}
echo before >"$bench_tmp/phase"
sampler &
sampler_pid=$!
bench_extra_pids+=("$sampler_pid")

# 1. before: the server has served a little (its pools, caches and code are warm).
one_id="$("$EMPORIUM_PG_BIN/psql" -X -qAt "$BENCH_PG_URL" -c "SELECT id FROM products ORDER BY id LIMIT 1")"
for _ in $(seq 1 200); do curl -s -o /dev/null "$BENCH_URL/products/$one_id" || true; done
sleep 2
rss_before="$(bench_rss_kib "$pid")"
active_before="$(metric emporium_actors_active)"
bench_log "before: RSS $((rss_before / 1024)) MiB, product actors active: ${active_before:-unknown}"

# 2. every product actor once.
echo activating >"$bench_tmp/phase"
pass_t0=$SECONDS
"$BENCH_BIN" --target "$BENCH_URL" --scenario product-get --once --duration 86400 \
  --connections "$connections" --pg-url "$BENCH_PG_URL" --ids-from-pg --server-pid "$pid" \
  --label activate-all --json "$out/activate-all.json"
pass_s=$((SECONDS - pass_t0))

# 3. after.
echo active >"$bench_tmp/phase"
sleep 2
rss_after="$(bench_rss_kib "$pid")"
active_after="$(metric emporium_actors_active)"
denominator="${active_after:-$products}"
((denominator > 0)) || denominator=1
per_actor=$(((rss_after - rss_before) * 1024 / denominator))
bench_log "after activating $products in ${pass_s} s: RSS $((rss_after / 1024)) MiB," \
  "product actors active: ${active_after:-unknown (no metric; assuming $products)}," \
  "$per_actor bytes per active actor"

sigterm_s=""
sigterm_status=""
if ((sigterm)); then
  # 4. SIGTERM with every actor active: from the signal until the process is gone (reaped).
  kill "$sampler_pid" 2>/dev/null || true
  wait "$sampler_pid" 2>/dev/null || true
  rss_idle="$rss_after"
  active_idle="$active_after"
  hwm="$(bench_rss_kib "$pid" VmHWM)"
  bench_log "SIGTERM with ${active_after:-unknown} product actors active"
  # Its output goes nowhere: a sleep left behind must not hold the caller's pipe open.
  (sleep 300 && kill -KILL "$pid" 2>/dev/null) >/dev/null 2>&1 &
  watchdog=$!
  term_t0="$(date +%s.%N)"
  kill -TERM "$pid"
  sigterm_status=0
  wait "$pid" || sigterm_status=$?
  term_t1="$(date +%s.%N)"
  kill "$watchdog" 2>/dev/null || true
  wait "$watchdog" 2>/dev/null || true
  bench_server_pid=""
  sigterm_s="$(echo "$term_t1 - $term_t0" | bc -l | awk '{ printf "%.2f", $1 }')"
  bench_log "exited ${sigterm_s} s after SIGTERM, status $sigterm_status" \
    "($(grep -c . "$bench_tmp/server.log" || true) log lines; last: $(tail -n1 "$bench_tmp/server.log" | cut -c1-160))"
else
  # 4. past the idle timeout (the manager sweeps every idle/4, at most 15 s).
  echo passivating >"$bench_tmp/phase"
  wait_s=$((idle + idle / 4 + 20))
  bench_log "waiting ${wait_s} s for passivation (idle timeout ${idle} s)"
  sleep "$wait_s"
  echo passivated >"$bench_tmp/phase"
  phase=passivated
  rss_idle="$(bench_rss_kib "$pid")"
  active_idle="$(metric emporium_actors_active)"
  hwm="$(bench_rss_kib "$pid" VmHWM)"
  bench_log "after passivation: RSS $((rss_idle / 1024)) MiB (peak $((hwm / 1024)) MiB)," \
    "product actors active: ${active_idle:-unknown}"
  sample
  kill "$sampler_pid" 2>/dev/null || true
  wait "$sampler_pid" 2>/dev/null || true
fi

jq -n --argjson products "$products" --argjson idle "$idle" --argjson pass_s "$pass_s" \
  --argjson rss_before "$rss_before" --argjson rss_after "$rss_after" \
  --argjson rss_idle "$rss_idle" --argjson hwm "$hwm" --argjson per_actor "$per_actor" \
  --arg active_before "${active_before:-}" --arg active_after "${active_after:-}" \
  --arg active_idle "${active_idle:-}" --arg trim "$trim" \
  --arg sigterm_s "$sigterm_s" --arg sigterm_status "$sigterm_status" \
  --slurpfile pass "$out/activate-all.json" \
  '{products: $products, idle_timeout_s: $idle, activation_pass_s: $pass_s,
    malloc_trim_threshold: (if $trim == "" then null else $trim end),
    rss_kib: {before: $rss_before, after_activation: $rss_after, after_passivation: $rss_idle, peak: $hwm},
    active: {before: $active_before, after_activation: $active_after, after_passivation: $active_idle},
    bytes_per_active_actor: $per_actor,
    sigterm: (if $sigterm_s == "" then null
              else {exit_s: ($sigterm_s | tonumber), status: ($sigterm_status | tonumber)} end),
    returned_fraction: (if $sigterm_s != "" then null elif $rss_after > $rss_before then (($rss_after - $rss_idle) / ($rss_after - $rss_before)) else null end),
    activation: $pass[0]}' >"$out/scale.json"

{
  echo "set terminal pngcairo size 1100,600 font ',10'"
  echo "set output '$out/scale.png'"
  echo "set title 'Emporium: RSS and active product actors ($products products, idle timeout ${idle} s)'"
  echo "set xlabel 'seconds'"
  echo "set ylabel 'RSS (MiB)'"
  echo "set y2label 'product actors active'"
  echo "set ytics nomirror"
  echo "set y2tics"
  echo "set grid"
  echo "set key top right"
  if awk -F'\t' 'NR > 1 && $4 != "" { found = 1 } END { exit !found }' "$out/timeline.tsv"; then
    echo "plot '$out/timeline.tsv' using 1:(\$3/1024) skip 1 with lines lw 2 title 'RSS (MiB)', '' using 1:4 skip 1 axes x1y2 with lines lw 2 title 'active actors'"
  else
    echo "plot '$out/timeline.tsv' using 1:(\$3/1024) skip 1 with lines lw 2 title 'RSS (MiB)'"
  fi
} >"$out/scale.gp"
gnuplot "$out/scale.gp" || bench_log "gnuplot failed"

jq -c "{products, idle_timeout_s, activation_pass_s, rss_kib, active, bytes_per_active_actor, returned_fraction, sigterm}" "$out/scale.json"
bench_log "results: $out/scale.json, $out/timeline.tsv, $out/scale.png ($((SECONDS - started)) s in all)"

#!/usr/bin/env bash
# bench/feeds.sh: the real-time feeds under load.
#
#   bench/feeds.sh [--subscribers 10000] [--products 1] [--changes 20] [--interval-ms 300]
#                  [--rate 30] [--duration 20] [--connections 8] [--send-queue-max 32]
#                  [--out DIR] [--keep]
#
# Starts its own PostgreSQL, Redis and a Release build of Emporium (like compare.sh), with the
# per-address and total connection limits raised for one generator address, seeds 1,000
# products, then:
#   1. fan-out: emporium-bench --scenario subscribe: --subscribers WebSocket subscribers of the
#      first --products products (all acknowledged first), --changes admin stock changes
#      --interval-ms apart; fan-out latency (PATCH sent -> event received) p50/p99/max over all
#      deliveries, deliveries missing, seq gaps, server RSS per subscriber;
#   2. a stalled subscriber costs writers nothing: the server restarted with feeds.send_queue_max
#      = --send-queue-max (so that the run's events overflow it), stock PATCHes of one product at
#      --rate per second (open loop) for --duration s without any subscriber, then the same with
#      one WebSocket subscriber of that product that never reads (tiny SO_RCVBUF); both p99s side
#      by side, whether the stalled one was closed with 1013, emporium_feed_dropped_total.
# Results: DIR/subscribe.json, writes-alone.json, writes-stalled.json, summary.txt.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=stack.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack.sh"
cd "$EMPORIUM_ROOT"

subscribers=10000
products=1
changes=20
interval=300
rate=30
duration=20
connections=8
queue=32
out=""
while (($#)); do
  case "$1" in
    --subscribers) subscribers="$2"; shift 2 ;;
    --products) products="$2"; shift 2 ;;
    --changes) changes="$2"; shift 2 ;;
    --interval-ms) interval="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --send-queue-max) queue="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --keep) bench_keep=1; shift ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) emporium_err "unknown argument '$1' (see --help)"; exit 2 ;;
  esac
done
[[ -n "$out" ]] || out="$EMPORIUM_ROOT/bench/results/feeds-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
out="$(cd "$out" && pwd -P)"
started=$SECONDS

# Both ends hold one descriptor per subscriber: the generator raises its soft limit to the hard
# one itself; the server is started with the hard limit as its soft one.
hard_files="$(ulimit -Hn)"
if [[ "$hard_files" != unlimited ]] && ((hard_files < subscribers + 200)); then
  emporium_err "the open-files hard limit ($hard_files) is below $subscribers subscribers + 200"
  exit 1
fi
ulimit -n "$hard_files"

bench_init
bench_deps
bench_build
bench_start_services
# No order history (bench/history.sql): the feeds' runs place no orders.
BENCH_HISTORY_ORDERS="${BENCH_HISTORY_ORDERS:-0}" bench_seed 1000
limit=$((subscribers + 1000))
limits=(EMPORIUM_HTTP_MAX_CONNECTIONS="$limit" EMPORIUM_HTTP_MAX_CONNECTIONS_PER_ADDRESS="$limit"
  EMPORIUM_FEEDS_MAX_CONNECTIONS_PER_ADDRESS="$limit")
bench_start_server "${limits[@]}"
pid="$bench_server_pid"
admin_key="$(bench_server_env | sed -n 's/^EMPORIUM_ADMIN_KEY=//p')"
export EMPORIUM_ADMIN_KEY="$admin_key"
rc=0

# 1. fan-out to every subscriber.
bench_log "fan-out: $subscribers subscribers of $products product(s), $changes changes ${interval} ms apart"
"$BENCH_BIN" --target "$BENCH_URL" --scenario subscribe --connections "$subscribers" \
  --products "$products" --changes "$changes" --interval-ms "$interval" --timeout 10 \
  --pg-url "$BENCH_PG_URL" --ids-from-pg --server-pid "$pid" --label subscribe \
  --json "$out/subscribe.json" 2>&1 | tee "$out/subscribe.log" >&2 || rc=1

# 2. a server whose per-connection send queue the stalled subscriber overflows within the run.
bench_stop_server
bench_start_server "${limits[@]}" EMPORIUM_FEEDS_SEND_QUEUE_MAX="$queue"
pid="$bench_server_pid"

# Writes alone, then beside a stalled subscriber: the same product, rate and duration.
for run in alone stalled; do
  extra=()
  [[ "$run" == alone ]] || extra=(--stalled-subscriber)
  bench_log "writes $run: PATCH stock at $rate/s for $duration s"
  "$BENCH_BIN" --target "$BENCH_URL" --scenario stock-patch --rate "$rate" \
    --connections "$connections" --duration "$duration" --warmup 1 \
    --pg-url "$BENCH_PG_URL" --ids-from-pg --ids-limit 1 --server-pid "$pid" \
    --label "writes-$run" --json "$out/writes-$run.json" "${extra[@]}" 2>&1 |
    tee "$out/writes-$run.log" >&2 || rc=1
done

{
  echo "Fan-out ($subscribers WebSocket subscribers, $products product(s), $changes changes ${interval} ms apart):"
  jq -r '"  subscribed \(.subscribed) of \(.subscribers) in \(.subscribe_seconds * 10 | round / 10) s; deliveries \(.deliveries.received) of \(.deliveries.expected), missing \(.deliveries.missing), seq gaps \(.deliveries.seq_gaps)",
         "  fan-out latency ms: p50 \(.fanout_latency_ms.p50)  p99 \(.fanout_latency_ms.p99)  max \(.fanout_latency_ms.max)",
         (if .server then "  server RSS \(.server.vm_rss_kib_before / 1024 | floor) MiB -> \(.server.vm_rss_kib_subscribed / 1024 | floor) MiB subscribed: \(.server.bytes_per_subscriber | round) bytes per subscriber" else empty end),
         "  passed: \(.passed)"' "$out/subscribe.json" 2>/dev/null || echo "  (no result: see subscribe.log)"
  echo
  echo "Writes (stock PATCH of one product, open loop $rate/s, $duration s, feeds.send_queue_max $queue):"
  printf '  %-28s %10s %10s %10s %10s %8s\n' run "ok req/s" "p50 ms" "p99 ms" "max ms" errors
  for run in alone stalled; do
    jq -r --arg run "$run" '"  \($run | if . == "alone" then "no subscriber" else "one stalled subscriber" end | .[0:28] | . + (" " * (28 - length)))  \(.ok_per_second | floor | tostring | (" " * (10 - length)) + .) \(.latency_ms.p50 | tostring | .[0:8] | (" " * (10 - length)) + .) \(.latency_ms.p99 | tostring | .[0:8] | (" " * (10 - length)) + .) \(.latency_ms.max | tostring | .[0:8] | (" " * (10 - length)) + .) \(.errors.total | tostring | (" " * (8 - length)) + .)"' \
      "$out/writes-$run.json" 2>/dev/null || echo "  $run: no result (see writes-$run.log)"
  done
  jq -r '.stalled_subscriber // empty | "  stalled subscriber: closed by the server: \(.closed_by_server), close code \(.close_code) (dropped with 1013: \(.dropped)); \(.events) events read afterwards; emporium_feed_dropped_total \(.dropped_total_before) -> \(.dropped_total_after)"' \
    "$out/writes-stalled.json" 2>/dev/null || true
} | tee "$out/summary.txt"
bench_log "results: $out ($((SECONDS - started)) s in all)"
exit "$rc"

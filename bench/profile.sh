#!/usr/bin/env bash
# bench/profile.sh: where the server's CPU goes per request, under a sampling profiler.
#
#   bench/profile.sh [--scenario product-get|get|browse|checkout|hot-sku] [--duration 10]
#                    [--connections 64] [--products 10000] [--frequency 999]
#                    [--profiler auto|perf|callgrind|none] [--requests 3000] [--top 25]
#                    [--out DIR] [--keep]
#   bench/profile.sh --report DIR    the report again from DIR's raw data (nothing is run)
#
# Starts its own PostgreSQL, Redis and a Release build of Emporium (as compare.sh does: stack.sh),
# seeds --products products, prepares the scenario (product reads: every product actor activated
# first; orders: the customers signed up and logged in by a short unprofiled run), then drives
# the scenario with emporium-bench while profiling the server process only:
#   perf (default when perf_event_open is allowed): `perf record -g --call-graph dwarf` at
#     --frequency Hz over the --duration window (after 2 s of warm-up);
#   callgrind (fallback, or --profiler callgrind): the server under valgrind, instrumentation
#     switched on for exactly --requests requests of the scenario (a fixed amount of work:
#     valgrind slows the server ~50x), then dumped;
#   none: no profiler, only the CPU per request (and per order) of the server and of PostgreSQL
#     with Redis (their processes sampled at the window's edges): for A/B runs of two builds
#     (EMPORIUM_BUILD_DIR), undisturbed by a profiler.
# Prints, and writes to DIR/profile.txt: CPU per request (from the same run), the top
# functions by self and by inclusive cost with microseconds per request each, the self cost
# grouped by area (kernel, allocator, Beast/Asio, CAF, JSON, libpq, ...) and by thread.
# Raw data stays in DIR (perf.data or callgrind.out, bench.json) for `perf report -i`,
# callgrind_annotate, or --report.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=stack.sh
source "$(dirname "${BASH_SOURCE[0]}")/stack.sh"
cd "$EMPORIUM_ROOT"

scenario=product-get
duration=10
connections=64
products=10000
frequency=999
profiler=auto
requests=3000
top=25
out=""
report_only=""
while (($#)); do
  case "$1" in
    --scenario) scenario="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --products) products="$2"; shift 2 ;;
    --frequency) frequency="$2"; shift 2 ;;
    --profiler) profiler="$2"; shift 2 ;;
    --requests) requests="$2"; shift 2 ;;
    --top) top="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --keep) bench_keep=1; shift ;;
    --report) report_only="$2"; shift 2 ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) emporium_err "unknown argument '$1' (see --help)"; exit 2 ;;
  esac
done
case "$scenario" in
  product-get | get | browse | checkout | hot-sku) ;;
  *) emporium_err "--scenario: product-get, get, browse, checkout or hot-sku"; exit 2 ;;
esac
case "$profiler" in
  auto | perf | callgrind | none) ;;
  *) emporium_err "--profiler: auto, perf, callgrind or none"; exit 2 ;;
esac
started=$SECONDS
if [[ -n "$report_only" ]]; then
  out="$(cd "$report_only" && pwd -P)"
  profiler=none
  [[ -f "$out/perf.data" ]] && profiler=perf
  compgen -G "$out/callgrind.out*" >/dev/null && profiler=callgrind
  scenario="$(jq -r '.scenario // "?"' "$out/bench.json" 2>/dev/null || echo '?')"
  connections="$(jq -r '.connections // "?"' "$out/bench.json" 2>/dev/null || echo '?')"
else
  [[ -n "$out" ]] || out="$EMPORIUM_ROOT/bench/results/profile-$scenario-$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir -p "$out"
  out="$(cd "$out" && pwd -P)"

  bench_init
  EMPORIUM_DEPS+=(linux-perf valgrind)
  bench_deps
  bench_build

  # perf_event_open may be refused (containers, perf_event_paranoid): then callgrind.
  if [[ "$profiler" == auto ]]; then
    if perf record -q -g -o "$bench_tmp/probe.data" -- true >/dev/null 2>&1; then
      profiler=perf
    else
      profiler=callgrind
      bench_log "perf record is refused here (perf_event_open); profiling with callgrind instead"
    fi
  fi
  bench_log "profiler: $profiler"

  bench_start_services
  bench_seed "$products"
  if [[ "$profiler" == callgrind ]]; then
    # Instrumentation off until the measured requests start (callgrind_control -i on).
    bench_server_wrapper=(valgrind --tool=callgrind --instr-atstart=no --dump-instr=no
                          --callgrind-out-file="$out/callgrind.out" --log-file="$out/valgrind.log")
    BENCH_SERVER_START_S=300
  fi
  bench_start_server
  bench_server_wrapper=()

  admin_key="$(bench_server_env | sed -n 's/^EMPORIUM_ADMIN_KEY=//p')"
  one_id="$("$EMPORIUM_PG_BIN/psql" -X -qAt "$BENCH_PG_URL" -c "SELECT id FROM products ORDER BY id LIMIT 1")"
  args=(--target "$BENCH_URL" --scenario "$scenario" --connections "$connections")
  case "$scenario" in
    get) args+=(--path "/products/$one_id") ;;
    product-get | browse) args+=(--pg-url "$BENCH_PG_URL" --ids-from-pg) ;;
    checkout) args+=(--pg-url "$BENCH_PG_URL" --ids-from-pg --customers-file "$bench_tmp/customers.jsonl") ;;
    hot-sku) args+=(--pg-url "$BENCH_PG_URL" --admin-key "$admin_key" --hot-stock 1000000000
                    --customers-file "$bench_tmp/customers.jsonl") ;;
  esac

  # Preparation, not profiled: actors warm for reads; accounts signed up for orders (password
  # hashing is deliberately slow and would swamp the profile).
  prep_timeout=600
  [[ "$profiler" == callgrind ]] && prep_timeout=3600
  case "$scenario" in
    get | product-get | browse)
      bench_log "activating every product actor (not profiled)"
      "$BENCH_BIN" --target "$BENCH_URL" --scenario product-get --once --duration "$prep_timeout" \
        --connections "$connections" --pg-url "$BENCH_PG_URL" --ids-from-pg --timeout 60 \
        >"$out/prepare.log" 2>&1 || { cat "$out/prepare.log" >&2; exit 1; }
      ;;
    checkout | hot-sku)
      bench_log "signing up and logging in the customers (not profiled)"
      "$BENCH_BIN" "${args[@]}" --duration 1 --timeout 120 --no-verify \
        >"$out/prepare.log" 2>&1 || { cat "$out/prepare.log" >&2; exit 1; }
      ;;
  esac

  if [[ "$profiler" == none ]]; then
    rc=0
    "$BENCH_BIN" "${args[@]}" --warmup 2 --duration "$duration" --server-pid "$bench_server_pid" \
      --db-pid "$BENCH_PG_PID" --db-pid "$BENCH_REDIS_PID" --json "$out/bench.json" \
      >"$out/bench.log" 2>&1 || rc=$?
    cat "$out/bench.log" >&2
    ((rc == 0)) || bench_log "emporium-bench exited with $rc"
  elif [[ "$profiler" == perf ]]; then
    "$BENCH_BIN" "${args[@]}" --warmup 2 --duration "$duration" --server-pid "$bench_server_pid" \
      --json "$out/bench.json" >"$out/bench.log" 2>&1 &
    bench_pid=$!
    bench_extra_pids+=("$bench_pid")
    sleep 2.5 # the generator's catalog load, set-up and warm-up
    bench_log "perf record -F $frequency --call-graph dwarf on pid $bench_server_pid for $duration s"
    perf record -q -F "$frequency" --call-graph dwarf,16384 -p "$bench_server_pid" \
      -o "$out/perf.data" -- sleep "$duration" 2>"$out/perf-record.log" || true
    rc=0
    wait "$bench_pid" || rc=$?
    cat "$out/bench.log" >&2
    ((rc == 0)) || bench_log "emporium-bench exited with $rc (the profile is still shown)"
  else
    bench_log "callgrind: instrumentation on for $requests requests"
    callgrind_control -i on "$bench_server_pid" >/dev/null
    rc=0
    "$BENCH_BIN" "${args[@]}" --requests "$requests" --duration 3600 --timeout 600 \
      --server-pid "$bench_server_pid" --json "$out/bench.json" >"$out/bench.log" 2>&1 || rc=$?
    callgrind_control -i off "$bench_server_pid" >/dev/null || true
    callgrind_control -d "$bench_server_pid" >/dev/null || true
    cat "$out/bench.log" >&2
    ((rc == 0)) || bench_log "emporium-bench exited with $rc (the profile is still shown)"
  fi
  cut -d' ' -f1-3 /proc/loadavg >"$out/loadavg" # while the profiled run was ending
  bench_stop_server
fi

# -- the report ----------------------------------------------------------------------------------
answered="$(jq -r '.requests // 0' "$out/bench.json" 2>/dev/null || echo 0)"
us_per_req="$(jq -r 'if (.requests // 0) > 0 then .server.cpu_s / .requests * 1e6 else 0 end' "$out/bench.json" 2>/dev/null || echo 0)"

# area NAME: a coarse owner of a symbol (and its DSO) for the grouped view.
area_awk='
function area(sym, dso) {
  if (dso ~ /kernel/ || sym ~ /^\[k\]/) {
    # In a VM, samples taken while interrupts were off land on the irq-enable that ends the
    # section (pvm_irq_enable, native_irq_enable...): mostly context switches and wake-ups.
    if (sym ~ /irq|sched|switch|futex|wake|pick_next|enqueue|dequeue|idle|hrtimer/) return "kernel: thread hand-offs (scheduling, futex, wake-ups, irq-off)"
    if (sym ~ /tcp|skb|ip_|inet|sock|loopback|netif|net_rx|__dev|sendmsg|recvmsg|nf_|copy_from_iter|copy_to_iter/) return "kernel: TCP on loopback"
    if (sym ~ /epoll|poll|select/) return "kernel: epoll"
    return "kernel: syscall entry and other"
  }
  if (sym ~ /malloc|free|_int_|tcache|arena|operator new|operator delete|cfree|realloc|calloc|memalign/) return "allocator (malloc/free)"
  if (sym ~ /pthread_mutex|pthread_cond|__lll|futex/) return "locks (pthread mutexes, condition variables)"
  if (sym ~ /clock_nanosleep|nanosleep|recvmsg|sendmsg|writev|readv|epoll_wait|__libc_(recv|send|read|write)|syscall/) return "libc: system call wrappers (send, recv, sleep)"
  if (sym ~ /nlohmann/) return "JSON (nlohmann)"
  if (sym ~ /caf::/) return "CAF runtime"
  if (sym ~ /boost::beast/) return "Beast (HTTP)"
  if (sym ~ /boost::asio/) return "Asio"
  if (sym ~ /pqxx|PQ|pq_|libpq/ || dso ~ /libpq/) return "libpqxx/libpq"
  if (sym ~ /redis/ || dso ~ /hiredis/) return "hiredis"
  if (sym ~ /spdlog|fmt::/) return "logging (spdlog/fmt)"
  if (sym ~ /sodium|crypto_/ || dso ~ /sodium/) return "libsodium"
  if (sym ~ /emporium::/) return "emporium code"
  if (sym ~ /mem(cpy|move|set|cmp)|str(len|cmp|chr)|__strftime|strftime|tz/ || dso ~ /libc|libpthread/) return "libc (memcpy, strftime, ...)"
  if (sym ~ /std::/) return "C++ standard library"
  return "other"
}'

{
  echo "Profile of emporium serve: scenario $scenario, $connections connections, $profiler"
  echo "  $(jq -r '"\(.requests) answered, \(.ok_per_second | round) ok/s, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms, errors \(.errors.total)"' "$out/bench.json" 2>/dev/null || echo "no result from emporium-bench")"
  if [[ "$profiler" != callgrind ]]; then
    printf '  server CPU per request: %.1f us (%s CPU-s over %s answers in the window)\n' \
      "$us_per_req" "$(jq -r '.server.cpu_s * 1000 | round / 1000' "$out/bench.json" 2>/dev/null || echo '?')" "$answered"
  fi
  # Orders: one order is several requests (cart, line, checkout, pay).
  jq -r 'select(.orders.acknowledged_in_window // 0 > 0) | "  server CPU per order acknowledged: \(.server.cpu_s / .orders.acknowledged_in_window * 1e6 | round) us (\(.orders.acknowledged_in_window) orders, \(.orders.per_second * 10 | round / 10)/s; the us per request below x \(.requests / .orders.acknowledged_in_window * 10 | round / 10) requests per order)"' \
    "$out/bench.json" 2>/dev/null || true
  jq -r 'select((.db.cpu_s // 0) > 0) | "  PostgreSQL and Redis CPU per request: \(.db.cpu_s / .requests * 1e6 * 10 | round / 10) us\(if (.orders.acknowledged_in_window // 0) > 0 then ", per order: \(.db.cpu_s / .orders.acknowledged_in_window * 1e6 | round) us" else "" end)"' \
    "$out/bench.json" 2>/dev/null || true
  # Where the machine's cores went per order: the server, the database, this generator; against
  # what the cores allow at the run's rate (the rest: other processes, idle).
  jq -r --argjson cores "$(nproc)" 'select((.orders.acknowledged_in_window // 0) > 0 and (.generator.cpu_s // null) != null and (.db.cpu_s // null) != null)
    | .orders.acknowledged_in_window as $n
    | ([.server.cpu_s, .db.cpu_s, .generator.cpu_s] | map(. / $n * 1e6 | round)) as [$s, $d, $g]
    | "  CPU per order: server \($s) + PostgreSQL and Redis \($d) + load generator \($g) = \($s + $d + $g) us, of the \($cores / .orders.per_second * 1e6 | round) us per order that \($cores) cores allow at this rate"' \
    "$out/bench.json" 2>/dev/null || true
  # What the database wrote per order in the window (db_work.hpp): commits, rows, by table.
  jq -r 'def r(x): x * 100 | round / 100;
    select((.db.writes.commits_per_order // null) != null) | .db.writes as $w
    | "  PostgreSQL per order: \(r($w.commits_per_order)) commits, \(r($w.inserted_per_order)) rows inserted, \(r($w.updated_per_order)) updated (\(if $w.updated > 0 then $w.hot_updated * 100 / $w.updated | round else 0 end) % of updates HOT)",
      "    by table, inserted/updated per order: \([$w.tables | to_entries[] | select(.value.inserted_per_order + .value.updated_per_order >= 0.05) | "\(.key) \(r(.value.inserted_per_order))/\(r(.value.updated_per_order))"] | join(", "))"' \
    "$out/bench.json" 2>/dev/null || true
  echo "  load average at the end of the run: $(cat "$out/loadavg" 2>/dev/null || echo '?') on $(nproc) cores"
  echo
} | tee "$out/profile.txt"

if [[ "$profiler" == perf ]]; then
  # perf's --stdio columns: [children] self command shared-object symbol; symbols demangled by
  # c++filt afterwards (perf's own demangler is slow on long CAF/Beast names).
  perf report -i "$out/perf.data" --stdio --no-demangle --no-children -g none --sort dso,sym --percent-limit 0 \
    --field-separator $'\t' 2>/dev/null | grep -v '^#' | grep -v '^$' | c++filt >"$out/self.tsv" || true
  perf report -i "$out/perf.data" --stdio --no-demangle --children -g none --sort sym --percent-limit 0.5 \
    --field-separator $'\t' 2>/dev/null | grep -v '^#' | grep -v '^$' | c++filt >"$out/inclusive.tsv" || true
  perf report -i "$out/perf.data" --stdio --no-children -g none --sort comm --percent-limit 0 \
    --field-separator $'\t' 2>/dev/null | grep -v '^#' | grep -v '^$' >"$out/threads.tsv" || true
  {
    echo "Top $top by SELF cost (the function's own instructions), share of server CPU and us per request:"
    awk -F'\t' -v u="$us_per_req" -v n="$top" '{ p = $1; sub(/%/, "", p); sym = $3; sub(/^\[[.k]\] /, "", sym);
      if (NR <= n) printf "  %6.2f %%  %7.2f us  %-22.22s %s\n", p, p / 100 * u, $2, substr(sym, 1, 150) }' "$out/self.tsv"
    echo
    echo "Top $top by INCLUSIVE cost (the function and everything it called; nested entries overlap):"
    # Without the roots every sample passes through (thread start, main, syscall entry).
    awk -F'\t' -v u="$us_per_req" -v n="$top" '{ p = $1; sub(/%/, "", p); sym = $3; sub(/^\[[.k]\] /, "", sym);
      if (sym ~ /^(_start|main|__libc_start|clone3?$|start_thread|0x[0-9a-f]+$|entry_SYSCALL|do_syscall_64|std::thread::_State_impl|execute_native_thread_routine)/) next;
      if (++c <= n) printf "  %6.2f %%  %7.2f us  %s\n", p, p / 100 * u, substr(sym, 1, 160) }' "$out/inclusive.tsv"
    echo
    echo "Self cost grouped by area:"
    awk -F'\t' -v u="$us_per_req" "$area_awk"'
      { p = $1; sub(/%/, "", p); s[area($3, $2)] += p }
      END { for (a in s) printf "%.2f\t%s\n", s[a], a }' "$out/self.tsv" | sort -t$'\t' -k1,1 -gr \
      | awk -F'\t' -v u="$us_per_req" '{ printf "  %6.2f %%  %7.2f us  %s\n", $1, $1 / 100 * u, $2 }'
    echo
    echo "Self cost by thread name (the Asio thread is the process's own name; CAF names its threads):"
    awk -F'\t' 'NR <= 12 { printf "  %8s  %s\n", $1, $2 }' "$out/threads.tsv"
  } | tee -a "$out/profile.txt"
elif [[ "$profiler" == callgrind ]]; then
  # The dump taken right after the measured requests (callgrind.out.N); the file written at exit
  # holds only what ran after it.
  # shellcheck disable=SC2012 # our own file names
  cg_file="$(ls -t "$out"/callgrind.out.* 2>/dev/null | head -n1 || true)"
  [[ -n "$cg_file" ]] || cg_file="$out/callgrind.out"
  # callgrind_annotate lines: "1,234 (12.34%)  file:function [dso]"
  # shellcheck disable=SC2016 # awk's fields
  cg_awk='match($0, /^ *[0-9,]+ +\( *[0-9.]+%\) +/) && $0 !~ /PROGRAM TOTALS/ {
      head = substr($0, 1, RLENGTH); fn = substr($0, RLENGTH + 1)
      ir = head; sub(/\(.*/, "", ir); gsub(/[ ,]/, "", ir)
      pct = head; sub(/.*\( */, "", pct); sub(/%.*/, "", pct)
      sub(/^[^:]*:/, "", fn)
      if (roots && fn ~ /^(_start|main|__libc_start|clone3?|start_thread|0x[0-9a-f]+|std::thread::_State_impl|execute_native_thread_routine|\(below main\))( |$)/) next
      if (++c <= n) printf "  %6.2f %%  %10.0f Ir/req  %s\n", pct, (r ? ir / r : 0), substr(fn, 1, 170) }'
  {
    total_ir="$(callgrind_annotate "$cg_file" 2>/dev/null | awk '/PROGRAM TOTALS/ { v = $1; gsub(",", "", v); print v }' || true)"
    printf '  %s instructions (Ir) in %s requests: %.0f per request (%s)\n\n' "${total_ir:-0}" "$answered" \
      "$(echo "${total_ir:-0} / ($answered + ($answered == 0))" | bc -l)" "$(basename "$cg_file")"
    echo "Top $top by SELF cost (instructions executed in the function itself, per request):"
    callgrind_annotate --threshold=99 "$cg_file" 2>/dev/null | awk -v n="$top" -v r="$answered" -v roots=0 "$cg_awk" || true
    echo
    echo "Top $top by INCLUSIVE cost (the function and all it called; nested entries overlap):"
    callgrind_annotate --inclusive=yes --threshold=99 "$cg_file" 2>/dev/null | awk -v n="$top" -v r="$answered" -v roots=1 "$cg_awk" || true
    echo
    echo "Self cost grouped by area:"
    callgrind_annotate --threshold=100 "$cg_file" 2>/dev/null | awk -v r="$answered" "$area_awk"'
      match($0, /^ *[0-9,]+ +\( *[0-9.]+%\) +/) && $0 !~ /PROGRAM TOTALS/ {
        head = substr($0, 1, RLENGTH); fn = substr($0, RLENGTH + 1)
        pct = head; sub(/.*\( */, "", pct); sub(/%.*/, "", pct)
        dso = fn; if (!sub(/.*\[/, "", dso)) dso = ""
        sub(/^[^:]*:/, "", fn)
        s[area(fn, dso)] += pct }
      END { for (a in s) printf "  %6.2f %%  %s\n", s[a], a }' | sort -k1,1 -gr || true
  } | tee -a "$out/profile.txt"
fi
bench_log "profile: $out/profile.txt (raw data beside it); $((SECONDS - started)) s in all"

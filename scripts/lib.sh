# shellcheck shell=bash
# Shared helpers for Emporium's scripts. Source it; do not execute it.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Every function is safe under `set -euo pipefail` and also when called as an `if` condition
# (where bash ignores errexit): failures are checked explicitly and reported with `return 1`.
#
# Functions:
#   emporium_ensure_deps                       install missing Debian packages (EMPORIUM_DEPS)
#   emporium_build DIR BUILD_TYPE [cmake args] configure (if needed) and build
#   emporium_free_port                         print a free TCP port on 127.0.0.1 (20000-60999)
#   emporium_pg_start DATADIR PORT [opts]      start a private PostgreSQL 15 cluster
#   emporium_pg_stop DATADIR                   fast shutdown of that cluster
#   emporium_pg_running DATADIR                true if that cluster's postmaster is alive
#   emporium_redis_start DIR PORT              start a private redis-server
#   emporium_redis_stop DIR                    stop it
#   emporium_redis_running DIR                 true if it is alive
#   emporium_npm_install DIR PKG@VERSION...    install npm packages into DIR/node_modules

if [[ -n "${EMPORIUM_LIB_SOURCED:-}" ]]; then
  return 0
fi
EMPORIUM_LIB_SOURCED=1

EMPORIUM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
EMPORIUM_PG_BIN="${EMPORIUM_PG_BIN:-/usr/lib/postgresql/15/bin}"

# Debian 12 packages the scripts need. Other scripts append to this array before calling
# emporium_ensure_deps, e.g.  EMPORIUM_DEPS+=(wrk gnuplot)
# (postgresql-contrib-15 is a virtual package provided by postgresql-15; that is handled.)
EMPORIUM_DEPS=(
  build-essential cmake pkg-config ccache git ca-certificates
  libcaf-dev libboost1.74-dev libpqxx-dev libpq-dev libhiredis-dev nlohmann-json3-dev catch2
  libsodium-dev libxxhash-dev libspdlog-dev libfmt-dev libtomlplusplus-dev libcli11-dev libssl-dev
  libjemalloc-dev
  postgresql-15 postgresql-contrib-15 redis-server
  curl procps iproute2
  prometheus nodejs npm
  clang-format
)

# ---------------------------------------------------------------------------------------------
# messages

emporium_log() { printf '[emporium] %s\n' "$*" >&2; }
emporium_err() { printf '[emporium] ERROR: %s\n' "$*" >&2; }

# emporium_log_tail FILE [LINES]: print the end of a log file to stderr (for failure reports).
emporium_log_tail() {
  local file="$1" lines="${2:-40}"
  if [[ -r "$file" ]]; then
    printf '[emporium] ---- last %s lines of %s ----\n' "$lines" "$file" >&2
    tail -n "$lines" "$file" >&2 || true
    printf '[emporium] ---- end of %s ----\n' "$file" >&2
  else
    printf '[emporium] (no log at %s)\n' "$file" >&2
  fi
}

# ---------------------------------------------------------------------------------------------
# dependencies

# _emporium_pkg_installed PKG: true if PKG is installed, or is a virtual package that an
# installed package provides (postgresql-contrib-15 is provided by postgresql-15).
_emporium_pkg_installed() {
  local pkg="$1" status
  status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
  [[ "$status" == "installed" ]] && return 0
  # Virtual package? Look at the Provides of installed packages.
  dpkg-query -W -f='${db:Status-Status}\t${Provides}\n' 2>/dev/null |
    awk -F'\t' -v p="$pkg" '
      $1 == "installed" {
        n = split($2, a, /, */)
        for (i = 1; i <= n; i++) { sub(/ .*/, "", a[i]); if (a[i] == p) { found = 1 } }
      }
      END { exit(found ? 0 : 1) }'
}

# emporium_ensure_deps: install whatever in EMPORIUM_DEPS is missing. Prints nothing and touches
# nothing when everything is installed. `apt-get update` runs at most once per shell.
emporium_ensure_deps() {
  local missing=() pkg
  for pkg in "${EMPORIUM_DEPS[@]}"; do
    if ! _emporium_pkg_installed "$pkg"; then
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]} == 0)); then
    return 0
  fi

  emporium_log "installing missing packages: ${missing[*]}"
  local -a sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
      # No terminal (CI): never wait for a password prompt.
      [[ -t 0 ]] || sudo=(sudo -n)
    else
      emporium_err "missing packages (${missing[*]}) and not running as root, and sudo is not" \
        "installed. Install them as root: apt-get install -y --no-install-recommends ${missing[*]}"
      return 1
    fi
  fi

  # Installing postgresql-15/redis-server would start system-wide instances on 5432/6379. We never
  # use them (our instances have their own ports and data), so keep them from starting at all with
  # a temporary policy-rc.d, unless one exists already (Docker images ship one) or the caller
  # asks for the services (EMPORIUM_ALLOW_SERVICE_START=1).
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [[ "${EMPORIUM_ALLOW_SERVICE_START:-0}" != 1 && ! -e "$policy" ]]; then
    if printf '#!/bin/sh\n# temporary, written by emporium scripts/lib.sh\nexit 101\n' |
      "${sudo[@]}" tee "$policy" >/dev/null && "${sudo[@]}" chmod 755 "$policy"; then
      own_policy=1
    fi
  fi

  local rc=0
  if [[ -z "${EMPORIUM_APT_UPDATED:-}" ]]; then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q || rc=$?
    if ((rc == 0)); then
      EMPORIUM_APT_UPDATED=1
    else
      emporium_err "apt-get update failed (exit $rc)"
    fi
  fi
  if ((rc == 0)); then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "${missing[@]}" || {
      rc=$?
      emporium_err "apt-get install failed (exit $rc) for: ${missing[*]}"
    }
  fi
  if ((own_policy)); then
    "${sudo[@]}" rm -f "$policy" || true
  fi
  return "$rc"
}

# ---------------------------------------------------------------------------------------------
# the admin key

# emporium_admin_key FILE: the admin key, from EMPORIUM_ADMIN_KEY when set, else from FILE
# (32 random bytes in hex, generated once, mode 600), exported as EMPORIUM_ADMIN_KEY. Sets
# EMPORIUM_ADMIN_KEY_EXPR to shell text that yields the key, for the commands the scripts print
# (the key itself is never printed).
emporium_admin_key() {
  local key_file="$1"
  if [[ -n "${EMPORIUM_ADMIN_KEY:-}" ]]; then
    export EMPORIUM_ADMIN_KEY
    # shellcheck disable=SC2034 # read by the scripts that source this file
    EMPORIUM_ADMIN_KEY_EXPR="\$EMPORIUM_ADMIN_KEY"
    return 0
  fi
  if [[ ! -s "$key_file" ]]; then
    (
      umask 077
      od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$key_file.tmp"
      mv -f "$key_file.tmp" "$key_file"
    )
    emporium_log "generated an admin key in $key_file"
  fi
  chmod 600 "$key_file"
  EMPORIUM_ADMIN_KEY="$(<"$key_file")"
  export EMPORIUM_ADMIN_KEY
  # shellcheck disable=SC2034 # read by the scripts that source this file
  EMPORIUM_ADMIN_KEY_EXPR="\$(cat $key_file)"
}

# ---------------------------------------------------------------------------------------------
# build

# emporium_build DIR BUILD_TYPE [extra cmake args...]
# DIR may be relative to the repository root. Jobs: EMPORIUM_JOBS (default 2). Targets:
# EMPORIUM_BUILD_TARGETS (space-separated; default all), for running a few suites by hand.
# ccache: CCACHE_DIR defaults to <repo>/.local/ccache.
emporium_build() {
  if (($# < 2)); then
    emporium_err "usage: emporium_build DIR BUILD_TYPE [cmake args...]"
    return 1
  fi
  local dir="$1" type="$2"
  shift 2
  [[ "$dir" == /* ]] || dir="$EMPORIUM_ROOT/$dir"

  export CCACHE_DIR="${CCACHE_DIR:-$EMPORIUM_ROOT/.local/ccache}"
  export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$EMPORIUM_ROOT}"
  mkdir -p "$CCACHE_DIR" || return 1

  # Reconfigure when there is no cache yet, the build type changed, or extra arguments are given
  # (cmake itself re-runs on CMakeLists.txt changes during the build).
  local cached_type=""
  if [[ -f "$dir/CMakeCache.txt" ]]; then
    cached_type="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$dir/CMakeCache.txt")"
  fi
  if [[ ! -f "$dir/CMakeCache.txt" || "$cached_type" != "$type" || $# -gt 0 ]]; then
    emporium_log "configuring $dir ($type)"
    cmake -S "$EMPORIUM_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE="$type" "$@" || {
      emporium_err "cmake configure failed for $dir"
      return 1
    }
  fi
  emporium_log "building $dir with ${EMPORIUM_JOBS:-2} jobs"
  local -a targets=()
  # shellcheck disable=SC2206 # word splitting of the target list is intended
  [[ -z "${EMPORIUM_BUILD_TARGETS:-}" ]] || targets=(--target ${EMPORIUM_BUILD_TARGETS})
  cmake --build "$dir" -j "${EMPORIUM_JOBS:-2}" "${targets[@]}" || {
    emporium_err "build failed in $dir"
    return 1
  }
}

# ---------------------------------------------------------------------------------------------
# ports

# _emporium_port_in_use PORT: true if something listens on 127.0.0.1:PORT (or on all addresses).
_emporium_port_in_use() {
  local port="$1"
  if command -v ss >/dev/null 2>&1; then
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
      return 0
    fi
  fi
  # A connect test catches what ss may not show (other network namespaces are irrelevant here).
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    return 0
  fi
  return 1
}

# emporium_free_port: print a random port in 20000-60999 that nothing listens on. Two callers can
# still race for the same port; callers retry a failed start with a new port.
emporium_free_port() {
  local i port
  for ((i = 0; i < 200; i++)); do
    port=$(((((RANDOM << 15) | RANDOM) % 41000) + 20000))
    if ! _emporium_port_in_use "$port"; then
      printf '%s\n' "$port"
      return 0
    fi
  done
  emporium_err "could not find a free TCP port in 20000-60999"
  return 1
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

# The OS user that owns and runs our clusters: `postgres` when we are root (PostgreSQL refuses to
# run as root), the current user otherwise.
_emporium_pg_os_user() {
  if [[ "$(id -u)" == 0 ]]; then
    printf 'postgres\n'
  else
    id -un
  fi
}

# _emporium_pg_as CMD...: run CMD as the cluster's OS user, from a directory it can read.
_emporium_pg_as() {
  if [[ "$(id -u)" == 0 ]]; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

_emporium_pg_ensure_os_user() {
  [[ "$(id -u)" == 0 ]] || return 0
  getent passwd postgres >/dev/null 2>&1 && return 0
  emporium_log "creating system user postgres"
  useradd --system --user-group --no-create-home --home-dir /var/lib/postgresql \
    --shell /usr/sbin/nologin --comment "PostgreSQL administrator" postgres || {
    emporium_err "could not create the postgres system user"
    return 1
  }
}

# emporium_pg_running DATADIR: true if a postmaster is alive for DATADIR.
emporium_pg_running() {
  local datadir="$1" pid
  [[ -f "$datadir/postmaster.pid" ]] || return 1
  pid="$(head -n1 "$datadir/postmaster.pid" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null
}

# _emporium_psql PORT DB [psql args...]: psql over TCP as superuser postgres, stops on errors.
_emporium_psql() {
  local port="$1" db="$2"
  shift 2
  PGCONNECT_TIMEOUT=10 PGOPTIONS='' PGPASSWORD='' "$EMPORIUM_PG_BIN/psql" -X -q \
    -h 127.0.0.1 -p "$port" -U postgres -d "$db" -v ON_ERROR_STOP=1 "$@"
}

# emporium_pg_ensure_db PORT DBNAME [--superuser]
# Create role `emporium` (LOGIN; SUPERUSER only with --superuser, meant for throwaway test
# clusters), database DBNAME owned by it, and pg_trgm in it. Idempotent.
emporium_pg_ensure_db() {
  local port="$1" db="$2" superuser="${3:-}"
  if [[ ! "$db" =~ ^[a-z_][a-z0-9_]*$ ]]; then
    emporium_err "invalid database name '$db' (use [a-z_][a-z0-9_]*)"
    return 1
  fi
  local attrs="LOGIN NOSUPERUSER"
  if [[ "$superuser" == --superuser ]]; then
    attrs="LOGIN SUPERUSER"
  fi
  _emporium_pg_psql_stdin "$port" postgres <<SQL || return 1
SELECT 'CREATE ROLE emporium $attrs'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'emporium') \gexec
ALTER ROLE emporium $attrs;
SELECT format('CREATE DATABASE %I OWNER emporium ENCODING ''UTF8'' TEMPLATE template0', '$db')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$db') \gexec
SQL
  _emporium_pg_psql_stdin "$port" "$db" <<SQL || return 1
CREATE EXTENSION IF NOT EXISTS pg_trgm;
SQL
}

_emporium_pg_psql_stdin() {
  local port="$1" db="$2" out rc=0
  out="$(_emporium_psql "$port" "$db" 2>&1)" || rc=$?
  if ((rc != 0)); then
    emporium_err "psql on 127.0.0.1:$port/$db failed (exit $rc): $out"
    return 1
  fi
}

# emporium_pg_start DATADIR PORT [--db NAME]... [--superuser] [-c name=value]...
# Start a private PostgreSQL 15 cluster in DATADIR (initdb on first use) listening on
# 127.0.0.1:PORT with its Unix socket in DATADIR, then ensure role emporium and the databases
# (default: emporium). More server options: `-c name=value` arguments and the words of
# EMPORIUM_PG_EXTRA_OPTS (e.g. "-c fsync=off"). Idempotent: a cluster already running in DATADIR
# on PORT is left alone (only role/databases are ensured).
emporium_pg_start() {
  if (($# < 2)); then
    emporium_err "usage: emporium_pg_start DATADIR PORT [--db NAME]... [--superuser] [-c k=v]..."
    return 1
  fi
  local datadir="$1" port="$2"
  shift 2
  local -a dbs=() extra=()
  local superuser=""
  while (($#)); do
    case "$1" in
      --db | -c)
        if (($# < 2)); then
          emporium_err "emporium_pg_start: $1 needs a value"
          return 1
        fi
        if [[ "$1" == --db ]]; then dbs+=("$2"); else extra+=(-c "$2"); fi
        shift 2
        ;;
      --superuser) superuser=--superuser; shift ;;
      *) emporium_err "emporium_pg_start: unknown argument '$1'"; return 1 ;;
    esac
  done
  ((${#dbs[@]})) || dbs=(emporium)
  local db
  for db in "${dbs[@]}"; do
    if [[ ! "$db" =~ ^[a-z_][a-z0-9_]*$ ]]; then
      emporium_err "invalid database name '$db' (use [a-z_][a-z0-9_]*)"
      return 1
    fi
  done
  if [[ -n "${EMPORIUM_PG_EXTRA_OPTS:-}" ]]; then
    local -a env_extra
    read -r -a env_extra <<<"$EMPORIUM_PG_EXTRA_OPTS"
    extra+=("${env_extra[@]}")
  fi
  if [[ ! "$port" =~ ^[0-9]+$ ]]; then
    emporium_err "emporium_pg_start: bad port '$port'"
    return 1
  fi
  if [[ ! -x "$EMPORIUM_PG_BIN/pg_ctl" ]]; then
    emporium_err "PostgreSQL 15 not found in $EMPORIUM_PG_BIN (is postgresql-15 installed?)"
    return 1
  fi

  mkdir -p "$datadir" || return 1
  datadir="$(cd "$datadir" && pwd -P)" || return 1
  local log="$datadir/server.log"

  if emporium_pg_running "$datadir"; then
    local running_port
    running_port="$(sed -n '4p' "$datadir/postmaster.pid" 2>/dev/null || true)"
    if [[ "$running_port" != "$port" ]]; then
      emporium_err "a PostgreSQL is already running in $datadir on port $running_port, not $port;" \
        "stop it first (emporium_pg_stop $datadir)"
      return 1
    fi
    emporium_log "PostgreSQL already running in $datadir on port $port"
  else
    _emporium_pg_ensure_os_user || return 1
    local user
    user="$(_emporium_pg_os_user)"
    if [[ "$(id -u)" == 0 ]]; then
      # The data directory belongs to postgres; its parent must be traversable by it.
      chown postgres: "$datadir" || return 1
      chmod 700 "$datadir" || return 1
      local parent
      parent="$(dirname "$datadir")"
      chmod o+x "$parent" 2>/dev/null || true
      if ! runuser -u postgres -- test -w "$datadir"; then
        emporium_err "user postgres cannot reach $datadir: every parent directory must be" \
          "traversable by it (chmod o+x), or put the data directory elsewhere (e.g. under /tmp)"
        return 1
      fi
    fi

    if [[ ! -f "$datadir/PG_VERSION" ]]; then
      local locale=C
      if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then
        locale=C.UTF-8
      fi
      emporium_log "initdb $datadir (owner $user, locale $locale)"
      local initlog
      initlog="$(_emporium_pg_as "$EMPORIUM_PG_BIN/initdb" -D "$datadir" --auth=trust -U postgres \
        --encoding=UTF8 --locale="$locale" --no-instructions 2>&1)" || {
        emporium_err "initdb failed for $datadir:"
        printf '%s\n' "$initlog" >&2
        return 1
      }
    fi

    # Unix socket path must fit in sun_path (107 bytes); otherwise serve TCP only.
    local sockdir="'$datadir'"
    if ((${#datadir} + 16 > 107)); then
      sockdir="''"
    fi
    local opts="-p $port -k $sockdir -c listen_addresses=127.0.0.1"
    if ((${#extra[@]})); then
      opts+=" ${extra[*]}"
    fi
    # shellcheck disable=SC2034 # read by callers that restart the cluster themselves
    EMPORIUM_PG_STARTED_OPTS="$opts"
    emporium_log "starting PostgreSQL in $datadir on 127.0.0.1:$port"
    if ! _emporium_pg_as "$EMPORIUM_PG_BIN/pg_ctl" -D "$datadir" -l "$log" -w -t 60 -s \
      -o "$opts" start; then
      emporium_err "PostgreSQL failed to start in $datadir on port $port"
      emporium_log_tail "$log"
      # pg_ctl may give up on a postmaster that is still coming up; do not leave it behind.
      emporium_pg_stop "$datadir" >/dev/null 2>&1 || true
      return 1
    fi
  fi

  for db in "${dbs[@]}"; do
    if ! emporium_pg_ensure_db "$port" "$db" "$superuser"; then
      emporium_log_tail "$log" 20
      return 1
    fi
  done
}

# emporium_pg_stop DATADIR: fast shutdown; nothing to do if it is not running.
emporium_pg_stop() {
  local datadir="$1"
  emporium_pg_running "$datadir" || return 0
  datadir="$(cd "$datadir" && pwd -P)" || return 1 # pg_ctl runs from /
  if _emporium_pg_as "$EMPORIUM_PG_BIN/pg_ctl" -D "$datadir" -m fast -w -t 60 -s stop; then
    return 0
  fi
  emporium_err "fast shutdown of $datadir failed; trying immediate"
  _emporium_pg_as "$EMPORIUM_PG_BIN/pg_ctl" -D "$datadir" -m immediate -w -t 30 -s stop && return 0
  local pid
  pid="$(head -n1 "$datadir/postmaster.pid" 2>/dev/null || true)"
  if [[ "$pid" =~ ^[0-9]+$ ]]; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  emporium_log_tail "$datadir/server.log" 20
  return 1
}

# ---------------------------------------------------------------------------------------------
# Redis

_emporium_redis_pid() {
  local dir="$1" pid
  [[ -f "$dir/redis.pid" ]] || return 1
  pid="$(head -n1 "$dir/redis.pid" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

# emporium_redis_running DIR: true if the redis-server of DIR is alive.
emporium_redis_running() {
  _emporium_redis_pid "$1" >/dev/null
}

# _emporium_redis_pid_on PORT: the process_id reported by whatever Redis answers on PORT.
_emporium_redis_pid_on() {
  timeout 5 redis-cli -h 127.0.0.1 -p "$1" info server 2>/dev/null |
    tr -d '\r' | sed -n 's/^process_id://p'
}

# emporium_redis_start DIR PORT: redis-server on 127.0.0.1:PORT without persistence, pid/log in
# DIR. Waits (at most 20 s) until it answers PING. Idempotent.
emporium_redis_start() {
  if (($# != 2)); then
    emporium_err "usage: emporium_redis_start DIR PORT"
    return 1
  fi
  local dir="$1" port="$2" pid
  if [[ ! "$port" =~ ^[0-9]+$ ]]; then
    emporium_err "emporium_redis_start: bad port '$port'"
    return 1
  fi
  mkdir -p "$dir" || return 1
  dir="$(cd "$dir" && pwd -P)" || return 1
  local log="$dir/redis.log"

  if pid="$(_emporium_redis_pid "$dir")"; then
    if [[ "$(_emporium_redis_pid_on "$port")" == "$pid" ]]; then
      emporium_log "Redis already running in $dir on port $port"
      return 0
    fi
    emporium_err "a redis-server (pid $pid) already runs for $dir but not on port $port;" \
      "stop it first (emporium_redis_stop $dir)"
    return 1
  fi
  rm -f "$dir/redis.pid"
  : >"$log" || return 1

  emporium_log "starting Redis in $dir on 127.0.0.1:$port"
  if ! redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$log" --dir "$dir" >/dev/null 2>&1; then
    emporium_err "redis-server failed to start on port $port"
    emporium_log_tail "$log"
    return 1
  fi

  # Wait for PONG from *our* process (another Redis could own the port after a race).
  local deadline=$((SECONDS + 20))
  while ((SECONDS < deadline)); do
    if pid="$(_emporium_redis_pid "$dir")"; then
      if [[ "$(timeout 5 redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG &&
        "$(_emporium_redis_pid_on "$port")" == "$pid" ]]; then
        printf '%s\n' "$port" >"$dir/redis.port"
        return 0
      fi
    elif grep -qiE 'could not create server|address already in use|fatal' "$log" 2>/dev/null; then
      break # it died
    fi
    sleep 0.1
  done
  emporium_err "Redis did not come up on 127.0.0.1:$port (see $log)"
  emporium_log_tail "$log"
  emporium_redis_stop "$dir" >/dev/null 2>&1 || true
  return 1
}

# emporium_redis_stop DIR: stop the redis-server of DIR (SIGTERM, no save), bounded wait.
emporium_redis_stop() {
  local dir="$1" pid port
  if ! pid="$(_emporium_redis_pid "$dir")"; then
    # No live pid: maybe the pidfile is missing but the server answers on its port.
    port="$(cat "$dir/redis.port" 2>/dev/null || true)"
    if [[ "$port" =~ ^[0-9]+$ && -n "$(_emporium_redis_pid_on "$port")" ]]; then
      timeout 5 redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    fi
    rm -f "$dir/redis.pid"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 15))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      emporium_err "redis-server $pid did not stop in 15 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      break
    fi
    sleep 0.1
  done
  rm -f "$dir/redis.pid"
}

# ---------------------------------------------------------------------------------------------
# npm (test tools from the npm registry, e.g. the OpenAPI validator)

# emporium_npm_install DIR PKG@VERSION...: install exact versions into DIR/node_modules with the
# machine's npm (Debian's nodejs and npm). Kept between runs: packages already there at that
# version are not fetched again.
emporium_npm_install() {
  if (($# < 2)); then
    emporium_err "usage: emporium_npm_install DIR PKG@VERSION..."
    return 1
  fi
  local dir="$1" spec name version have
  shift
  if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    emporium_err "node and npm are needed (Debian packages nodejs, npm)"
    return 1
  fi
  mkdir -p "$dir" || return 1
  local -a missing=()
  for spec in "$@"; do
    name="${spec%@*}"
    version="${spec##*@}"
    have="$(node -e 'try { console.log(require(process.argv[1]).version) } catch (e) {}' \
      "$dir/node_modules/$name/package.json" 2>/dev/null || true)"
    [[ "$have" == "$version" ]] || missing+=("$spec")
  done
  ((${#missing[@]})) || return 0
  emporium_log "npm install ${missing[*]} into $dir"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "${missing[@]}" </dev/null || {
    emporium_err "npm install failed for: ${missing[*]}"
    return 1
  }
}

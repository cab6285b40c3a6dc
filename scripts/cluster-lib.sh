# shellcheck shell=bash
# Helpers to run several Emporium nodes as one cluster behind nginx on this machine, shared by
# scripts/cluster.sh and bench/cluster.sh. Source it (it sources lib.sh); do not execute it.
#
# Functions:
#   emporium_cluster_peers HOST FIRST_NODE_PORT N   print the peers list host:port,...
#   emporium_cluster_tls DIR HOST FIRST_NODE_PORT N a throwaway CA and one certificate per node
#   emporium_cluster_node_start BIN LOG ENVFILE     start `BIN serve --no-migrate` in its own
#                                                   session with ENVFILE's VAR=value lines added
#                                                   to the environment; prints its pid
#   emporium_cluster_wait_http URL PID SECONDS      wait until URL answers 200 (while PID lives)
#   emporium_cluster_stop_pids SECONDS PID...       SIGTERM, wait, then SIGKILL what is left
#   emporium_lb_nginx_conf DIR PORT UPSTREAM...     write DIR/nginx.conf: a load balancer on
#                                                   127.0.0.1:PORT over the UPSTREAM host:ports
#   emporium_lb_nginx_start DIR                     start nginx with it (own session); prints pid

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# emporium_cluster_peers HOST FIRST_NODE_PORT N: "HOST:FIRST,HOST:FIRST+1,...", N entries.
emporium_cluster_peers() {
  local host="$1" first="$2" n="$3" i out=""
  for ((i = 0; i < n; i++)); do
    out+="${out:+,}$host:$((first + i))"
  done
  printf '%s\n' "$out"
}

# emporium_cluster_tls DIR HOST FIRST_NODE_PORT N: a throwaway CA (DIR/ca.pem, DIR/ca.key) and,
# for node K = 1..N, DIR/node-K.pem and DIR/node-K.key signed by it. A node's name is
# HOST:PORT: that is the certificate's CN; its subjectAltName is HOST (IP or DNS), since a
# subjectAltName cannot carry a port. Keys are mode 600. Everything in DIR is replaced.
emporium_cluster_tls() {
  local dir="$1" host="$2" first="$3" n="$4" k name san out
  if ! command -v openssl >/dev/null 2>&1; then
    emporium_err "openssl is needed for --tls (Debian package openssl)"
    return 1
  fi
  rm -rf "$dir"
  mkdir -p "$dir" || return 1
  chmod 700 "$dir"
  if [[ "$host" =~ ^[0-9.]+$ || "$host" == *:* ]]; then
    san="IP:$host"
  else
    san="DNS:$host"
  fi
  out="$( (
    umask 077
    set -e
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 30 \
      -subj "/O=Emporium/CN=Emporium cluster CA (throwaway, $(date -u +%F))" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$dir/ca.key" -out "$dir/ca.pem"
    for ((k = 1; k <= n; k++)); do
      name="$host:$((first + k - 1))"
      openssl req -newkey rsa:2048 -nodes -sha256 -subj "/O=Emporium/CN=$name" \
        -keyout "$dir/node-$k.key" -out "$dir/node-$k.csr"
      printf '%s\n' "subjectAltName=$san" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth,clientAuth" >"$dir/node-$k.ext"
      openssl x509 -req -sha256 -days 30 -in "$dir/node-$k.csr" -CA "$dir/ca.pem" \
        -CAkey "$dir/ca.key" -CAcreateserial -extfile "$dir/node-$k.ext" -out "$dir/node-$k.pem"
      openssl verify -CAfile "$dir/ca.pem" "$dir/node-$k.pem"
      rm -f "$dir/node-$k.csr" "$dir/node-$k.ext"
    done
  ) 2>&1)" || {
    emporium_err "making the cluster's certificates in $dir failed:"
    printf '%s\n' "$out" >&2
    return 1
  }
  chmod 644 "$dir"/*.pem
  chmod 600 "$dir"/*.key
}

# emporium_cluster_node_start BIN LOG ENVFILE: `BIN serve --no-migrate` with the VAR=value lines
# of ENVFILE added to the current environment, output to LOG, in a session of its own (a Ctrl-C
# on the terminal does not reach it; it outlives the script that started it). Prints its pid.
emporium_cluster_node_start() {
  local bin="$1" log="$2" envfile="$3"
  local -a vars=()
  mapfile -t vars <"$envfile" || return 1
  setsid env "${vars[@]}" "$bin" serve --no-migrate </dev/null >>"$log" 2>&1 &
  printf '%s\n' "$!"
}

# emporium_cluster_wait_http URL PID SECONDS: true once URL answers 2xx; false when PID exits or
# SECONDS pass first.
emporium_cluster_wait_http() {
  local url="$1" pid="$2" deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if curl -fsS -m 2 -o /dev/null "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

# emporium_cluster_stop_pids SECONDS PID...: SIGTERM to each (a node drains its in-flight
# requests), wait at most SECONDS for all of them, then SIGKILL the rest.
emporium_cluster_stop_pids() {
  local secs="$1" pid alive
  shift
  (($#)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  local deadline=$((SECONDS + secs))
  while ((SECONDS < deadline)); do
    alive=0
    for pid in "$@"; do
      kill -0 "$pid" 2>/dev/null && alive=1
    done
    ((alive)) || return 0
    sleep 0.1
  done
  for pid in "$@"; do
    if kill -0 "$pid" 2>/dev/null; then
      emporium_err "process $pid did not stop in $secs s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

# emporium_lb_nginx_conf DIR PORT UPSTREAM...: DIR/nginx.conf for nginx as the cluster's load
# balancer on 127.0.0.1:PORT, round-robin over the UPSTREAM host:port (the nodes' HTTP ports),
# with logs and temporary files under DIR. No system configuration is read or touched.
emporium_lb_nginx_conf() {
  local dir="$1" port="$2" upstream servers=""
  shift 2
  mkdir -p "$dir/logs" "$dir/tmp" || return 1
  # nginx's workers run as nobody when it is started as root: they must reach DIR/tmp.
  chmod 755 "$dir" "$dir/logs" "$dir/tmp"
  for upstream in "$@"; do
    # Passive health checks: one failed attempt (a refused connection, a timeout) takes the
    # node out of the rotation for 5 s, after which one request probes it again.
    servers+="    server $upstream max_fails=1 fail_timeout=5s;"$'\n'
  done
  cat >"$dir/nginx.conf" <<EOF
# Generated by Emporium's scripts: nginx as the load balancer in front of the cluster's nodes.
# Started as: nginx -p $dir -c $dir/nginx.conf
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 4096; }

http {
  log_format cluster '\$time_iso8601 \$remote_addr "\$request" \$status \$request_time s'
                     ' upstream \$upstream_addr \$upstream_status \$upstream_response_time s';
  access_log $dir/logs/access.log cluster buffer=32k flush=1s;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  server_tokens off;

  upstream emporium {
    # Round-robin (nginx's default). Any node answers any request: a node forwards entity
    # messages to the entity's owner itself.
$servers
    # Idle keep-alive connections to the nodes, per worker. A node closes a connection idle for
    # http.idle_timeout_ms (30 s): nginx lets them go sooner, so it never reuses one the node is
    # closing at that moment.
    keepalive 64;
    keepalive_timeout 20s;
    keepalive_requests 100000;
  }

  server {
    listen 127.0.0.1:$port;
    # Larger than the nodes' own body limit (http.body_limit, 1 MiB), so that the node answers
    # an oversized body with its problem+json 413, not nginx with an HTML page.
    client_max_body_size 2m;

    location / {
      proxy_pass http://emporium;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      # The nodes believe X-Forwarded-For from 127.0.0.1 only (EMPORIUM_HTTP_TRUSTED_PROXIES):
      # the rate limiter and the per-address connection limit then key on the real client.
      # nginx is the edge here, so it replaces whatever X-Forwarded-For the client sent with
      # the address it sees: a client cannot choose its own rate-limit bucket. (Behind another
      # proxy, trust that one with set_real_ip_from / real_ip_header first.)
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;

      # Retry on another node only when the request could not be delivered or got no answer
      # (a node down or hung), never on an HTTP status: a node's 503 and 504 go to the client.
      # nginx passes a request to the next node this way only for idempotent methods (GET,
      # HEAD, PUT, DELETE, OPTIONS): a POST or PATCH that reached a node is never sent again
      # (no "non_idempotent" here), because nginx cannot know whether the node applied it
      # before failing; the client retries it with its Idempotency-Key. A connection that
      # was refused delivered nothing, so nginx may still try the next node with it.
      proxy_next_upstream error timeout;
      proxy_next_upstream_tries 3;
      proxy_next_upstream_timeout 15s;
      proxy_connect_timeout 1s;
      # Longer than the nodes' own request deadline (http.request_timeout_ms, 5 s: then 504),
      # so a timeout here means a hung node, not a slow request.
      proxy_send_timeout 10s;
      proxy_read_timeout 10s;
    }
  }
}
EOF
}

# emporium_lb_nginx_start DIR: nginx (not a daemon: it stays in the foreground of its own
# session) with DIR/nginx.conf; prints its pid. Its stderr goes to DIR/logs/stderr.log.
emporium_lb_nginx_start() {
  local dir="$1"
  if ! command -v nginx >/dev/null 2>&1; then
    emporium_err "nginx is not installed (Debian package nginx)"
    return 1
  fi
  if ! nginx -t -q -e "$dir/logs/error.log" -p "$dir" -c "$dir/nginx.conf" 2>"$dir/logs/test.log"; then
    emporium_err "nginx refuses the generated $dir/nginx.conf:"
    cat "$dir/logs/test.log" >&2
    return 1
  fi
  setsid nginx -e "$dir/logs/error.log" -p "$dir" -c "$dir/nginx.conf" \
    </dev/null >>"$dir/logs/stderr.log" 2>&1 &
  printf '%s\n' "$!"
}

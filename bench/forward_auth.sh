#!/bin/bash
# Forward-auth decision vs the proxy path, same tool (wrk) and the same
# cached token as bench/run.sh's case (c):
#   (c) GET /api/x through the proxy (gateway -> upstream -> back)
#   (f) the same request described to the forward-auth listener (nginx
#       flavour: X-Original-URL + X-Original-Method), no upstream leg
#   (g) an anonymous decision on a public route
# Prints "NAME requests/s p50 p99". Settings: DURATION (10s), WARMUP (2s),
# CONNS (32), THREADS (2), GW_BIN. Everything it starts it stops (by PID).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
RUN=${RUN:-$ROOT/target/bench-forward-auth}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null

cargo build --release --locked --bin authgear-gateway >&2 && cargo build --release --locked --example bench_upstream --example bench_issuer >&2  # apart: see lib.sh build()
REL=$CARGO_TARGET_DIR/release
GW_BIN=${GW_BIN:-$REL/authgear-gateway}

rm -rf "$RUN"; mkdir -p "$RUN"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

UP_PORT=$(free_port); GW_PORT=$(free_port); ADMIN_PORT=$(free_port); FA_PORT=$(free_port)
"$REL/examples/bench_upstream" "127.0.0.1:$UP_PORT" 1 >"$RUN/upstream.log" 2>&1 &
PIDS+=($!)
"$REL/examples/bench_issuer" "$RUN/tokens" 1 >"$RUN/issuer.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 3000); do [ -f "$RUN/tokens/ready" ] && break; sleep 0.2; done
[ -f "$RUN/tokens/ready" ] || { echo "the issuer never became ready" >&2; exit 1; }
cat >"$RUN/gateway.toml" <<TOML
[server]
listen = "127.0.0.1:$GW_PORT"
shutdown_drain = "0s"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[forward_auth]
listen = "127.0.0.1:$FA_PORT"
trusted_proxies = ["127.0.0.1"]
flavour = "nginx"

[upstream]
url = "http://127.0.0.1:$UP_PORT"

[auth]
issuer = "$(cat "$RUN/tokens/issuer")"

[log]
format = "json"
level = "info"

[[routes]]
path = "/public/**"
auth = "public"

[[routes]]
path = "/api/**"
auth = "required"
TOML
"$GW_BIN" --config "$RUN/gateway.toml" >"$RUN/gateway.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$UP_PORT/"
wait_http "http://127.0.0.1:$ADMIN_PORT/readyz"
ONE=$(head -1 "$RUN/tokens/one.txt")
FA=http://127.0.0.1:$FA_PORT/
curl -fs -o /dev/null -H "Authorization: Bearer $ONE" -H "X-Original-URL: http://app/api/x" -H "X-Original-Method: GET" "$FA" ||
  { echo "the decision endpoint refused the bench token" >&2; exit 1; }

run_case() { # NAME URL [wrk options...]
  local name=$1 url=$2; shift 2
  wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "$@" "$url" >/dev/null 2>&1 || true
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" "$url" >"$RUN/wrk-$name.txt" 2>&1
  if grep -q Non-2xx "$RUN/wrk-$name.txt"; then echo "warning: $name had non-2xx answers" >&2; fi
  echo "$name $(awk '/^Requests\/sec:/ {print $2}' "$RUN/wrk-$name.txt") $(awk '$1=="50%" {print $2}' "$RUN/wrk-$name.txt") $(awk '$1=="99%" {print $2}' "$RUN/wrk-$name.txt")"
}
echo "case requests/s p50 p99 (wrk -t$THREADS -c$CONNS -d$DURATION)"
run_case c_proxy_one_token "http://127.0.0.1:$GW_PORT/api/x" -H "Authorization: Bearer $ONE"
run_case f_decision_one_token "$FA" -H "Authorization: Bearer $ONE" -H "X-Original-URL: http://app/api/x" -H "X-Original-Method: GET"
run_case g_decision_public "$FA" -H "X-Original-URL: http://app/public/x" -H "X-Original-Method: GET"

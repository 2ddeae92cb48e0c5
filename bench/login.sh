#!/bin/bash
# A browser-login session route against a bearer route, same gateway, same
# upstream, same tool (wrk) as bench/run.sh:
#   (c) GET /api/x with one cached bearer token (bench/run.sh's case (c))
#   (s) GET /app/x with one sealed session cookie (method = "login"), the
#       cookie opened on every request
# Prints "NAME requests/s p50 p99" and the ratio. Settings: DURATION (10s),
# WARMUP (2s), CONNS (32), THREADS (2), ROUNDS (3, alternating cases),
# GW_BIN, BUILD (1; 0 reuses the release binaries already built), STORE (cookie;
# redis starts a redis-server on a free port), REDIS_CACHE_TTL (2s; 0s makes
# every session request a Redis round trip). Everything it starts it stops (by PID).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
RUN=${RUN:-$ROOT/target/bench-login}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null

if [ "${BUILD:-1}" != 0 ]; then
  cargo build --release --locked --bin authgear-gateway >&2 && cargo build --release --locked --example bench_upstream --example bench_issuer --example bench_session >&2  # apart: see lib.sh build()
fi
REL=$CARGO_TARGET_DIR/release
GW_BIN=${GW_BIN:-$REL/authgear-gateway}

rm -rf "$RUN"; mkdir -p "$RUN"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

UP_PORT=$(free_port); GW_PORT=$(free_port); ADMIN_PORT=$(free_port)
"$REL/examples/bench_upstream" "127.0.0.1:$UP_PORT" 1 >"$RUN/upstream.log" 2>&1 &
PIDS+=($!)
"$REL/examples/bench_issuer" "$RUN/tokens" 1 >"$RUN/issuer.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 3000); do [ -f "$RUN/tokens/ready" ] && break; sleep 0.2; done
[ -f "$RUN/tokens/ready" ] || { echo "the issuer never became ready" >&2; exit 1; }
KEY=$(head -c 32 /dev/urandom | base64)
STORE=${STORE:-cookie}
STORE_LINES=""
REDIS_URL=""
if [ "$STORE" = redis ]; then
  command -v redis-server >/dev/null || apt-get install -y -qq redis-server >/dev/null
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$RUN/redis.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"
  STORE_LINES="store = \"redis\"
redis_url = \"$REDIS_URL\"
redis_cache_ttl = \"${REDIS_CACHE_TTL:-2s}\""
fi
cat >"$RUN/gateway.toml" <<TOML
[server]
listen = "127.0.0.1:$GW_PORT"
shutdown_drain = "0s"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[upstream]
url = "http://127.0.0.1:$UP_PORT"

[auth]
issuer = "$(cat "$RUN/tokens/issuer")"

[login]
public_origin = "https://app.bench.test"
client_id = "bench"
cookie_keys = ["k1:$KEY"]
$STORE_LINES

[log]
format = "json"
level = "warn"

[[routes]]
path = "/api/**"
auth = "required"

[[routes]]
path = "/app/**"
method = "login"
TOML
"$GW_BIN" --config "$RUN/gateway.toml" >"$RUN/gateway.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$UP_PORT/"
wait_http "http://127.0.0.1:$ADMIN_PORT/readyz"
ONE=$(head -1 "$RUN/tokens/one.txt")
COOKIE=$("$REL/examples/bench_session" __Host-agw_session k1 "$KEY" "$ONE" $REDIS_URL)
curl -fs -o /dev/null -H "Authorization: Bearer $ONE" "http://127.0.0.1:$GW_PORT/api/x" || { echo "the bearer route refused the bench token" >&2; exit 1; }
curl -fs -o /dev/null -H "Cookie: $COOKIE" "http://127.0.0.1:$GW_PORT/app/x" || { echo "the session route refused the bench cookie" >&2; exit 1; }
echo "cookie header: ${#COOKIE} bytes" >&2

run_case() { # NAME URL [wrk options...]
  local name=$1 url=$2; shift 2
  wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "$@" "$url" >/dev/null 2>&1 || true
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" "$url" >"$RUN/wrk-$name.txt" 2>&1
  if grep -q Non-2xx "$RUN/wrk-$name.txt"; then echo "warning: $name had non-2xx answers" >&2; fi
  echo "$name $(awk '/^Requests\/sec:/ {print $2}' "$RUN/wrk-$name.txt") $(awk '$1=="50%" {print $2}' "$RUN/wrk-$name.txt") $(awk '$1=="99%" {print $2}' "$RUN/wrk-$name.txt")"
}
echo "case requests/s p50 p99 (wrk -t$THREADS -c$CONNS -d$DURATION)"
for r in $(seq 1 "$ROUNDS"); do
  c=$(run_case "c_bearer_r$r" "http://127.0.0.1:$GW_PORT/api/x" -H "Authorization: Bearer $ONE"); echo "$c"
  s=$(run_case "s_session_r$r" "http://127.0.0.1:$GW_PORT/app/x" -H "Cookie: $COOKIE"); echo "$s"
  echo "round $r: bearer/session req/s = $(awk -v a="$(echo "$c" | cut -d' ' -f2)" -v b="$(echo "$s" | cut -d' ' -f2)" 'BEGIN {printf "%.3f", a / b}')"
done

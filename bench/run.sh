#!/bin/bash
# The gateway's reproducible benchmark. One command, from the repository root:
#
#   bench/run.sh                 # or: DURATION=10s CONNS=32 THREADS=2 bench/run.sh
#
# Builds in release mode, starts on 127.0.0.1 a minimal hyper upstream
# (examples/bench_upstream.rs), the dev issuer with its token files
# (examples/bench_issuer.rs) and the gateway, then runs wrk against:
#   (a) the upstream directly, (b) a public route, (c) one token,
#   (d) 1,000 rotating tokens, (e) a never-seen token on every request,
# and prints requests/s, p50, p99 and peak RSS (VmHWM, reset before each
# case) with the ratio to (a); then idle RSS, RSS with 10,000 open
# keep-alive connections, the cost of the access log, and the machine's
# `openssl speed rsa2048` verify rate. Everything it starts it stops (by PID).
# Settings: DURATION (10s), WARMUP (2s), CONNS (32), THREADS (2),
# FRESH_TOKENS (100000), IDLE_CONNS (10000), UPSTREAM_THREADS (1),
# GW_BIN (a gateway binary to use instead of building one), NO_BUILD=1 (use
# what is built),
# PEERS (a copy of the peer kit, e.g. /tmp/peers: also runs its compare.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
FRESH_TOKENS=${FRESH_TOKENS:-100000}
IDLE_CONNS=${IDLE_CONNS:-10000}
UPSTREAM_THREADS=${UPSTREAM_THREADS:-1}
RUN=${RUN:-$ROOT/target/bench-run}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

if ! command -v wrk >/dev/null; then
  echo "installing wrk" >&2
  apt-get install -y -qq wrk >/dev/null || { echo "wrk is missing and could not be installed" >&2; exit 1; }
fi

if [ "${NO_BUILD:-0}" != 1 ]; then
  echo "building (release)..." >&2
  cargo build --release --locked --bin authgear-gateway >&2 && cargo build --release --locked --example bench_upstream --example bench_issuer --example bench_conns >&2  # apart: see lib.sh build()
fi
REL=$CARGO_TARGET_DIR/release
GW_BIN=${GW_BIN:-$REL/authgear-gateway}

rm -rf "$RUN"; mkdir -p "$RUN"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
kb() { awk -v k="$2:" '$1==k {print $2}' "/proc/$1/status"; }
# CPU time (user + system, clock ticks) a process has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
SECS=$(awk -v d="$DURATION" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; print n }')
mb() { awk -v v="$1" 'BEGIN {printf "%.1f", v/1024}'; }

UP_PORT=$(free_port); GW_PORT=$(free_port); ADMIN_PORT=$(free_port)
"$REL/examples/bench_upstream" "127.0.0.1:$UP_PORT" "$UPSTREAM_THREADS" >"$RUN/upstream.log" 2>&1 &
PIDS+=($!)
echo "minting $FRESH_TOKENS fresh tokens..." >&2
"$REL/examples/bench_issuer" "$RUN/tokens" "$FRESH_TOKENS" >"$RUN/issuer.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 3000); do [ -f "$RUN/tokens/ready" ] && break; sleep 0.2; done
[ -f "$RUN/tokens/ready" ] || { echo "the issuer never became ready" >&2; exit 1; }
ISS=$(cat "$RUN/tokens/issuer")

write_config() { # $1 = log level
  cat >"$RUN/gateway.toml" <<TOML
[server]
listen = "127.0.0.1:$GW_PORT"
shutdown_drain = "0s"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[upstream]
url = "http://127.0.0.1:$UP_PORT"

[auth]
issuer = "$ISS"

[log]
format = "json"
level = "$1"

[[routes]]
path = "/public/**"
auth = "public"

[[routes]]
path = "/api/**"
auth = "required"
TOML
}

GW_PID=
start_gateway() { # $1 = log level
  write_config "$1"
  "$GW_BIN" --config "$RUN/gateway.toml" >>"$RUN/gateway-$1.log" 2>&1 &
  GW_PID=$!
  PIDS+=("$GW_PID")
  wait_http "http://127.0.0.1:$ADMIN_PORT/readyz"
}
stop_gateway() { kill "$GW_PID"; wait "$GW_PID" 2>/dev/null || true; }

ONE=$(head -1 "$RUN/tokens/one.txt")
GW=http://127.0.0.1:$GW_PORT
wait_http "http://127.0.0.1:$UP_PORT/"
start_gateway info
curl -fs -o /dev/null -H "Authorization: Bearer $ONE" "$GW/api/check" || { echo "the gateway refused the bench token" >&2; exit 1; }
IDLE_RSS=$(kb "$GW_PID" VmRSS)

# run_case NAME PID URL [wrk options...] [-- script args...]
# prints "NAME rps p50 p99 peak_kb cores" (cores: CPU the measured process used, in cores)
run_case() {
  local name=$1 pid=$2 url=$3; shift 3
  local opts=() sargs=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do opts+=("$1"); shift; done
  [ $# -gt 0 ] && shift && sargs=("$@")
  [ "$WARMUP" = 0 ] || wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "${opts[@]}" "$url" -- "${sargs[@]}" >/dev/null 2>&1 || true
  echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true
  local t0 t1
  t0=$(ticks "$pid")
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${opts[@]}" "$url" -- "${sargs[@]}" >"$RUN/wrk-$name.txt" 2>&1
  t1=$(ticks "$pid")
  local rps p50 p99 errs
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$RUN/wrk-$name.txt")
  p50=$(awk '$1=="50%" {print $2}' "$RUN/wrk-$name.txt")
  p99=$(awk '$1=="99%" {print $2}' "$RUN/wrk-$name.txt")
  errs=$(awk '/Non-2xx/ {print $5}' "$RUN/wrk-$name.txt")
  [ -z "$errs" ] || echo "warning: $name had $errs non-2xx answers (see $RUN/wrk-$name.txt)" >&2
  echo "$name $rps $p50 $p99 $(kb "$pid" VmHWM) $(awk -v a="$t0" -v b="$t1" -v hz="$HZ" -v s="$SECS" 'BEGIN {printf "%.2f", (b - a) / hz / s}')"
}

UP_PID=${PIDS[0]}
RESULTS=$RUN/results.txt
: >"$RESULTS"
echo "running $DURATION per case, wrk -t$THREADS -c$CONNS..." >&2
run_case a_upstream_direct "$UP_PID" "http://127.0.0.1:$UP_PORT/api/x" >>"$RESULTS"
run_case b_public_route "$GW_PID" "$GW/public/x" >>"$RESULTS"
run_case c_one_token "$GW_PID" "$GW/api/x" -H "Authorization: Bearer $ONE" >>"$RESULTS"
run_case d_1000_tokens "$GW_PID" "$GW/api/x" -s bench/pool.lua -- "$RUN/tokens/pool.txt" >>"$RESULTS"
WARMUP=0 run_case e_fresh_tokens "$GW_PID" "$GW/api/x" -s bench/fresh.lua -- "$RUN/tokens/fresh.txt" "$THREADS" >>"$RESULTS"
REUSED=$(awk -F= '/^FRESH reused=/ {print $2}' "$RUN/wrk-e_fresh_tokens.txt")
AFTER_RSS=$(kb "$GW_PID" VmRSS)

# A fresh gateway at warn (no access lines) for the last two measurements.
stop_gateway
start_gateway warn
# 10,000 open keep-alive connections, each having served one request, on a
# fresh gateway (the runs above filled its token cache).
"$REL/examples/bench_conns" "127.0.0.1:$GW_PORT" "$IDLE_CONNS" /public/x >"$RUN/conns.log" 2>&1 &
CONNS_PID=$!; PIDS+=("$CONNS_PID")
for _ in $(seq 1 600); do grep -q "connections open" "$RUN/conns.log" 2>/dev/null && break; sleep 0.1; done
CONN_OPEN=$(awk '/connections open/ {print $1}' "$RUN/conns.log")
CONN_AT_OPEN=$(kb "$GW_PID" VmRSS)
# Idle connections park after 1 s (hyper's buffers freed) and the trimmer
# returns the freed pages within its 5 s check: wait for both.
parked() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '$1=="authgear_gateway_parked_connections" {print $2}'; }
for _ in $(seq 1 100); do [ "$(parked)" = "${CONN_OPEN:-x}" ] && break; sleep 0.1; done
CONN_PARKED=$(parked)
sleep 6
CONN_RSS=$(kb "$GW_PID" VmRSS)
CONN_PEAK=$(kb "$GW_PID" VmHWM)
kill "$CONNS_PID"; wait "$CONNS_PID" 2>/dev/null || true

# The access log's cost: case (c) again without access lines.
run_case c_one_token_no_access_log "$GW_PID" "$GW/api/x" -H "Authorization: Bearer $ONE" >>"$RESULTS"
stop_gateway

VERIFY=$(openssl speed -seconds 3 rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ {print $NF}')

echo
echo "## authgear-gateway benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, wrk -t$THREADS -c$CONNS -d$DURATION, RS256)"
echo
awk -v verify="${VERIFY:-0}" '
  BEGIN { print "| case | req/s | ratio to (a) | p50 | p99 | peak RSS | CPU used | req/s per core used |"; print "|---|---:|---:|---:|---:|---:|---:|---:|" }
  { rps[NR]=$2; if (NR==1) base=$2;
    printf "| %s | %.0f | %.2f | %s | %s | %.1f MB | %.2f cores | %.0f |\n", $1, $2, $2/base, $3, $4, $5/1024, $6, ($6 > 0 ? $2/$6 : 0) }
' "$RESULTS"
echo
echo "- idle RSS after start: $(mb "$IDLE_RSS") MB; after the runs: $(mb "$AFTER_RSS") MB"
echo "- RSS with ${CONN_OPEN:-?} open keep-alive connections, each served once: $(mb "$CONN_AT_OPEN") MB when the last opened; $(mb "$CONN_RSS") MB once idle (${CONN_PARKED:-?} parked); peak so far $(mb "$CONN_PEAK") MB"
echo "- fresh-token requests that reused a token: ${REUSED:-?} (raise FRESH_TOKENS if not 0)"
if [ -n "${VERIFY:-}" ]; then
  echo "- openssl speed rsa2048 (one core): $VERIFY verify/s; fresh tokens reached $(awk -v v="$VERIFY" '$1=="e_fresh_tokens" {printf "%.2f", $2/v}' "$RESULTS") of it, $(awk -v v="$VERIFY" '$1=="e_fresh_tokens" && $6 > 0 {printf "%.2f", $2/$6/v}' "$RESULTS") per core the gateway used"
fi
echo "- access log: $(awk '$1=="c_one_token"{a=$2} $1=="c_one_token_no_access_log"{b=$2} END {if (b>0) printf "%.0f req/s with it, %.0f without (%.1f%%)", a, b, (b-a)*100/b}' "$RESULTS")"
echo "- raw wrk output and logs: $RUN"

if [ -n "${PEERS:-}" ] && [ -x "$PEERS/bench/compare.sh" ]; then
  echo
  echo "## peer comparison ($PEERS/bench/compare.sh)"
  RUST_GW_BIN=$GW_BIN "$PEERS/bench/compare.sh" "$DURATION"
fi

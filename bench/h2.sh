#!/bin/bash
# HTTP/2 clients with several streams per connection (h2load, Debian's
# nghttp2-client), one token, on /api/x:
#   h2c       HTTP/2 without TLS (prior knowledge): gateway, Envoy
#   h2-tls    HTTP/2 over TLS 1.3 (ALPN h2, ECDSA P-256): gateway, Envoy, nginx + Lua
#   grpc      unary gRPC calls over h2c to a gRPC upstream (bench_upstream answers
#             an empty message, grpc-status 0 in the trailers): gateway
#             (upstream.protocol = "h2c"), Envoy (HTTP/2 cluster), nginx (grpc_pass)
# The gRPC request is h2load with a 5-byte body (an empty protobuf message in
# gRPC framing), `content-type: application/grpc` and `te: trailers`; one call
# through each target is checked with curl for `grpc-status: 0`. h2load counts
# HTTP statuses, not grpc-status.
#
#   bench/h2.sh                  # DURATION=10s per case
#   DURATION=2s bench/h2.sh      # smoke
#
# Settings: DURATION (10s), CLIENTS (8 connections), STREAMS (10 per
# connection), THREADS (2), MODES (h2c h2-tls grpc), GW_BIN, RUN.
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
CLIENTS=${CLIENTS:-8}
STREAMS=${STREAMS:-10}
THREADS=${THREADS:-2}
MODES=${MODES:-h2c h2-tls grpc}
RUN=${RUN:-$ROOT/target/bench-h2}
SECS=${DURATION%s}

apt_need h2load nghttp2-client
build
need_peers
rm -rf "$RUN"; mkdir -p "$RUN"
certs "$RUN/certs"
start_backends "$RUN" 1
printf '\0\0\0\0\0' >"$RUN/grpc-empty.bin"

# run_h2load NAME URL [h2load options]: appends "NAME req/s mean succeeded failed".
run_h2load() {
  local name=$1 url=$2; shift 2
  h2load -D 2 -c "$CLIENTS" -m "$STREAMS" -t "$THREADS" -H "authorization: Bearer $ONE" "$@" "$url" >/dev/null 2>&1 || true
  h2load -D "$SECS" -c "$CLIENTS" -m "$STREAMS" -t "$THREADS" -H "authorization: Bearer $ONE" "$@" "$url" >"$RUN/h2load-$name.txt" 2>&1 || true
  awk -v n="$name" '
    /^finished in/ { rps = $4 }
    /^requests:/ { ok = $8; failed = $10 + $12 + $14 }
    /^status codes:/ { s2 = $3 }
    /^time for request:/ { mean = $6 }
    END { printf "%s %s %s %s %s\n", n, rps + 0, mean, s2 + 0, failed + 0 }' "$RUN/h2load-$name.txt" >>"$RESULTS"
}
grpc_check() { # NAME URL: one call answered with grpc-status 0
  curl -s --http2-prior-knowledge -o /dev/null -D - --raw -X POST --data-binary @"$RUN/grpc-empty.bin" \
    -H "content-type: application/grpc" -H "te: trailers" -H "authorization: Bearer $ONE" "$2" -w '%{http_code}\n' >"$RUN/grpc-check-$1.txt" 2>&1 || true
  grep -qi "grpc-status: 0" "$RUN/grpc-check-$1.txt" || { echo "warning: $1 gRPC call did not end with grpc-status 0 ($RUN/grpc-check-$1.txt)" >&2; }
}

RESULTS=$RUN/results.txt
: >"$RESULTS"
C=$RUN/certs
for mode in $MODES; do
  case $mode in
    h2c) targets="gateway envoy" ;;
    *) targets="gateway envoy nginx" ;;
  esac
  for t in $targets; do
    port=$(free_port)
    cert="" key="" scheme=http opt=""
    [ "$mode" != h2-tls ] || { cert=$C/ecdsa.crt key=$C/ecdsa.key scheme=https; }
    case $t in
      gateway) start_gateway "$RUN" "gateway-$mode" "$port" "$cert" "$key" "$([ "$mode" = grpc ] && echo h2c || echo http1)"; pid=$GW_PID ;;
      envoy) start_envoy "$RUN" "envoy-$mode" "$port" "$cert" "$key" "$([ "$mode" = grpc ] && echo h2c)"; pid=$ENVOY_PID ;;
      nginx) start_nginx "$RUN" "nginx-$mode" "$port" "$cert" "$key" "$([ "$mode" = grpc ] && echo grpc)"; pid=$NGINX_PID ;;
    esac
    if [ "$mode" = grpc ]; then
      url=http://127.0.0.1:$port/api/bench.Bench/Unary
      grpc_check "$t" "$url"
      run_h2load "$mode-$t" "$url" -d "$RUN/grpc-empty.bin" -H "content-type: application/grpc" -H "te: trailers"
    else
      url=$scheme://127.0.0.1:$port/api/x
      [ "$mode" = h2c ] || check_target "$t-$mode" "$url" --http2
      [ "$mode" != h2c ] || check_target "$t-$mode" "$url" --http2-prior-knowledge
      run_h2load "$mode-$t" "$url"
    fi
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done

echo
echo "## HTTP/2 ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores shared by client, target and upstream)"
echo "h2load -D $SECS -c $CLIENTS -m $STREAMS -t $THREADS, one token; h2-tls with the ECDSA P-256 certificate"
echo
echo "| mode | target | req/s | mean time per request | 2xx | failed |"
echo "|---|---|---:|---:|---:|---:|"
awk '{ split($1, a, "-"); t = a[length(a)]; m = substr($1, 1, length($1) - length(t) - 1); printf "| %s | %s | %.0f | %s | %d | %d |\n", m, t, $2, $3, $4, $5 }' "$RESULTS"
echo
awk '{ split($1, a, "-"); t = a[length(a)]; m = substr($1, 1, length($1) - length(t) - 1); r[m" "t] = $2; ms[m] = 1 }
  END { for (m in ms) { line = "- " m ":"; for (p in r) { split(p, q, " "); if (q[1] == m && q[2] != "gateway" && r[p] > 0) line = line sprintf(" gateway/%s %.2f", q[2], r[m" gateway"] / r[p]) } print line } }' "$RESULTS" | sort
echo "- raw: $RUN"

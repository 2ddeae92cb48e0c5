#!/bin/bash
# TLS 1.3 termination: the gateway, Envoy (jwt_authn) and nginx + Lua, each
# with the same ECDSA P-256 and RSA-2048 certificates (made here by openssl),
# each verifying the same token on /api/x:
#   keepalive  wrk -t$THREADS -c$CONNS over https, one token: req/s, p50, p99
#   full       a new connection per request, full handshake every time:
#              `openssl s_time -new`, $CLIENTS clients in parallel: conn/s
#   resumed    a new connection per request, resuming the first session
#              (TLS 1.3 PSK from the server's ticket): `openssl s_time -reuse`
# For both, the target's own CPU time per connection is reported too (from
# /proc: the process and its children), which is the fair comparison of
# handshake cost on a machine the clients share.
# s_time sends one GET per connection and reads to EOF; the token and
# `Connection: close` ride in its request path (it has no header option),
# so each connection is one authenticated request.
#
#   bench/tls.sh                 # DURATION=10s per case
#   DURATION=2s bench/tls.sh     # smoke
#
# Settings: DURATION (10s), CONNS (32), THREADS (2), CLIENTS (2), TARGETS
# (gateway envoy nginx), CERTS (ecdsa rsa), GW_BIN, RUN.
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
CLIENTS=${CLIENTS:-2}
TARGETS=${TARGETS:-gateway envoy nginx}
CERTS=${CERTS:-ecdsa rsa}
RUN=${RUN:-$ROOT/target/bench-tls}
SECS=${DURATION%s}

apt_need wrk wrk
build
need_peers
rm -rf "$RUN"; mkdir -p "$RUN"
certs "$RUN/certs"
start_backends "$RUN" 1

# s_time_rate PORT MODE PID: "conn/s cpu" over $CLIENTS parallel s_time, where
# cpu is the target's own CPU time per connection in microseconds (PID and
# its children). The clients share the cores with the target and do about as
# much work per handshake as it does, so conn/s understates the difference
# between targets; CPU per connection is what each would reach on cores of
# its own.
s_time_rate() {
  local port=$1 mode=$2 pid=$3 i req pids=() t0 t1
  req=$(printf '/api/x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer %s\r\nX-Pad:' "$ONE")
  t0=$(tree_ticks "$pid")
  for i in $(seq 1 "$CLIENTS"); do
    openssl s_time -connect "127.0.0.1:$port" "$mode" -time "$SECS" -www "$req" >"$RUN/s_time-$port$mode-$i.txt" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}" || true
  t1=$(tree_ticks "$pid")
  cat "$RUN"/s_time-"$port$mode"-*.txt | awk -v s="$SECS" -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" \
    '/connections in .* real seconds/ {n += $1} END {printf "%.0f %.0f", n / s, (n > 0 ? ticks * 1e6 / hz / n : 0)}'
}

RESULTS=$RUN/results.txt
: >"$RESULTS"
for cert in $CERTS; do
  for t in $TARGETS; do
    port=$(free_port)
    case $t in
      gateway) start_gateway "$RUN" "gateway-$cert" "$port" "$RUN/certs/$cert.crt" "$RUN/certs/$cert.key"; pid=$GW_PID ;;
      envoy) start_envoy "$RUN" "envoy-$cert" "$port" "$RUN/certs/$cert.crt" "$RUN/certs/$cert.key"; pid=$ENVOY_PID ;;
      nginx) start_nginx "$RUN" "nginx-$cert" "$port" "$RUN/certs/$cert.crt" "$RUN/certs/$cert.key"; pid=$NGINX_PID ;;
      *) echo "unknown target $t" >&2; exit 1 ;;
    esac
    url=https://127.0.0.1:$port/api/x
    check_target "$t-$cert" "$url" --tlsv1.3
    # The certificate and TLS version the client actually got.
    openssl s_client -connect "127.0.0.1:$port" -tls1_3 </dev/null 2>/dev/null | grep -E "^(Peer signature type|Protocol|Server public key)" \
      >"$RUN/handshake-$t-$cert.txt" || true
    wrk -t"$THREADS" -c"$CONNS" -d2s -H "Authorization: Bearer $ONE" "$url" >/dev/null 2>&1 || true
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Authorization: Bearer $ONE" "$url" >"$RUN/wrk-$t-$cert.txt" 2>&1
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$RUN/wrk-$t-$cert.txt")
    p50=$(awk '$1=="50%" {print $2}' "$RUN/wrk-$t-$cert.txt")
    p99=$(awk '$1=="99%" {print $2}' "$RUN/wrk-$t-$cert.txt")
    bad=$(awk '/Non-2xx/ {print $5}' "$RUN/wrk-$t-$cert.txt")
    [ -z "$bad" ] || echo "warning: $t $cert keep-alive had $bad non-2xx answers" >&2
    full=$(s_time_rate "$port" -new "$pid")
    resumed=$(s_time_rate "$port" -reuse "$pid")
    echo "$cert $t $rps $p50 $p99 $full $resumed" >>"$RESULTS"
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done

echo
echo "## TLS 1.3 ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores shared by client, target and upstream; $DURATION per case)"
echo "keep-alive: wrk -t$THREADS -c$CONNS, one token; full/resumed: openssl s_time -new/-reuse x $CLIENTS clients, one authenticated request per connection"
echo
echo "| cert | target | keep-alive req/s | p50 | p99 | full handshakes conn/s | target CPU per full | resumed conn/s | target CPU per resumed |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
awk '{ printf "| %s | %s | %.0f | %s | %s | %s | %s µs | %s | %s µs |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }' "$RESULTS"
echo
echo "ratios gateway/peer (keep-alive, full, resumed; and in brackets the peer's CPU per connection over the gateway's):"
awk '{ k[$1" "$2"_ka"]=$3; k[$1" "$2"_full"]=$6; k[$1" "$2"_fcpu"]=$7; k[$1" "$2"_res"]=$8; k[$1" "$2"_rcpu"]=$9; certs[$1]=1; t[$2]=1 }
  function r(a, b) { return b > 0 ? a / b : 0 }
  END {
    for (c in certs) for (p in t) if (p != "gateway" && k[c" "p"_ka"] > 0 && k[c" gateway_ka"] > 0)
      printf "- %s gateway/%s: keep-alive %.2f, full %.2f (CPU %.2f), resumed %.2f (CPU %.2f)\n", c, p,
        r(k[c" gateway_ka"], k[c" "p"_ka"]), r(k[c" gateway_full"], k[c" "p"_full"]), r(k[c" "p"_fcpu"], k[c" gateway_fcpu"]),
        r(k[c" gateway_res"], k[c" "p"_res"]), r(k[c" "p"_rcpu"], k[c" gateway_rcpu"])
  }' "$RESULTS" | sort
echo "- raw: $RUN (handshake-*.txt: what each target negotiated)"

#!/bin/bash
# The gateway's newer paths side by side with the peers' bearer proxy, in one
# run, same upstream, same issuer, same tool (wrk -t THREADS -c CONNS):
#   envoy, nginx       the peers' bearer proxy (bench/lib.sh), one token
#   bearer             the gateway, one cached token (bench/run.sh's (c))
#   cookie             a `method = "login"` route, the sealed session cookie store
#   redis              the same with `store = "redis"` (redis_cache_ttl 2s)
#   redis_nocache      `store = "redis"`, redis_cache_ttl 0s: a Redis round trip per request
#   forward_auth       a decision on the forward-auth listener (nginx flavour; no upstream leg)
#   assertion          the bearer route with [assertion] on (ES256, re-signed per lifetime/3)
#   tracing            the bearer route with [tracing] on, sample_ratio 1, spans exported
#                      over OTLP/HTTP to the bench upstream (which answers 200)
# Each case runs ROUNDS times in a rotated order; the report is the median of
# each and its ratio to Envoy and to nginx. Settings: DURATION (10s), WARMUP
# (2s), CONNS (32), THREADS (2), ROUNDS (3), CASES (all of the above), NO_BUILD.
#
#   bench/paths.sh                           # or DURATION=3s ROUNDS=1 bench/paths.sh (smoke)
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
CASES=${CASES:-envoy nginx bearer cookie redis redis_nocache forward_auth assertion tracing}
RUN=${RUN:-$ROOT/target/bench-paths}
rm -rf "$RUN"; mkdir -p "$RUN"

apt_need wrk wrk
apt_need redis-server redis-server
if [ "${NO_BUILD:-0}" != 1 ]; then
  cargo build --release --locked --bin authgear-gateway >&2 && cargo build --release --locked --example bench_upstream --example bench_issuer --example bench_session >&2  # apart: see lib.sh build()
fi
GW_BIN=${GW_BIN:-$REL/authgear-gateway}
need_peers
start_backends "$RUN" 1
KEY=$(head -c 32 /dev/urandom | base64)
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$RUN/assertion.pem" 2>/dev/null
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >"$RUN/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/"

# gateway NAME EXTRA_TOML: a gateway with the bearer and login routes plus
# EXTRA_TOML's sections; sets PORT_<NAME> (and FA_PORT for forward_auth).
gateway() {
  local name=$1 extra=$2 port admin
  port=$(free_port); admin=$(free_port)
  cat >"$RUN/gw-$name.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
shutdown_drain = "0s"

[admin]
listen = "127.0.0.1:$admin"

[upstream]
url = "http://127.0.0.1:$UP_PORT"

[auth]
issuer = "$ISS"

[headers]
"x-user-id" = "sub"

[log]
format = "json"
level = "warn"

$extra

[[routes]]
path = "/public/**"
auth = "public"

[[routes]]
path = "/api/**"
auth = "required"

[[routes]]
path = "/app/**"
method = "login"
TOML
  "$GW_BIN" --config "$RUN/gw-$name.toml" >"$RUN/gw-$name.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$admin/readyz"
  printf -v "PORT_$name" '%s' "$port"
}
login="[login]
public_origin = \"https://app.bench.test\"
client_id = \"bench\"
cookie_keys = [\"k1:$KEY\"]"
FA_PORT=$(free_port)
gateway main "$login

[forward_auth]
listen = \"127.0.0.1:$FA_PORT\"
trusted_proxies = [\"127.0.0.1\"]
flavour = \"nginx\""
gateway redis "$login
store = \"redis\"
redis_url = \"$REDIS_URL\"
redis_cache_ttl = \"2s\""
gateway redis_nocache "$login
store = \"redis\"
redis_url = \"$REDIS_URL\"
redis_cache_ttl = \"0s\""
gateway assertion "$login

[assertion]
issuer = \"https://gateway.bench.test\"
key_files = [\"$RUN/assertion.pem\"]"
gateway tracing "$login

[tracing]
enabled = true
endpoint = \"http://127.0.0.1:$UP_PORT/v1/traces\"
sample_ratio = 1.0"
ENVOY_PORT=$(free_port); start_envoy "$RUN" envoy "$ENVOY_PORT"
NGINX_PORT=$(free_port); start_nginx "$RUN" nginx "$NGINX_PORT"

COOKIE=$("$REL/examples/bench_session" __Host-agw_session k1 "$KEY" "$ONE")
RCOOKIE=$("$REL/examples/bench_session" __Host-agw_session k1 "$KEY" "$ONE" "$REDIS_URL")
BEARER=(-H "Authorization: Bearer $ONE")
# case NAME -> URL and wrk header options
case_args() {
  case $1 in
    envoy) ARGS=("http://127.0.0.1:$ENVOY_PORT/api/x" "${BEARER[@]}") ;;
    nginx) ARGS=("http://127.0.0.1:$NGINX_PORT/api/x" "${BEARER[@]}") ;;
    bearer) ARGS=("http://127.0.0.1:$PORT_main/api/x" "${BEARER[@]}") ;;
    cookie) ARGS=("http://127.0.0.1:$PORT_main/app/x" -H "Cookie: $COOKIE") ;;
    redis) ARGS=("http://127.0.0.1:$PORT_redis/app/x" -H "Cookie: $RCOOKIE") ;;
    redis_nocache) ARGS=("http://127.0.0.1:$PORT_redis_nocache/app/x" -H "Cookie: $RCOOKIE") ;;
    forward_auth) ARGS=("http://127.0.0.1:$FA_PORT/" "${BEARER[@]}" -H "X-Original-URL: http://app/api/x" -H "X-Original-Method: GET") ;;
    assertion) ARGS=("http://127.0.0.1:$PORT_assertion/api/x" "${BEARER[@]}") ;;
    tracing) ARGS=("http://127.0.0.1:$PORT_tracing/api/x" "${BEARER[@]}") ;;
    *) echo "unknown case $1" >&2; return 1 ;;
  esac
}
for c in $CASES; do
  case_args "$c"
  code=$(curl -s -o /dev/null -w '%{http_code}' "${ARGS[@]:1}" "${ARGS[0]}")
  case $code in 2??) ;; *) echo "case $c answered $code to its probe" >&2; exit 1 ;; esac
done

order=($CASES)
for r in $(seq 1 "$ROUNDS"); do
  for c in "${order[@]}"; do
    case_args "$c"
    wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "${ARGS[@]:1}" "${ARGS[0]}" >/dev/null 2>&1 || true
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${ARGS[@]:1}" "${ARGS[0]}" >"$RUN/wrk-$c-$r.txt" 2>&1
    grep -q Non-2xx "$RUN/wrk-$c-$r.txt" && echo "warning: $c had non-2xx answers in round $r" >&2
    echo "round $r $c $(awk '/^Requests\/sec:/ {print $2}' "$RUN/wrk-$c-$r.txt") req/s" >&2
  done
  order=("${order[@]:1}" "${order[0]}")
done

python3 - "$RUN" "$ROUNDS" $CASES <<'PY'
import re, statistics, sys
run, rounds, cases = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else float("nan")
rate, p50, p99 = {}, {}, {}
for c in cases:
    rs, a, b = [], [], []
    for r in range(1, rounds + 1):
        t = open(f"{run}/wrk-{c}-{r}.txt").read()
        rs.append(float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)))
        a.append(ms(re.search(r"\n\s+50%\s+(\S+)", t).group(1)))
        b.append(ms(re.search(r"\n\s+99%\s+(\S+)", t).group(1)))
    rate[c], p50[c], p99[c] = statistics.median(rs), statistics.median(a), statistics.median(b)
print(f"medians of {rounds} rounds, wrk closed loop, one token or one session cookie\n")
print("| case | req/s | p50 ms | p99 ms | /envoy | /nginx |")
print("|---|---:|---:|---:|---:|---:|")
for c in cases:
    e = "%.2f" % (rate[c] / rate["envoy"]) if "envoy" in rate else "-"
    n = "%.2f" % (rate[c] / rate["nginx"]) if "nginx" in rate else "-"
    print(f"| {c} | {rate[c]:.0f} | {p50[c]:.2f} | {p99[c]:.2f} | {e} | {n} |")
PY

#!/bin/bash
# Latency at equal offered load (open loop): oha with a fixed request rate
# (`-q`, with --latency-correction so a stalled target is not excused by
# requests it delayed), one token on /api/x over HTTP/1.1 keep-alive.
# 1. saturation: each target closed-loop (oha -c $CONNS) for $DURATION;
# 2. the slowest target's rate sets the loads: $LOADS percent of it;
# 3. at each load, every target in turn (order rotated per load): achieved
#    req/s, p50, p99, p99.9.
#
#   bench/openloop.sh                 # DURATION=10s per run
#   DURATION=2s bench/openloop.sh     # smoke
#
# oha comes from the peer kit (`WITH_OHA=1 setup.sh`, a cargo install).
# Settings: DURATION (10s), CONNS (32), LOADS (25 50 75), TARGETS (gateway envoy nginx),
# GW_BIN, RUN.
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
LOADS=${LOADS:-25 50 75}
TARGETS=${TARGETS:-gateway envoy nginx}
RUN=${RUN:-$ROOT/target/bench-openloop}

build
need_peers
need_oha
rm -rf "$RUN"; mkdir -p "$RUN"
start_backends "$RUN" 1

declare -A URL
for t in $TARGETS; do
  port=$(free_port)
  case $t in
    gateway) start_gateway "$RUN" gateway "$port" ;;
    envoy) start_envoy "$RUN" envoy "$port" ;;
    nginx) start_nginx "$RUN" nginx "$port" ;;
    *) echo "unknown target $t" >&2; exit 1 ;;
  esac
  URL[$t]=http://127.0.0.1:$port/api/x
  check_target "$t" "${URL[$t]}"
done

# summary FILE: "req/s p50 p99 p99.9 non2xx" from oha's JSON (latencies in ms).
summary() {
  python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p = d.get("latencyPercentilesSuccessful") or d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
# Requests still in flight when -z ends are "aborted due to deadline": not the target's fault.
errs = {e: n for e, n in d.get("errorDistribution", {}).items() if "deadline" not in e}
bad = sum(n for c, n in codes.items() if not c.startswith("2")) + sum(errs.values())
ms = lambda k: (p.get(k) or 0) * 1000
print("%.0f %.3f %.3f %.3f %d" % (d["summary"]["requestsPerSec"], ms("p50"), ms("p99"), ms("p99.9"), bad))
PY
}
oha_run() { # NAME URL [oha options]
  local name=$1 url=$2; shift 2
  "$OHA" --no-tui --output-format json -z "$DURATION" -H "Authorization: Bearer $ONE" "$@" "$url" >"$RUN/oha-$name.json" 2>"$RUN/oha-$name.err"
  summary "$RUN/oha-$name.json"
}

RESULTS=$RUN/results.txt
: >"$RESULTS"
for t in $TARGETS; do
  "$OHA" --no-tui --output-format quiet -z 2s -c "$CONNS" -H "Authorization: Bearer $ONE" "${URL[$t]}" >/dev/null 2>&1 || true
  echo "saturation $t $(oha_run "sat-$t" "${URL[$t]}" -c "$CONNS")" >>"$RESULTS"
done
SLOW=$(awk '$1=="saturation" {if (min == "" || $3 < min) {min = $3; who = $2}} END {print min, who}' "$RESULTS")
echo "slowest: $SLOW req/s" >&2
order=($TARGETS)
for load in $LOADS; do
  rate=$(awk -v s="${SLOW% *}" -v l="$load" 'BEGIN {printf "%d", s * l / 100}')
  for t in "${order[@]}"; do
    echo "load$load $t $rate $(oha_run "load$load-$t" "${URL[$t]}" -c "$CONNS" -q "$rate" --latency-correction)" >>"$RESULTS"
  done
  order=("${order[@]:1}" "${order[0]}")
done

echo
echo "## open loop ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores shared by oha, target and upstream; $DURATION per run, oha -c $CONNS)"
echo
echo "saturation (closed loop): $(awk '$1=="saturation" {printf "%s %s req/s; ", $2, $3}' "$RESULTS")slowest ${SLOW#* }"
echo
echo "| load | target | offered req/s | achieved req/s | p50 ms | p99 ms | p99.9 ms | non-2xx/errors |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
awk '$1 != "saturation" { printf "| %s%% | %s | %s | %s | %s | %s | %s | %s |\n", substr($1, 5), $2, $3, $4, $5, $6, $7, $8 }' "$RESULTS"
echo
awk '$1 != "saturation" { p99[$1" "$2] = $6; l[$1] = 1; t[$2] = 1 }
  END { for (x in l) { line = "- " substr(x, 5) "%: p99"; for (p in t) if (p != "gateway" && p99[x" "p] > 0) line = line sprintf(" gateway/%s %.2f", p, p99[x" gateway"] / p99[x" "p]); print line " (below 1 = gateway faster)" } }' "$RESULTS" | sort -n -k2
echo "- raw: $RUN"

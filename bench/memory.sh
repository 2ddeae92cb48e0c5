#!/bin/bash
# Resident memory (VmRSS; for nginx master + workers summed) of each target:
#   idle     after start and one authenticated request
#   conns    with IDLE_CONNS keep-alive connections, each served once, then idle
#   ws       with WS_CONNS open WebSockets through the target (upgrade on /public/ws)
# and, with SOAK set (gateway only), a soak: paced mixed load (bench/soak.lua:
# known, never-seen and bad tokens, public route, connection churn) for SOAK
# seconds, RSS sampled every SAMPLE seconds, growth reported from the first
# sample after the warm-up to the last.
#
#   bench/memory.sh                          # gateway envoy nginx, 10,000 conns
#   TARGETS=gateway SOAK=3600 bench/memory.sh # plus the hour-long soak
#   IDLE_CONNS=500 WS_CONNS=500 SOAK=120 SAMPLE=20 bench/memory.sh   # smoke
#
# Settings: TARGETS (gateway envoy nginx), IDLE_CONNS (10000), WS_CONNS
# (10000, capped by the open-file limit: a proxy holds two sockets per
# WebSocket), SOAK (0 = off), SAMPLE (60), SOAK_CONNS (8), SOAK_DELAY_MS (4:
# at most SOAK_CONNS*1000/SOAK_DELAY_MS req/s; the report gives the rate
# reached), FRESH_TOKENS (100000), GW_BIN
# (a gateway binary instead of the release build, e.g. another allocator), RUN.
source "$(dirname "$0")/lib.sh"
TARGETS=${TARGETS:-gateway envoy nginx}
IDLE_CONNS=${IDLE_CONNS:-10000}
WS_CONNS=${WS_CONNS:-10000}
SOAK=${SOAK:-0}
SAMPLE=${SAMPLE:-60}
SOAK_CONNS=${SOAK_CONNS:-8}
SOAK_DELAY_MS=${SOAK_DELAY_MS:-4}
FRESH_TOKENS=${FRESH_TOKENS:-100000}
RUN=${RUN:-$ROOT/target/bench-memory}

# Two sockets per WebSocket in the proxy, plus listeners and the pool.
LIMIT=$(ulimit -n)
MAX_WS=$(((LIMIT - 200) / 2))
if [ "$WS_CONNS" -gt "$MAX_WS" ]; then
  echo "note: open-file limit $LIMIT (hard $(ulimit -Hn)) allows $MAX_WS WebSockets through a proxy, not $WS_CONNS" >&2
  WS_CONNS=$MAX_WS
fi
[ "$IDLE_CONNS" -lt "$((LIMIT - 200))" ] || IDLE_CONNS=$((LIMIT - 200))

apt_need wrk wrk
build
case " $TARGETS " in *" envoy "* | *" nginx "*) need_peers ;; esac
rm -rf "$RUN"; mkdir -p "$RUN"
[ "$SOAK" = 0 ] || export TOKEN_TTL=$((SOAK + 900))
start_backends "$RUN" "$([ "$SOAK" = 0 ] && echo 1 || echo "$FRESH_TOKENS")"

# settle PID NAME: waits until the target's idle connections are parked
# (gateway) and, for every target, 6 s more for freed memory to go back.
settle() {
  if [ "$2" = gateway ]; then
    local i
    for i in $(seq 1 100); do
      [ "$(curl -s "http://127.0.0.1:$GW_ADMIN/metrics" | awk '$1=="authgear_gateway_parked_connections" {print $2}')" = "$3" ] && break
      sleep 0.1
    done
  fi
  sleep 6
}

# open_conns PORT N PATH [ws]: starts bench_conns, waits until all are open.
open_conns() {
  "$REL/examples/bench_conns" "127.0.0.1:$1" "$2" "$3" ${4:-} >"$RUN/conns.log" 2>&1 &
  CONNS_PID=$!; PIDS+=($!)
  local i
  for i in $(seq 1 6000); do
    grep -q "connections open" "$RUN/conns.log" 2>/dev/null && break
    kill -0 "$CONNS_PID" 2>/dev/null || { echo "bench_conns died: $(tail -3 "$RUN/conns.log")" >&2; return 1; }
    sleep 0.1
  done
  OPENED=$(awk '/connections open/ {print $1}' "$RUN/conns.log")
  [ -n "$OPENED" ] || { echo "warning: not all connections opened within 10 min" >&2; OPENED=0; }
  cp "$RUN/conns.log" "$RUN/conns-$t-${4:-http}.log"
  if grep -q unexpected "$RUN/conns.log"; then echo "warning: $(grep -c unexpected "$RUN/conns.log") unexpected answers ($RUN/conns.log)" >&2; fi
}
close_conns() { kill "$CONNS_PID" 2>/dev/null || true; wait "$CONNS_PID" 2>/dev/null || true; }

RESULTS=$RUN/results.txt
: >"$RESULTS"
for t in $TARGETS; do
  port=$(free_port)
  case $t in
    gateway) start_gateway "$RUN" gateway "$port"; pid=$GW_PID ;;
    envoy) start_envoy "$RUN" envoy "$port"; pid=$ENVOY_PID ;;
    nginx) start_nginx "$RUN" nginx "$port"; pid=$NGINX_PID ;;
    *) echo "unknown target $t" >&2; exit 1 ;;
  esac
  check_target "$t" "http://127.0.0.1:$port/api/x"
  sleep 2
  idle=$(tree_kb "$pid")
  [ "$t" != gateway ] || GW_IDLE_SPLIT="anonymous $(kb "$pid" RssAnon) kB, file-backed $(kb "$pid" RssFile) kB"
  open_conns "$port" "$IDLE_CONNS" /public/x
  settle "$pid" "$t" "$OPENED"
  conns=$(tree_kb "$pid"); conns_n=$OPENED
  close_conns; sleep 3
  after=$(tree_kb "$pid")
  open_conns "$port" "$WS_CONNS" /public/ws ws
  settle "$pid" "$t-ws" "$OPENED"
  ws=$(tree_kb "$pid"); ws_n=$OPENED
  close_conns
  echo "$t $idle $conns $conns_n $after $ws $ws_n" >>"$RESULTS"
  if [ "$t" = gateway ] && [ "$SOAK" != 0 ]; then
    echo "soak: $SOAK s, $SOAK_CONNS connections paced by $SOAK_DELAY_MS ms, RSS every $SAMPLE s..." >&2
    wrk -t1 -c"$SOAK_CONNS" -d"${SOAK}s" -s bench/soak.lua "http://127.0.0.1:$port" -- \
      "$TOKENS/pool.txt" "$TOKENS/fresh.txt" "$SOAK_DELAY_MS" >"$RUN/soak-wrk.txt" 2>&1 &
    WRK_PID=$!; PIDS+=($!)
    : >"$RUN/soak.txt"
    start=$(date +%s)
    while kill -0 "$WRK_PID" 2>/dev/null; do
      sleep "$SAMPLE"
      kill -0 "$WRK_PID" 2>/dev/null || break
      echo "$(($(date +%s) - start)) $(kb "$pid" VmRSS)" | tee -a "$RUN/soak.txt" >&2
    done
    wait "$WRK_PID" || true
    sleep 6
    soak_after=$(kb "$pid" VmRSS)
  fi
  kill "$pid"; wait "$pid" 2>/dev/null || true
done

echo
echo "## memory ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, RSS in MB, nginx = master + $GW_WORKERS workers)"
echo
echo "| target | idle | $IDLE_CONNS keep-alive conns, idle | per conn | after they close | $WS_CONNS WebSockets | per WebSocket |"
echo "|---|---:|---:|---:|---:|---:|---:|"
awk '{ printf "| %s | %.1f | %.1f (%d open) | %.1f KB | %.1f | %.1f (%d open) | %.1f KB |\n", $1, $2/1024, $3/1024, $4, ($4 ? ($3-$2)/$4 : 0), $5/1024, $6/1024, $7, ($7 ? ($6-$5)/$7 : 0) }' "$RESULTS"
if [ "$SOAK" != 0 ] && [ -s "$RUN/soak.txt" ]; then
  echo
  reqs=$(awk '/requests in/ {print $1}' "$RUN/soak-wrk.txt")
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$RUN/soak-wrk.txt")
  echo "soak: ${SOAK} s of mixed load, ${reqs:-?} requests (${rps:-?} req/s), RSS every ${SAMPLE} s:"
  awk -v after="$soak_after" '
    { t[NR]=$1; r[NR]=$2; if ($2>max) max=$2 }
    END {
      first = (NR >= 3 ? 2 : 1)
      printf "- samples: %d; first after warm-up (t=%ds) %.1f MB, last (t=%ds) %.1f MB, max %.1f MB, 6 s after the load %.1f MB\n", NR, t[first], r[first]/1024, t[NR], r[NR]/1024, max/1024, after/1024
      # least-squares slope over the samples after the warm-up
      n=0; for (i=first; i<=NR; i++) { n++; sx+=t[i]; sy+=r[i]; sxx+=t[i]*t[i]; sxy+=t[i]*r[i] }
      slope = (n > 1 && (n*sxx-sx*sx) != 0) ? (n*sxy-sx*sy)/(n*sxx-sx*sx) : 0
      printf "- growth: %+.1f MB first-to-last; trend %+.2f MB per hour (least squares)\n", (r[NR]-r[first])/1024, slope*3600/1024
    }' "$RUN/soak.txt"
  awk '/Non-2xx/ {print "- non-2xx answers (the bad-token tenth is meant to fail): " $5}' "$RUN/soak-wrk.txt"
fi
[ -z "${GW_IDLE_SPLIT:-}" ] || echo "- gateway idle: $GW_IDLE_SPLIT (the file-backed part is mostly its code, see build.rs)"
if [ -s "$ROOT/linker/text-order.txt" ]; then
  listed=$(grep -v '^#' "$ROOT/linker/text-order.txt" | sort -u)
  present=$(comm -12 <(echo "$listed") <(nm --defined-only "$GW_BIN" 2>/dev/null | awk '{print $3}' | sort -u) | wc -l)
  echo "- linker/text-order.txt: $present of $(echo "$listed" | wc -l) listed functions are in this binary (far fewer: run bench/text_order.sh)"
fi
echo "- raw: $RUN"

#!/bin/bash
# Never-seen tokens in paired rounds, with the access log on and off on both
# sides: the gateway against nginx + Lua doing the same work.
#
# On a machine the load generator and the upstream share, one target's
# closed-loop rate moves by up to 30% from one minute to the next, so two
# separate runs cannot show a 10% difference. Here each round runs every
# target once, back to back (the order reversed on even rounds), and each
# ratio is the median over the rounds of that round's ratio; the ratio of
# the targets' best rounds is printed beside it.
#
# Targets (wrk -t$THREADS -c$CONNS -d$DURATION, bench/fresh.lua on /api/x):
#   gateway        its access log on: [log] level "info", a JSON line per
#                  request to a file (as deployed)
#   gateway-quiet  its access log off (level "warn")
#   nginx          nginx + Lua as the peer kit runs it: access_log off
#   nginx-log      nginx + Lua logging the gateway's fields as JSON to a
#                  file through a 64 KB buffer (NGINX_ACCESS_LOG in lib.sh)
# Each gateway starts afresh before each of its runs, so its token cache is
# empty and every token is new to it; nginx + Lua caches keys, not tokens.
#
#   bench/paired.sh                        # 9 rounds of 4 s per target
#   ROUNDS=3 DURATION=2s bench/paired.sh   # smoke
#
# Both write their logs to RUN, by default in /dev/shm: this compares what a
# log line costs the process, not how the disk absorbs 100 MB a minute (on
# the VM's disk, writeback stalls cut single runs of either by half).
#
# Settings: ROUNDS (9), DURATION (4s), CONNS (32), THREADS (2),
# FRESH_TOKENS (150000: more than one run sends), TARGETS, GW_BIN, RUN
# (/dev/shm/authgear-bench-paired; the logs and tokens are deleted at the end).
source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-9}
DURATION=${DURATION:-4s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
FRESH_TOKENS=${FRESH_TOKENS:-150000}
TARGETS=${TARGETS:-gateway gateway-quiet nginx nginx-log}
SHM=/dev/shm
[ -d "$SHM" ] || SHM=$ROOT/target
RUN=${RUN:-$SHM/authgear-bench-paired}

apt_need wrk wrk
build
need_peers
rm -rf "$RUN"; mkdir -p "$RUN"
echo "minting $FRESH_TOKENS tokens..." >&2
start_backends "$RUN" "$FRESH_TOKENS"

declare -A PORT GWPID
for t in $TARGETS; do
  case $t in
    gateway | gateway-quiet) ;;
    nginx) PORT[$t]=$(free_port); start_nginx "$RUN" "$t" "${PORT[$t]}" ;;
    nginx-log) PORT[$t]=$(free_port); NGINX_ACCESS_LOG=1 start_nginx "$RUN" "$t" "${PORT[$t]}" ;;
    *) echo "unknown target $t" >&2; exit 1 ;;
  esac
done

# start_target T: a gateway gets a new process on a new port (an empty token
# cache); the others keep running.
start_target() {
  local t=$1
  case $t in
    gateway | gateway-quiet)
      [ -z "${GWPID[$t]:-}" ] || { kill "${GWPID[$t]}"; wait "${GWPID[$t]}" 2>/dev/null || true; }
      PORT[$t]=$(free_port)
      local level=info
      [ "$t" = gateway ] || level=warn
      GW_LOG=$level start_gateway "$RUN" "$t" "${PORT[$t]}"
      GWPID[$t]=$GW_PID
      ;;
  esac
  check_target "$t" "http://127.0.0.1:${PORT[$t]}/api/x"
}

RESULTS=$RUN/rounds.txt
: >"$RESULTS"
read -ra ORDER <<<"$TARGETS"
for r in $(seq 1 "$ROUNDS"); do
  order=("${ORDER[@]}")
  if [ $((r % 2)) = 0 ]; then
    order=()
    for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do order+=("${ORDER[i]}"); done
  fi
  line="$r"
  for t in "${order[@]}"; do
    start_target "$t"
    out=$RUN/wrk-$r-$t.txt
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" -s bench/fresh.lua "http://127.0.0.1:${PORT[$t]}/api/x" -- "$TOKENS/fresh.txt" "$THREADS" >"$out" 2>&1
    ! grep -q Non-2xx "$out" || echo "warning: $t answered non-2xx in round $r ($out)" >&2
    [ "$(awk -F= '/^FRESH reused=/ {print $2}' "$out")" = 0 ] || echo "warning: $t reused tokens in round $r: raise FRESH_TOKENS" >&2
    line="$line $t=$(awk '/^Requests\/sec:/ {print $2}' "$out")"
  done
  echo "round $line" >&2
  echo "$line" >>"$RESULTS"
done

echo
echo "## Never-seen tokens, paired rounds ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $ROUNDS rounds, wrk -t$THREADS -c$CONNS -d$DURATION)"
echo
python3 - "$RESULTS" <<'PY'
import statistics, sys
rounds = []
for line in open(sys.argv[1]):
    parts = line.split()
    rounds.append({k: float(v) for k, v in (p.split("=") for p in parts[1:])})
names = list(rounds[0])
print("| target | median req/s | min | max |")
print("|---|---:|---:|---:|")
for n in names:
    v = [r[n] for r in rounds]
    print(f"| {n} | {statistics.median(v):.0f} | {min(v):.0f} | {max(v):.0f} |")
pairs = [
    ("gateway", "nginx", "as the peer kit runs them: the gateway logs, nginx + Lua does not"),
    ("gateway", "nginx-log", "both log every request"),
    ("gateway-quiet", "nginx", "neither logs"),
    ("gateway-quiet", "gateway", "what the gateway's access log costs"),
    ("nginx", "nginx-log", "what nginx's access log costs"),
]
# A burst of load from outside slows whatever runs then, never speeds it up:
# each target's best round is its least disturbed one.
best = {n: max(r[n] for r in rounds) for n in names}
print()
print("| ratio | median of the rounds' ratios | min | max | of the best rounds | compares |")
print("|---|---:|---:|---:|---:|---|")
for a, b, what in pairs:
    if a in names and b in names:
        q = [r[a] / r[b] for r in rounds]
        print(f"| {a} / {b} | {statistics.median(q):.2f} | {min(q):.2f} | {max(q):.2f} | {best[a] / best[b]:.2f} | {what} |")
PY
rm -rf "$RUN"/*.log "$TOKENS"
echo
echo "- per-round figures and wrk output: $RUN"

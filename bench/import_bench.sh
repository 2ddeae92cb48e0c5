#!/usr/bin/env bash
# Benchmark (not a test): validate and pack N generated rows (default 1,000,000)
# with the release binary, then print rows/s and peak RSS.
#
#   bash bench/import_bench.sh [ROWS]
#
# Uses CARGO_TARGET_DIR if set. The generated CSV (~110 bytes a row) goes to a
# temporary folder that is removed afterwards.
set -euo pipefail
ROWS="${1:-1000000}"
cd "$(dirname "$0")/.."
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --release --bin authgear-import >&2
BIN="$TARGET/release/authgear-import"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

HASH='$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy'
# Every 1000th row carries a problem so the error paths are exercised too.
awk -v n="$ROWS" -v h="$HASH" 'BEGIN {
  print "Email,Email Verified,Name,Given Name,Family Name,Roles,Password Hash";
  for (i = 0; i < n; i++) {
    email = (i % 1000 == 999) ? "broken-" i : "user" i "@example.com";
    printf "%s,%s,User %d,User,Number%d,\"member,reader\",%s\n", email, (i % 2 ? "true" : "false"), i, i, h;
  }
}' > "$WORK/users.csv"
echo "input: $ROWS rows, $(du -h "$WORK/users.csv" | cut -f1)" >&2

run() { "$BIN" validate --input "$WORK/users.csv" --report "$WORK/report.csv" --show 0 >/dev/null 2>"$WORK/out.txt"; }

START=$(date +%s.%N)
if [ -x /usr/bin/time ]; then
  set +e
  /usr/bin/time -v -o "$WORK/time.txt" "$BIN" validate --input "$WORK/users.csv" --report "$WORK/report.csv" --show 0 >/dev/null 2>"$WORK/out.txt"
  RC=$?
  set -e
  PEAK_KB=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$WORK/time.txt")
else
  # Fallback: sample VmHWM from /proc while the process runs.
  set +e
  run &
  PID=$!
  PEAK_KB=0
  while kill -0 "$PID" 2>/dev/null; do
    V=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status" 2>/dev/null || echo 0)
    [ "${V:-0}" -gt "$PEAK_KB" ] && PEAK_KB=$V
    sleep 0.05
  done
  wait "$PID"; RC=$?
  set -e
fi
END=$(date +%s.%N)
# Exit 2 is expected: the broken rows are reported as invalid.
[ "$RC" = 2 ] || { cat "$WORK/out.txt" >&2; echo "unexpected exit code $RC" >&2; exit 1; }
grep -E "rows read|valid:|invalid:" "$WORK/out.txt" >&2
awk -v r="$ROWS" -v s="$START" -v e="$END" -v p="$PEAK_KB" 'BEGIN {
  t = e - s; printf "rows: %d  time: %.2f s  rows/s: %.0f  peak RSS: %.1f MiB\n", r, t, r / t, p / 1024
}'

#!/bin/bash
# The allocator A/B: the default build (system malloc + the workers' 8 KiB
# stash + glibc tuning, src/runtime/memory.rs) against the `mimalloc` and
# `jemalloc` cargo features, each through bench/run.sh (throughput of every
# case, idle RSS, RSS with 10,000 idle keep-alive connections), ROUNDS rounds
# with the order rotated each round (A B C, B C A, ...), then the median of
# every figure per allocator.
#
#   bench/alloc_ab.sh                         # 3 rounds, run.sh's DURATION (10s)
#   ROUNDS=1 DURATION=2s FRESH_TOKENS=20000 bench/alloc_ab.sh   # smoke
#
# Settings: VARIANTS (system glibc mimalloc jemalloc; glibc = its malloc untouched), ROUNDS (3), OUT, NO_BUILD, and all of
# bench/run.sh's (DURATION, CONNS, THREADS, IDLE_CONNS, FRESH_TOKENS, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
REL=$CARGO_TARGET_DIR/release
VARIANTS=${VARIANTS:-system glibc mimalloc jemalloc}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-$ROOT/target/bench-alloc}
mkdir -p "$OUT"

for v in $VARIANTS; do
  # NO_BUILD=1 reuses the copies a previous run left.
  [ "${NO_BUILD:-0}" = 1 ] && [ -x "$REL/authgear-gateway-$v" ] && continue
  feat=()
  [ "$v" = system ] || feat=(--features "$v")
  echo "building the gateway with the $v allocator..." >&2
  cargo build --release --locked --bin authgear-gateway "${feat[@]}" >&2
  cp "$REL/authgear-gateway" "$REL/authgear-gateway-$v"
done
# Leave the default build in place for the other scripts.
[ "${NO_BUILD:-0}" = 1 ] || cargo build --release --locked --bin authgear-gateway >&2

order=($VARIANTS)
for r in $(seq 1 "$ROUNDS"); do
  for v in "${order[@]}"; do
    echo "round $r: $v" >&2
    GW_BIN=$REL/authgear-gateway-$v RUN=$OUT/run-$v-$r bench/run.sh >"$OUT/report-$v-$r.md"
  done
  order=("${order[@]:1}" "${order[0]}")
done

python3 - "$OUT" $VARIANTS <<'PY'
import re, statistics, sys, glob, os
out, variants = sys.argv[1], sys.argv[2:]
def figures(path):
    f = {}
    for line in open(path):
        m = re.match(r"\| ([a-z0-9_]+) \| (\d+) \|", line)
        if m:
            f[m.group(1)] = float(m.group(2))
        m = re.match(r"- idle RSS after start: ([\d.]+) MB", line)
        if m:
            f["idle RSS MB"] = float(m.group(1))
        m = re.search(r"open keep-alive connections.*?; ([\d.]+) MB once idle", line)
        if m:
            f["10k conns RSS MB"] = float(m.group(1))
        m = re.search(r"connections, each served once: ([\d.]+) MB when the last opened", line)
        if m:
            f["10k conns RSS at open MB"] = float(m.group(1))
    return f
runs = {v: [figures(p) for p in sorted(glob.glob(os.path.join(out, f"report-{v}-*.md")))] for v in variants}
keys = []
for v in variants:
    for f in runs[v]:
        for k in f:
            if k not in keys:
                keys.append(k)
med = {v: {k: statistics.median([f[k] for f in runs[v] if k in f]) for k in keys if any(k in f for f in runs[v])} for v in variants}
print(f"## allocator A/B (medians of {min(len(r) for r in runs.values())} rounds, bench/run.sh, rotated order)\n")
print("| figure | " + " | ".join(variants) + " | " + " | ".join(f"{v}/{variants[0]}" for v in variants[1:]) + " |")
print("|---|" + "---:|" * (2 * len(variants) - 1))
for k in keys:
    vals = [med[v].get(k) for v in variants]
    base = vals[0]
    cells = [("%.1f" % x if "MB" in k else "%.0f" % x) if x is not None else "?" for x in vals]
    ratios = ["%.2f" % (x / base) if x and base else "?" for x in vals[1:]]
    label = k if "MB" in k else k + " req/s"
    print(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
print(f"\nper-round reports: {out}/report-*.md")
PY

#!/usr/bin/env bash
# Coverage-guided fuzzing with cargo-afl (stable Rust).
#
#   fuzz/run.sh TARGET SECONDS   build, fuzz one target for SECONDS, print its figures
#   fuzz/run.sh all SECONDS      every target in turn, SECONDS each
#   fuzz/run.sh keep TARGET      minimise AFL's queue (cmin) into fuzz/corpus/TARGET
#   fuzz/run.sh stats TARGET     print the figures of the last run again
#
# Needs `cargo install cargo-afl` (its AFL++ is built on install, or by
# `cargo afl config --build`). Output goes to fuzz/out/TARGET (not committed).
set -euo pipefail
cd "$(dirname "$0")"

TARGETS=(path_normalize auth_token claim_render config_load session_cookies resolver_headers import_reader import_mapping forward_headers)
MAX_KEPT=200

usage() {
  sed -n '4,7p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

known() {
  local t
  for t in "${TARGETS[@]}"; do [[ $t == "$1" ]] && return 0; done
  echo "unknown target: $1 (one of: ${TARGETS[*]})" >&2
  exit 2
}

build() {
  cargo afl build --release --locked --bins 2>&1 | tail -n 3
}

stat_of() {
  # fuzzer_stats lines look like `execs_done        : 12345`.
  awk -F' *: *' -v k="$2" '$1 == k { print $2 }' "out/$1/default/fuzzer_stats"
}

stats() {
  local t=$1 f="out/$1/default/fuzzer_stats"
  [[ -f $f ]] || { echo "$t: no fuzzer_stats (did it run?)" >&2; return 1; }
  printf '%-17s execs=%s exec/s=%s corpus=%s bitmap=%s crashes=%s hangs=%s run_time=%ss\n' "$t" \
    "$(stat_of "$t" execs_done)" "$(stat_of "$t" execs_per_sec)" "$(stat_of "$t" corpus_count)" \
    "$(stat_of "$t" bitmap_cvg)" "$(stat_of "$t" saved_crashes)" "$(stat_of "$t" saved_hangs)" "$(stat_of "$t" run_time)"
  local found
  found=$(find "out/$t/default/crashes" "out/$t/default/hangs" -type f -name 'id:*' 2>/dev/null || true)
  if [[ -n $found ]]; then
    echo "  findings (replay: cargo test --test fuzz_corpus_replay after copying into corpus/$t/):"
    echo "$found" | sed 's/^/    /'
  fi
}

fuzz_one() {
  local t=$1 secs=$2
  rm -rf "out/$t"
  mkdir -p out
  # No UI (a log instead), no CPU-governor check, and seeds that time out
  # on a slow shared machine are skipped rather than fatal. A fixed 1 s
  # timeout: AFL's own guess from the seeds turned load spikes into hangs.
  AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_IGNORE_SEED_PROBLEMS=1 \
    cargo afl fuzz -V "$secs" -t 1000 -i "corpus/$t" -o "out/$t" -- "target/release/$t" >"out/$t.log" 2>&1 || {
      echo "$t: afl-fuzz failed, see fuzz/out/$t.log" >&2
      tail -n 20 "out/$t.log" >&2
      return 1
    }
  stats "$t"
}

keep() {
  local t=$1 tmp
  tmp=$(mktemp -d)
  # Union of the committed corpus and AFL's queue, minimised to the files
  # that still add coverage; named by content so reruns do not duplicate.
  mkdir -p "$tmp/in"
  cp "corpus/$t"/* "$tmp/in/"
  find "out/$t/default/queue" -maxdepth 1 -type f -name 'id:*' -exec cp {} "$tmp/in/" \; 2>/dev/null || true
  for f in "$tmp/in"/id:*; do [[ -f $f ]] && mv "$f" "$tmp/in/afl-$(sha1sum "$f" | cut -c1-12)"; done
  # The shell afl-cmin: AFL++ 4.40's Python one recorded no tuples at all
  # for these binaries and kept nothing.
  local bin
  bin=$(ls -dt "${XDG_DATA_HOME:-$HOME/.local/share}"/afl.rs/rustc-*/afl.rs-*/afl/bin | head -n 1)
  AFL_SKIP_CPUFREQ=1 AFL_PATH="$bin" PATH="$bin:$PATH" "$bin/afl-cmin.bash" -i "$tmp/in" -o "$tmp/min" -- "target/release/$t" >"$tmp/cmin.log" 2>&1 || {
    tail -n 20 "$tmp/cmin.log" >&2
    return 1
  }
  # Hand-written seeds and crash regressions always stay; AFL's finds are
  # replaced by this minimised set, smallest first, up to MAX_KEPT in all.
  rm -f "corpus/$t"/afl-*
  local room n
  room=$((MAX_KEPT - $(find "corpus/$t" -type f | wc -l)))
  n=$(find "$tmp/min" -type f -name 'afl-*' | wc -l)
  ((n <= room)) || echo "$t: cmin kept $n AFL finds, room for $room; keeping the smallest" >&2
  find "$tmp/min" -type f -name 'afl-*' -printf '%s %p\n' | sort -n | head -n "$room" | cut -d' ' -f2- | while read -r f; do
    cp "$f" "corpus/$t/"
  done
  echo "$t: corpus/$t now has $(find "corpus/$t" -type f | wc -l) files"
  rm -rf "$tmp"
}

[[ $# -ge 2 ]] || usage
case $1 in
  all)
    build
    for t in "${TARGETS[@]}"; do fuzz_one "$t" "$2"; done
    ;;
  keep) known "$2"; keep "$2" ;;
  stats) known "$2"; stats "$2" ;;
  *)
    known "$1"
    build
    fuzz_one "$1" "$2"
    ;;
esac

#!/usr/bin/env bash
# A short fuzzing run for CI: `bash fuzz/run_ci.sh [SECONDS]` (default 60).
# Exits 0 with a message when atheris cannot be installed; non-zero when the fuzzer finds a crash
# (the input is left as crash-<sha1> in the work directory printed below, and its bytes in the log).
set -uo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"

if ! python3 -c "import atheris" 2>/dev/null; then
  python3 -m pip install -q "atheris>=2.3" >/dev/null 2>&1 || true
  if ! python3 -c "import atheris" 2>/dev/null; then
    echo "fuzz: skipped: atheris is not installable here (it needs a clang/libFuzzer build or a wheel for this Python)"
    exit 0
  fi
fi

# Three targets share the time: the whole pipeline from capture bytes, the packets alone, and the
# file path (compressed or not, cut, damaged) with main() in every output format.
repo="$PWD"
work="$(mktemp -d -t wsadiag-fuzz-XXXXXX)"
# The targets' own temporary directories (seed links, written files) go inside it too, so a run
# that finds nothing leaves nothing behind; a crash keeps the whole directory for the replay.
mkdir -p "$work/tmp"
half=$(( seconds / 3 > 1 ? seconds / 3 : 1 ))
for target in fuzz_pipeline fuzz_frames fuzz_cli; do
  echo "fuzz: running $target for ${half}s in $work"
  (cd "$work" && TMPDIR="$work/tmp" python3 "$repo/fuzz/$target.py" -max_total_time="$half" -timeout=20 -rss_limit_mb=4096 \
    -print_final_stats=1 "$work/$target-corpus") >"$work/$target.log" 2>&1
  rc=$?
  grep -E "^stat::number_of_executed_units|Done [0-9]+ runs" "$work/$target.log" || true
  if [ "$rc" -ne 0 ]; then
    echo "fuzz: $target FAILED (exit $rc); the end of the log:"
    tail -40 "$work/$target.log"
    ls "$work"/crash-* "$work"/timeout-* "$work"/oom-* 2>/dev/null
    exit "$rc"
  fi
done
echo "fuzz: no crash"
rm -rf "$work"

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

work="$(mktemp -d -t wsadiag-fuzz-XXXXXX)"
harness="$PWD/fuzz/fuzz_pipeline.py"
echo "fuzz: running the pipeline fuzzer for ${seconds}s in $work"
(cd "$work" && python3 "$harness" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
  -print_final_stats=1 "$work/corpus") >"$work/fuzz.log" 2>&1
rc=$?
grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|Done [0-9]+ runs" "$work/fuzz.log" || true
if [ "$rc" -ne 0 ]; then
  echo "fuzz: FAILED (exit $rc); the end of the log:"
  tail -40 "$work/fuzz.log"
  ls "$work"/crash-* "$work"/timeout-* "$work"/oom-* 2>/dev/null
  exit "$rc"
fi
echo "fuzz: no crash"

#!/bin/bash
# Builds the libFuzzer targets of this package with AddressSanitizer and runs each for FUZZ_SECONDS (default 60).
#   Tests/Fuzz/run.sh [Target…]        all four targets when none is named
# Everything it writes stays in Tests/Fuzz/.build-fuzz (ignored by git): the build, the working corpora
# (seeded from Corpus/<Target>, which is never written to), logs, and crash artifacts.
# Exits non-zero if a target crashed, ran out of memory or timed out; the input is in .build-fuzz/artifacts/<Target>/.
set -euo pipefail

cd "$(dirname "$0")"
SWIFT=${SWIFT:-swift}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
BUILD=.build-fuzz
# Swift's own crash backtracer trips ASan in its memory server; let libFuzzer print the stack instead.
export SWIFT_BACKTRACE=${SWIFT_BACKTRACE:-enable=no}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(FuzzEnvelope FuzzIntake FuzzIdentityFile FuzzReceipt)

# SwiftPM's --sanitize=fuzzer links libFuzzer's main, but does not pass it to swiftc, hence -Xswiftc too:
# without it no Swift code is instrumented for coverage. ld.gold warns about every ASan helper; those lines are dropped.
echo "Building ${TARGETS[*]} (debug, fuzzer + address sanitizers) in Tests/Fuzz/$BUILD"
nice -n 10 "$SWIFT" build -c debug --build-path "$BUILD" --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer \
    2>&1 | { grep -v "ld.gold: warning: Cannot export local symbol" || true; }
bin=$BUILD/debug

failed=()
for target in "${TARGETS[@]}"; do
    corpus=$BUILD/corpus/$target
    artifacts=$BUILD/artifacts/$target
    log=$BUILD/logs/$target.log
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    cp Corpus/"$target"/* "$corpus"/
    status=0
    nice -n 10 "$bin/$target" "$corpus" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    coverage=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -n 1 || true)
    corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -n 1 || true)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
    printf '%-17s execs: %-9s %-20s %-16s peak rss: %4s MB  exit: %s\n' \
        "$target" "${execs:-?}" "${coverage:-cov: ?}" "${corp:-corp: ?}" "${rss:-?}" "$status"
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        grep -E 'ERROR: libFuzzer|ERROR: AddressSanitizer|Fatal error|failed: |Test unit written|SUMMARY' "$log" | sed 's/^/    /' || true
        grep -m 6 -E '^ +#[0-9]+ .*/Sources/.*\.swift:' "$log" | sed 's/^/    /' || true
        echo "    full log: Tests/Fuzz/$log"
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}; reproduce with Tests/Fuzz/$BUILD/debug/<Target> <artifact>" >&2
    exit 1
fi
echo "No crashes in ${TARGETS[*]} (${FUZZ_SECONDS}s each)."

#!/bin/sh
# Runs every libFuzzer target in FUZZ_BUILD for SECONDS each over a temporary
# copy of its seed corpus (tests/fuzz/corpus/<name>/, so the repository is
# never modified) with its dictionary (tests/fuzz/dict/<name>.dict), and prints
# one line per target with its executions and final coverage, then
#   tests (FUZZ_BUILD): N passed, N failed
# where N counts targets. A target fails when libFuzzer exits non-zero (a
# crash, a failed assertion, a sanitizer report, a leak, a timeout or an
# out-of-memory); its output is printed and the crashing input is named.
#   sh tests/fuzz/run.sh build/fuzz 5
set -u
FUZZ_BUILD=${1:-build/fuzz}
SECONDS_EACH=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
passed=0 failed=0 bad=""
for t in $(find "$FUZZ_BUILD" -maxdepth 1 -type f -name 'fuzz_*' -perm -u+x | sort); do
    name=$(basename "$t")
    name=${name#fuzz_}
    work=$(mktemp -d)
    mkdir -p "$work/corpus" "$work/artifacts"
    [ -d "$here/corpus/$name" ] && cp "$here/corpus/$name"/* "$work/corpus/" 2>/dev/null
    dict=""
    [ -f "$here/dict/$name.dict" ] && dict="-dict=$here/dict/$name.dict"
    # -timeout: one input taking over 10 s is a hang; -rss_limit_mb bounds
    # memory; -max_len keeps inputs the size of what a peer can send at once.
    "$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
        -print_final_stats=1 -artifact_prefix="$work/artifacts/" $dict \
        "$work/corpus" >"$work/log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$work/log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$work/log" | tail -n 1)
    cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    if [ "$rc" -eq 0 ] && ! grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$work/log"; then
        passed=$((passed + 1))
        echo "fuzz $name: ok, ${execs:-?} executions in ${SECONDS_EACH}s, cov: ${cov:-?} ft: ${ft:-?}"
    else
        failed=$((failed + 1))
        bad="$bad $name"
        cat "$work/log"
        echo "fuzz $name: FAILED (rc=$rc); input: $(ls "$work/artifacts" 2>/dev/null | head -n 1)"
        # Keep the crashing input where a developer can replay it:
        #   $FUZZ_BUILD/fuzz_<name> <file>
        mkdir -p "$FUZZ_BUILD/artifacts/$name"
        cp "$work/artifacts"/* "$FUZZ_BUILD/artifacts/$name/" 2>/dev/null
    fi
    rm -rf "$work"
done
[ -n "$bad" ] && echo "failing fuzz targets:$bad"
echo "tests ($FUZZ_BUILD): $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]

#!/bin/sh
# Runs every test binary under BUILD/tests and prints one closing line:
#   tests: N passed, N failed
# Exits non-zero when any test fails, any binary exits non-zero (a crash) or
# prints a sanitizer report (an error or a leak).
set -u
BUILD=${1:-build}
SLUICE_BUILD=$(cd "$BUILD" && pwd)
export SLUICE_BUILD
# The shim follows https_proxy / no_proxy (docs/shim.md): the machine's own
# proxy settings must not reach the gateways on loopback. Tests that need a
# proxy set these themselves.
unset https_proxy HTTPS_PROXY no_proxy NO_PROXY http_proxy HTTP_PROXY all_proxy ALL_PROXY
passed=0 failed=0 bad=""
for t in $(find "$BUILD/tests" -type f -name 'test_*' -perm -u+x | sort); do
    name=${t#"$BUILD"/tests/}
    log=$(mktemp)
    "$t" --jobs=2 --timeout=120 >"$log" 2>&1
    rc=$?
    cat "$log"
    line=$(grep 'Synthesis:' "$log" | tail -n 1)
    # Criterion workers report a leak or a sanitizer error on stderr but still
    # pass: any such report fails the binary.
    if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$log"; then
        echo "$name: sanitizer report above"
        [ "$rc" -eq 0 ] && rc=99
    fi
    rm -f "$log"
    n_pass=$(echo "$line" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
    n_fail=$(echo "$line" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
    n_crash=$(echo "$line" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
    passed=$((passed + ${n_pass:-0}))
    failed=$((failed + ${n_fail:-0} + ${n_crash:-0}))
    if [ "$rc" -ne 0 ] || [ -z "$line" ]; then
        bad="$bad $name(rc=$rc)"
        [ -n "$line" ] && [ "${n_fail:-0}" -eq 0 ] && [ "${n_crash:-0}" -eq 0 ] && failed=$((failed + 1))
        [ -z "$line" ] && failed=$((failed + 1))
    fi
done
[ -n "$bad" ] && echo "failing binaries:$bad"
echo "tests ($BUILD): $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ -z "$bad" ]

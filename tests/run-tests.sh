#!/bin/sh
# Runs each test binary given on the command line with a time limit, shows
# its output, and ends with one "N passed, N failed" line over all runs.
# Binaries after a "--tls" argument run again in TLS mode (PCSIG_TEST_TLS=1:
# the harness starts TLS servers and speaks TLS to them).
# Exit status: 0 only when every run passed.
limit=${PCSIG_TEST_TIMEOUT:-300}
passed=0
failed=0
failures=""
tls=0
for t in "$@"; do
    if [ "$t" = "--tls" ]; then
        tls=1
        continue
    fi
    label=$t
    [ $tls -eq 1 ] && label="$t (TLS)"
    echo "=== $label"
    if PCSIG_TEST_TLS=$tls timeout --signal=KILL "$limit" "$t"; then
        passed=$((passed + 1))
    else
        rc=$?
        failed=$((failed + 1))
        failures="$failures $label(exit $rc)"
    fi
done
[ -z "$failures" ] || echo "failing:$failures"
echo "test binaries: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

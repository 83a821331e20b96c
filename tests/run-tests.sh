#!/bin/sh
# Runs each test binary given on the command line with a time limit, shows
# its output, and ends with one "N passed, N failed" line over the binaries.
# Exit status: 0 only when every binary passed.
limit=${PCSIG_TEST_TIMEOUT:-300}
passed=0
failed=0
failures=""
for t in "$@"; do
    echo "=== $t"
    if timeout --signal=KILL "$limit" "$t"; then
        passed=$((passed + 1))
    else
        rc=$?
        failed=$((failed + 1))
        failures="$failures $t(exit $rc)"
    fi
done
[ -z "$failures" ] || echo "failing:$failures"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

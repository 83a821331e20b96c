#!/bin/sh
# Runs each test binary given on the command line with a time limit, shows
# its output, and ends with one "N passed, N failed" line over all runs.
# Binaries after a "--tls" argument run again in TLS mode (PCSIG_TEST_TLS=1:
# the harness starts TLS servers and speaks TLS to them).
#
# Up to PCSIG_TEST_JOBS binaries (default: the number of cores) run at once:
# the tests listen on port 0, log to files named after their own pid and make
# their temporary files with mkstemp/mkdtemp, so two runs never share a port
# or a path. Each run's output goes to a file of its own and is shown whole
# when the run ends, under a "=== name [seconds]" line, so outputs never
# interleave; the order is that of completion. PCSIG_TEST_JOBS=1 is the old
# one-at-a-time runner.
# Exit status: 0 only when every run passed.
limit=${PCSIG_TEST_TIMEOUT:-300}
jobs=${PCSIG_TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
case $jobs in
'' | *[!0-9]* | 0)
    echo "run-tests: PCSIG_TEST_JOBS must be a positive integer, not '$jobs'" >&2
    exit 2
    ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pcsig-run-tests-XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
# Asynchronous commands of a shell without job control ignore SIGINT, and
# timeout puts each test in a process group of its own, so an interrupt
# reaches no test by itself: stop each running timeout (which passes the
# signal on to its test) by its pid.
stop() {
    for f in "$tmp"/*.pid; do
        [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null
    done
    exit "$1"
}
trap 'stop 130' INT
trap 'stop 143' TERM
# Each finished run writes "index exit-status seconds" as one line (shorter
# than PIPE_BUF, so lines never mix) into this FIFO; the loop below blocks
# on it. Opened read-write so that neither side's open ever blocks.
mkfifo "$tmp/done" || exit 2
exec 3<>"$tmp/done"

passed=0
failed=0
failures=""
running=0

# Shows the run that finished next and counts it.
reap() {
    read -r idx rc secs <&3 || exit 2
    running=$((running - 1))
    eval "label=\$label_$idx"
    echo "=== $label [${secs}s]"
    cat "$tmp/$idx.out"
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failures="$failures $label(exit $rc)"
    fi
}

tls=0
n=0
for t in "$@"; do
    if [ "$t" = "--tls" ]; then
        tls=1
        continue
    fi
    n=$((n + 1))
    label=$t
    [ $tls -eq 1 ] && label="$t (TLS)"
    eval "label_$n=\$label"
    while [ "$running" -ge "$jobs" ]; do
        reap
    done
    (
        start=$(date +%s)
        PCSIG_TEST_TLS=$tls timeout --signal=KILL "$limit" "$t" \
            </dev/null >"$tmp/$n.out" 2>&1 3>&- &
        echo $! >"$tmp/$n.pid"
        wait $!
        rc=$?
        rm -f "$tmp/$n.pid"
        echo "$n $rc $(($(date +%s) - start))" >&3
    ) &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    reap
done
wait

[ -z "$failures" ] || echo "failing:$failures"
echo "test binaries: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/bin/sh
# Runs each test given on the command line with a time limit, shows its
# output, and ends with one "N passed, N failed" line over all runs.
# A test is a command line split at spaces (a binary, or a script and its
# arguments: "tests/browser/run.sh page.test.mjs"). Tests after a "--tls"
# argument run in TLS mode (PCSIG_TEST_TLS=1: the harness starts TLS servers
# and speaks TLS to them); the Makefile says why each of them is there.
#
# Up to PCSIG_TEST_JOBS tests (default: six per core, as most of them
# wait for a timeout or another process far more than they compute) run at
# once, and fewer while the ones running are known to compute: with
# PCSIG_TEST_TIMES (below) each run's share of a core (its CPU time over
# its wall time, last time) is known, and a run starts only while the
# shares of those running, its own added, fit in the cores (a run of
# unknown share counts as a third of a core, the old three per core; a run
# starts anyway when none is running). A share measured in a crowded run
# errs low (its wall time was stretched by the others), so the next run
# admits more at once: the cap on the count is what bounds that.
# A fixed count either left the cores idle while the runs that
# wait out a timeout filled the slots, or overloaded them while the browser
# and media runs computed.
# The tests listen on port 0, log to files named after their own pid and make
# their temporary files with mkstemp/mkdtemp, so two runs never share a port
# or a path. Each run's output goes to a log file of its own and is shown
# whole when the run ends, under a "=== name [seconds]" line, so outputs
# never interleave; the order is that of completion. PCSIG_TEST_JOBS=1 is the
# old one-at-a-time runner.
#
# Longest first: PCSIG_TEST_TIMES names a file of "milliseconds<TAB>name<TAB>
# cpu-milliseconds" lines (wall time, and the CPU time of the test and the
# processes it waited for) that each run rewrites; the next run starts the
# tests that took longest first (and tests it has no time for before them),
# so that the long poles do not start last and run alone at the end.
#
# PCSIG_TEST_TIMELINE names a file that each run rewrites with a line per
# run, in start order: "start end cpu name" (milliseconds since the runner
# began): how the runs packed onto the slots, and which ended last.
#
# PCSIG_TEST_LOGS: the directory for the runs' logs (build_tests_unit_test_buf.log,
# build_tests_integration_test_access.tls.log ...),
# kept; when unset, a temporary one, removed unless a run failed. A failed
# run is named at the end with its log's path (and the test's own output
# names its server's log).
#
# Exit status: 0 only when every run passed.
#
# The runner's own work is builtins wherever it can be (the clock from
# /proc/uptime, the CPU time from `times`, one awk for every run's log name
# and estimate): a process started per run costs as much as a small test
# (88 runs of /bin/true took 7.2 s of CPU with date, awk, sed and rm per
# run; 2.8 s now, most of it timeout, cat and the forks).
limit=${PCSIG_TEST_TIMEOUT:-300}
# Sanitized builds compute several times more per test: one per core there
# (three per core under ASan left members timing out and calls unconnected).
per_core=6
[ -z "${PCSIG_SANITIZE:-}" ] || per_core=1
cores=$(nproc 2>/dev/null || echo 1)
jobs=${PCSIG_TEST_JOBS:-$((per_core * cores))}
# The cores' worth of shares (in thousandths of a core) that may run at once.
budget=$((cores * 1000))
case $jobs in
'' | *[!0-9]* | 0)
    echo "run-tests: PCSIG_TEST_JOBS must be a positive integer, not '$jobs'" >&2
    exit 2
    ;;
esac
times=${PCSIG_TEST_TIMES:-}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pcsig-run-tests-XXXXXX") || exit 2
logs=${PCSIG_TEST_LOGS:-$tmp/logs}
mkdir -p "$logs" || exit 2
keep_tmp=0
cleanup() {
    [ "$keep_tmp" -eq 1 ] || rm -rf "$tmp"
}
trap cleanup EXIT
# Asynchronous commands of a shell without job control ignore SIGINT, and
# timeout puts each test in a process group of its own, so an interrupt
# reaches no test by itself: stop each running timeout (which passes the
# signal on to its test) by its pid.
stop() {
    for f in "$tmp"/*.pid; do
        [ -f "$f" ] && [ ! -f "${f%.pid}.end" ] && read -r pid <"$f" && kill -TERM "$pid" 2>/dev/null
    done
    exit "$1"
}
trap 'stop 130' INT
trap 'stop 143' TERM
# Each finished run writes "index exit-status milliseconds cpu-milliseconds"
# as one line (shorter than PIPE_BUF, so lines never mix) into this FIFO; the
# loop below blocks on it. Opened read-write so that neither side's open ever blocks.
mkfifo "$tmp/done" || exit 2
exec 3<>"$tmp/done"

tab=$(printf '\t')

# Sets now: milliseconds since boot, in steps of 10 (no process started).
now_ms() {
    read -r up _ </proc/uptime
    frac=${up#*.}
    frac=${frac#0} # "07" is no octal number
    now=$((${up%.*} * 1000 + ${frac:-0} * 10))
}

# Sets ms from a time `times` printed: 1m2.345678s -> 62345.
times_ms() {
    t_min=${1%%m*}
    t_sec=${1#*m}
    t_sec=${t_sec%s}
    t_frac=${t_sec#*.}000
    while [ ${#t_frac} -gt 3 ]; do t_frac=${t_frac%?}; done
    while [ ${#t_frac} -gt 1 ] && [ "${t_frac#0}" != "$t_frac" ]; do t_frac=${t_frac#0}; done
    ms=$(((t_min * 60 + ${t_sec%.*}) * 1000 + t_frac))
}

# The tests, numbered in command-line order, and the order to start them in.
tls=0
n=0
: >"$tmp/tests"
for t in "$@"; do
    if [ "$t" = "--tls" ]; then
        tls=1
        continue
    fi
    n=$((n + 1))
    label=$t
    [ $tls -eq 0 ] || label="$t (TLS)"
    eval "cmd_$n=\$t; tls_$n=\$tls; label_$n=\$label"
    printf '%s\t%s\t%s\n' "$n" "$tls" "$t" >>"$tmp/tests"
done
# One awk for all: each run's log, named after the whole command line (unit
# and integration tests share names): build/tests/unit/test_config ->
# build_tests_unit_test_config.log; and its last wall time (the last line
# of the times file that names it), 999999999 when it has none.
tf=/dev/null
[ -n "$times" ] && [ -f "$times" ] && tf=$times
awk -F '\t' -v tf="$tf" -v logs="$logs" '
    FILENAME == tf {
        est[$2] = $1
        if ($1 > 0 && $3 != "")
            share[$2] = int($3 * 1000 / $1)
        next
    }
    {
        label = $3
        if ($2 == 1)
            label = label " (TLS)"
        name = $3
        sub(/^\.\//, "", name)
        gsub(/[^A-Za-z0-9._-]/, "_", name)
        if ($2 == 1)
            name = name ".tls"
        printf "%s\t%s\t%s/%s.log\t%d\n", (label in est) ? est[label] : 999999999, $1, logs, name,
            (label in share) ? share[label] : 333
    }' "$tf" "$tmp/tests" >"$tmp/est" || exit 2
sort -t "$tab" -k1,1nr -k2,2n "$tmp/est" >"$tmp/order" || exit 2
order=
while IFS=$tab read -r _ idx log share; do
    eval "log_$idx=\$log; share_$idx=\$share"
    order="$order $idx"
done <"$tmp/order"
# shellcheck disable=SC2086 # numbers, one word each
set -- $order
[ $# -eq "$n" ] || { echo "run-tests: $n tests, $# of them ordered" >&2; exit 2; }

passed=0
failed=0
failures=""
running=0
load=0 # the shares of the runs running
: >"$tmp/times"
: >"$tmp/timeline"
now_ms
t0=$now

# 12345 (milliseconds) -> 12.3
secs() {
    printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100))
}

# Shows the run that finished next and counts it.
reap() {
    read -r fin rc ms cpu began <&3 || exit 2
    running=$((running - 1))
    eval "label=\$label_$fin; log=\$log_$fin; load=\$((load - share_$fin))"
    printf '%s\t%s\t%s\n' "$ms" "$label" "$cpu" >>"$tmp/times"
    printf '%s %s %s %s\n' "$began" "$((began + ms))" "$cpu" "$label" >>"$tmp/timeline"
    echo "=== $label [$(secs "$ms")s, cpu $(secs "$cpu")s]"
    cat "$log"
    if [ "$rc" -eq 0 ]; then
        passed=$((passed + 1))
        return
    fi
    failed=$((failed + 1))
    why="exit $rc"
    [ "$rc" -eq 137 ] && why="killed at the ${limit}s limit (PCSIG_TEST_TIMEOUT)"
    failures="$failures
  $label: $why; log $log"
}

# Starts run $1 in the background.
start_run() {
    idx=$1
    eval "cmd=\$cmd_$idx; tls=\$tls_$idx; log=\$log_$idx; load=\$((load + share_$idx))"
    (
        now_ms
        start=$now
        set -f # a test is split at spaces, never globbed
        # shellcheck disable=SC2086
        PCSIG_TEST_TLS=$tls timeout --signal=KILL "$limit" $cmd \
            </dev/null >"$log" 2>&1 3>&- &
        echo $! >"$tmp/$idx.pid"
        wait $!
        rc=$?
        : >"$tmp/$idx.end" # stop() leaves it alone now
        now_ms
        # The CPU time (user + system) of the test and of the processes it
        # waited for (its servers and clients): "times" shows this
        # subshell's children's second (run here: in a $(...) it would
        # show the substitution's own, none).
        times >"$tmp/$idx.cpu"
        { read -r _ _ && read -r cu cs; } <"$tmp/$idx.cpu"
        times_ms "$cu"
        cpu=$ms
        times_ms "$cs"
        echo "$idx $rc $((now - start)) $((cpu + ms)) $((start - t0))" >&3
    ) &
    running=$((running + 1))
}

# Longest first, each as soon as a slot and its share of the cores are
# free. Once one does not fit, only runs that mostly wait (a share of at
# most 15 %) go before it: letting every run that fits pass left the
# computing ones (media, test_scale, bench-smoke) waiting until the end and
# running there alone.
pending=$order
while [ -n "$pending" ]; do
    later=
    held=0
    for idx in $pending; do
        eval "share=\$share_$idx"
        if [ "$running" -lt "$jobs" ] && { [ "$held" -eq 0 ] || [ "$share" -le 150 ]; } &&
            { [ "$running" -eq 0 ] || [ $((load + share)) -le "$budget" ]; }; then
            start_run "$idx"
        else
            later="$later $idx"
            held=1
        fi
    done
    pending=$later
    [ -z "$pending" ] || reap
done
while [ "$running" -gt 0 ]; do
    reap
done
wait

[ -z "${PCSIG_TEST_TIMELINE:-}" ] || sort -n "$tmp/timeline" >"$PCSIG_TEST_TIMELINE"
if [ -n "$times" ]; then
    # This run's times, and the old ones of tests it did not run.
    cp "$tmp/times" "$tmp/times.new"
    if [ -f "$times" ]; then
        awk -F '\t' 'NR == FNR { seen[$2] = 1; next } !seen[$2]' "$tmp/times" "$times" \
            >>"$tmp/times.new"
    fi
    mv "$tmp/times.new" "$times"
fi
echo "longest runs (wall, cpu):"
sort -k1,1nr "$tmp/times" | head -n 5 | awk -F '\t' '{ printf "  %6.1fs %6.1fs  %s\n", $1 / 1000, $3 / 1000, $2 }'
awk -F '\t' '{ w += $1; c += $3 } END { printf "all runs: %.1fs wall summed, %.1fs cpu\n", w / 1000, c / 1000 }' "$tmp/times"
if [ -n "$failures" ]; then
    echo "failing:$failures"
    [ -z "${PCSIG_TEST_LOGS:-}" ] && keep_tmp=1
fi
echo "test binaries: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/bin/sh
# The cluster tests (issue 17): tests/cluster's own binaries, and a set of
# the protocol integration tests run unchanged through haproxy in front of
# three instances sharing one Redis (PCSIG_SERVER becomes
# pcsig-cluster-launch, which starts that cluster and names haproxy's port in
# the ready line; PCSIG_TEST_CLUSTER=1 makes the harness add the
# instances' /metrics samples up).
#
# Skips (exit 0, saying why) when the server has no --cluster (the cluster
# branch is not merged) or redis-server/haproxy are missing (make deps).
#
# With names (tests/cluster/run.sh test_cluster test_queue), only those run;
# with one name, that test alone, as this process (no runner of its own;
# with several, each is a run of this script with its name):
# make test lists each as a run of its own, so that its runner schedules
# them beside the rest (longest first, its jobs per core) instead of a
# second runner's jobs on top of its own.
build=${PCSIG_BUILD:-build}
server=${PCSIG_SERVER:-$build/pcsig-server}
# The protocol tests that hold for a cluster as for one server (the others
# check one process's own figures, logs, limits or exit). NAME:N is part N
# of a suite (see below): test_queue is two runs, so that neither waits
# much over 10 s (its two timeout tests wait out 6 s of windows).
itests=${PCSIG_CLUSTER_ITESTS:-"test_session test_queue:1 test_queue:2 test_batch test_keepalive test_errors"}
# --list: the names a run without names runs (for the Makefile).
if [ "${1:-}" = "--list" ]; then
    echo "test_cluster $itests"
    exit 0
fi
if ! "$server" --help 2>&1 | grep -q -- '--cluster'; then
    echo "SKIP cluster tests: $server --help has no --cluster"
    exit 0
fi
if ! command -v redis-server >/dev/null 2>&1; then
    echo "SKIP cluster tests: redis-server is not installed (make deps)"
    exit 0
fi
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
    echo "SKIP cluster tests: haproxy is not installed (make deps)"
    exit 0
fi
launch=$(realpath "$build/tests/cluster/pcsig-cluster-launch") || exit 1
server=$(realpath "$server") || exit 1
if [ $# -gt 0 ]; then
    itests=""
    ctests=""
    for t in "$@"; do
        case $t in
        test_cluster*) ctests="$ctests $t" ;;
        *) itests="$itests $t" ;;
        esac
    done
else
    ctests=test_cluster
fi
# Under the sanitizers (make check) only the cluster's own tests run: the
# protocol suites through haproxy run the same server code as in make test,
# and three sanitized instances per test, several tests at once, took
# longer than the time limits on two cores. test_cluster_basic (the
# integration set) also runs the cluster code sanitized.
if [ -n "${PCSIG_SANITIZE:-}" ] && [ -z "${PCSIG_CLUSTER_ITESTS:-}" ] && [ -n "$itests" ]; then
    echo "cluster: sanitized build ($PCSIG_SANITIZE): test_cluster only; the protocol suites through haproxy run in make test"
    itests=""
fi
# Several: each a run of its own (of this script, with its name), as in
# make test.
# shellcheck disable=SC2086 # one word a name
set -- $ctests $itests
if [ $# -gt 1 ]; then
    n=$#
    for t in "$@"; do
        set -- "$@" "$0 $t"
    done
    shift "$n"
    # The runs here share names with make test's own runs of these
    # binaries: their logs and times are kept apart.
    if [ -n "${PCSIG_TEST_LOGS:-}" ]; then
        PCSIG_TEST_LOGS=$PCSIG_TEST_LOGS/cluster
        export PCSIG_TEST_LOGS
    fi
    if [ -n "${PCSIG_TEST_TIMES:-}" ]; then
        PCSIG_TEST_TIMES=$PCSIG_TEST_TIMES.cluster
        export PCSIG_TEST_TIMES
    fi
    if [ -n "${PCSIG_TEST_TIMELINE:-}" ]; then
        PCSIG_TEST_TIMELINE=$PCSIG_TEST_TIMELINE.cluster
        export PCSIG_TEST_TIMELINE
    fi
    exec tests/run-tests.sh "$@"
fi
# The launcher's ready line comes once Redis, three instances and haproxy are up.
PCSIG_TEST_START_MS=${PCSIG_TEST_START_MS:-60000}
export PCSIG_TEST_START_MS
# The parts of a suite: PCSIG_TEST_ONLY and PCSIG_TEST_SKIP (one glob each).
queue_timeouts='test_*member*t*out' # test_member_timeout, test_parked_member_not_timed_out
case ${1:-} in
test_queue:1) PCSIG_TEST_SKIP=$queue_timeouts ;;
test_queue:2)
    PCSIG_TEST_ONLY=$queue_timeouts
    export PCSIG_TEST_ONLY
    ;;
*:*)
    echo "cluster: no part ${1#*:} of ${1%%:*}" >&2
    exit 2
    ;;
esac
name=${1%%:*}
case $name in
'') exit 0 ;;
test_cluster*) bin=$build/tests/cluster/$name ;;
*) bin=$build/tests/integration/$name ;;
esac
# test_quit_allowed (test_errors) checks one process's log after GET /quit:
# through the launcher the other instances are stopped with SIGTERM.
PCSIG_TEST_SKIP=${PCSIG_TEST_SKIP:-test_quit_allowed}
PCSIG_CLUSTER_SERVER=$server
PCSIG_SERVER=$launch
PCSIG_TEST_CLUSTER=1
export PCSIG_TEST_SKIP PCSIG_CLUSTER_SERVER PCSIG_SERVER PCSIG_TEST_CLUSTER
# A protocol suite under one Redis and haproxy for all its tests
# (pcsig-cluster-launch --base): each test's launcher starts only its
# instances. PCSIG_CLUSTER_BASE=0: a whole cluster for each test.
if [ -n "$itests" ] && [ "${PCSIG_CLUSTER_BASE:-}" != 0 ]; then
    unset PCSIG_CLUSTER_BASE
    exec "$launch" --base "$bin"
fi
unset PCSIG_CLUSTER_BASE
exec "$bin"

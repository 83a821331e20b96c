#!/bin/bash
# cluster-bench: what --cluster costs (issue 17 item 5; figures in
# BENCHMARKS.md "Several instances over Redis").
#
#   tools/cluster-bench.sh [--instances "0 1 2 3"] [--peers N] [--messages M]
#                          [--join-peers J] [--no-join]
#
# For each instance count (0: the baseline, one instance without --cluster
# and no Redis, behind the same haproxy): Redis, that many pcsig-server --cluster instances
# and haproxy in round robin in front (build/tests/cluster/pcsig-cluster-launch,
# the cluster of the tests), then build/pcsig-bench through haproxy, stock
# client style (a new connection per request), 8 messages in flight per
# sender. The bench runs twice on the same cluster, with M/10 and M
# messages; the difference between the two runs is the cost of M - M/10
# relayed messages alone (the sign-ins and join deliveries cancel out):
#   - msg/s and p99 of the larger run (pcsig-bench's own line);
#   - CPU per message of each instance, of haproxy and of Redis
#     (/proc/PID/stat utime+stime);
#   - Redis commands per message (INFO commandstats, calls): EVALSHA are
#     the round trips that carry work; the commands the scripts run inside
#     Redis are counted too (all_cmds).
# Then (unless --no-join) J peers (default 5000) sign in through haproxy to
# three instances with nobody waiting (curl, 16 at a time): wall time, the
# Redis and instance CPU it took, Redis memory before and after, and
# MEMORY USAGE of one member's keys.
#
# Needs: make (build/pcsig-server, pcsig-bench, the launcher:
# make build/tests/cluster/pcsig-cluster-launch), redis-server, redis-cli,
# haproxy, curl. Every process it starts is stopped at the end.
set -u
build=${BUILD:-build}
server=$build/pcsig-server
launch=$build/tests/cluster/pcsig-cluster-launch
bench=$build/pcsig-bench
instances="0 1 2 3"
peers=100
messages=20000
join_peers=5000
do_join=1
while [ $# -gt 0 ]; do
    case $1 in
    --instances) instances=$2; shift 2 ;;
    --peers) peers=$2; shift 2 ;;
    --messages) messages=$2; shift 2 ;;
    --join-peers) join_peers=$2; shift 2 ;;
    --no-join) do_join=0; shift ;;
    *) echo "usage: $0 [--instances \"1 2 3\"] [--peers N] [--messages M] [--join-peers J] [--no-join]" >&2; exit 2 ;;
    esac
done
for f in "$server" "$launch" "$bench"; do
    [ -x "$f" ] || { echo "cluster-bench: $f missing (make all $launch)" >&2; exit 2; }
done
"$server" --help | grep -q -- --cluster || { echo "cluster-bench: $server has no --cluster" >&2; exit 2; }
tck=$(getconf CLK_TCK)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pcsig-cluster-bench-XXXXXX") || exit 2
lpid=""
stop_cluster() {
    if [ -n "$lpid" ]; then
        kill -TERM "$lpid" 2>/dev/null
        wait "$lpid" 2>/dev/null
        lpid=""
    fi
}
trap 'stop_cluster; rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# start_cluster N [server options]: sets lb, rport, ipids, hpid, rpid
start_cluster() {
    local n=$1 redis=1
    shift
    # 0: the baseline, one instance without --cluster (no Redis) behind haproxy
    [ "$n" = 0 ] && { n=1; redis=0; }
    : >"$tmp/out"
    PCSIG_CLUSTER_REDIS=$redis PCSIG_CLUSTER_INSTANCES=$n PCSIG_CLUSTER_SERVER=$server PCSIG_CLUSTER_LB_MAXCONN=${LB_MAXCONN:-9000} \
        "$launch" --log-level warn --max-connections 20000 "$@" >"$tmp/out" 2>"$tmp/err" &
    lpid=$!
    local i
    for i in $(seq 1 600); do
        grep -q 'listening on port' "$tmp/out" && break
        kill -0 "$lpid" 2>/dev/null || { cat "$tmp/err" >&2; exit 1; }
        sleep 0.1
    done
    lb=$(sed -n 's/.*listening on port \([0-9]*\).*/\1/p' "$tmp/out")
    [ -n "$lb" ] || { echo "cluster-bench: the cluster did not start" >&2; cat "$tmp/err" >&2; exit 1; }
    local ports=/tmp/pcsig-cluster-launch-$lpid.ports
    ipids=$(awk '/^[0-9]/ {print $2}' "$ports")
    rport=$(awk '/^redis/ {print $2}' "$ports")
    rpid=$(awk '/^redis/ {print $3}' "$ports")
    hpid=$(awk '/^haproxy/ {print $3}' "$ports")
}

ticks() { if [ "$1" = 0 ]; then echo 0; else awk '{print $14 + $15}' "/proc/$1/stat"; fi; }
# all pids' ticks on one line: instances..., haproxy, redis
snapshot() {
    local p out=""
    for p in $ipids $hpid $rpid; do out="$out $(ticks "$p")"; done
    echo "$out"
}
# Redis: "evalsha_calls all_calls"
rstats() {
    [ "$rpid" = 0 ] && { echo "0 0"; return; }
    redis-cli -p "$rport" INFO commandstats | tr -d '\r' | awk -F'[:=,]' '
        /^cmdstat_/ { all += $3; if ($1 ~ /evalsha|cmdstat_eval$/) ev += $3 }
        END { printf "%d %d\n", ev, all }'
}

echo "# cluster-bench $(date -u +%Y-%m-%dT%H:%MZ) peers=$peers messages=$messages, stock style, --inflight 8, $(nproc) cores"
small=$((messages / 10))
for n in $instances; do
    ni=$n
    [ "$n" = 0 ] && ni=1
    start_cluster "$n"
    s0=$(snapshot); r0=$(rstats)
    "$bench" --server 127.0.0.1 --port "$lb" --peers "$peers" --messages "$small" --inflight 8 \
        --quiet --timeout 600 >"$tmp/b1" 2>&1 || { echo "bench (small) failed:"; cat "$tmp/b1"; }
    s1=$(snapshot); r1=$(rstats)
    "$bench" --server 127.0.0.1 --port "$lb" --peers "$peers" --messages "$messages" --inflight 8 \
        --quiet --timeout 600 >"$tmp/b2" 2>&1 || { echo "bench failed:"; cat "$tmp/b2"; }
    s2=$(snapshot); r2=$(rstats)
    if [ "$n" = 0 ]; then
        echo "## baseline: 1 instance without --cluster behind haproxy"
    else
        echo "## $n instance(s) behind haproxy"
    fi
    grep '^peers=' "$tmp/b2"
    dm=$((messages - small))
    # per message: (run2 - run1 deltas) / dm, in microseconds of CPU
    echo "$s0|$s1|$s2" | awk -F'|' -v dm="$dm" -v tck="$tck" -v n="$ni" '{
        split($1, a, " "); split($2, b, " "); split($3, c, " ");
        line = "cpu_us_per_msg:"; tot = 0
        for (i = 1; i <= n + 2; i++) {
            d = ((c[i] - b[i]) - (b[i] - a[i])) * 1e6 / tck / dm
            name = i <= n ? "i" (i - 1) : (i == n + 1 ? "haproxy" : "redis")
            line = line sprintf(" %s=%.0f", name, d); if (i <= n) inst += d; tot += d
        }
        printf "%s instances=%.0f all=%.0f\n", line, inst, tot }'
    echo "$r0|$r1|$r2" | awk -F'|' -v dm="$dm" '{
        split($1, a, " "); split($2, b, " "); split($3, c, " ");
        printf "redis_per_msg: evalsha=%.2f all_cmds=%.2f\n",
            ((c[1] - b[1]) - (b[1] - a[1])) / dm, ((c[2] - b[2]) - (b[2] - a[2])) / dm }'
    if [ "$rpid" != 0 ]; then
        redis-cli -p "$rport" INFO commandstats | tr -d '\r' | grep '^cmdstat_' |
            sed 's/,usec_per_call.*//' | tr '\n' ' '
        echo
    fi
    stop_cluster
done

if [ "$do_join" = 1 ]; then
    command -v curl >/dev/null || { echo "cluster-bench: the join needs curl" >&2; exit 2; }
    echo "## join: $join_peers peers sign in through haproxy to 3 instances, nobody waits"
    start_cluster 3 --member-timeout 3600
    m0=$(redis-cli -p "$rport" INFO memory | tr -d '\r' | sed -n 's/^used_memory:\(.*\)/\1/p')
    s0=$(snapshot)
    t0=$(date +%s.%N)
    curl -s --no-progress-meter --parallel --parallel-max 16 -w '%{stderr}%{http_code}\n' \
        "http://127.0.0.1:$lb/sign_in?j[1-$join_peers]" >/dev/null 2>"$tmp/codes"
    t1=$(date +%s.%N)
    s1=$(snapshot)
    m1=$(redis-cli -p "$rport" INFO memory | tr -d '\r' | sed -n 's/^used_memory:\(.*\)/\1/p')
    ok=$(grep -c "^200" "$tmp/codes")
    # curl prints 000 for a request that got no answer
    grep -v "^200" "$tmp/codes" | sort | uniq -c | sed "s/^/not_200: /"
    echo "signed_in=$ok/$join_peers wall_s=$(awk "BEGIN { printf \"%.2f\", $t1 - $t0 }")"
    echo "$s0|$s1" | awk -F'|' -v tck="$tck" -v n="$ok" '{
        split($1, a, " "); split($2, b, " ");
        printf "cpu_s: i0=%.2f i1=%.2f i2=%.2f haproxy=%.2f redis=%.2f (per sign-in: instances %.0f us, redis %.0f us)\n",
            (b[1]-a[1])/tck, (b[2]-a[2])/tck, (b[3]-a[3])/tck, (b[4]-a[4])/tck, (b[5]-a[5])/tck,
            ((b[1]-a[1])+(b[2]-a[2])+(b[3]-a[3])) * 1e6 / tck / n, (b[5]-a[5]) * 1e6 / tck / n }'
    echo "redis_used_memory: before=$m0 after=$m1 per_member=$(( (m1 - m0) / (ok > 0 ? ok : 1) )) (queued join notifications included)"
    first=$(redis-cli -p "$rport" ZRANGE pcsig:members 0 0)
    last=$(redis-cli -p "$rport" ZRANGE pcsig:members -1 -1)
    for id in $first $last; do
        echo "member $id: m=$(redis-cli -p "$rport" MEMORY USAGE "pcsig:m:$id") B" \
            "q=$(redis-cli -p "$rport" MEMORY USAGE "pcsig:q:$id") B ($(redis-cli -p "$rport" LLEN "pcsig:q:$id") items)"
    done
    echo "members_zset=$(redis-cli -p "$rport" MEMORY USAGE pcsig:members) B dl_zset=$(redis-cli -p "$rport" MEMORY USAGE pcsig:dl) B"
    # One more sign-in at that size, timed alone.
    t0=$(date +%s.%N)
    curl -s -o /dev/null "http://127.0.0.1:$lb/sign_in?last"
    t1=$(date +%s.%N)
    echo "sign_in_at_${join_peers}_ms=$(awk "BEGIN { printf \"%.1f\", ($t1 - $t0) * 1000 }")"
    stop_cluster
fi

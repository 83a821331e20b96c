#!/bin/bash
# media-bench: call set-up time and client cost of a native<->native call
# through pcsig-server on loopback (the figures of BENCHMARKS.md, issue 16).
#
#   tools/media-bench.sh [CALLS] [SECONDS]     (defaults: 5 calls, 20 s)
#
# For each call: bob (--autocall) calls alice, both with --media test; the
# caller's "setup_ms" (offer sent -> connection connected) and "first_frame"
# ms (offer sent -> first decoded remote frame) are collected. During the
# last call (SECONDS long) the caller's CPU (utime+stime over wall time) and
# RSS are sampled from /proc. Needs a media build (make).
set -eu
calls=${1:-5}
secs=${2:-20}
B=${BUILD:-build}
dir=$(mktemp -d /tmp/pcsig-media-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
"$B/pcsig-client" --version | grep -q 'media: GStreamer' || { echo "no media build" >&2; exit 1; }
"$B/pcsig-server" --bind 127.0.0.1 --port 0 > "$dir/srv.out" 2>/dev/null &
server=$!
await() { # file pattern: polls for up to 60 s
    local n=0
    until grep -q "$2" "$1" 2>/dev/null; do
        kill -0 "$server" 2>/dev/null || { echo "the server exited; see $1" >&2; exit 1; }
        sleep 0.05; n=$((n + 1)); [ $n -lt 1200 ] || { echo "timeout: $2 in $1" >&2; exit 1; }
    done
}
await "$dir/srv.out" '[0-9]$'
port=$(grep -o '[0-9]*$' "$dir/srv.out")
setup=() first=()
for i in $(seq 1 "$calls"); do
    mkfifo "$dir/a.in" "$dir/b.in"
    "$B/pcsig-client" --json --media test --server 127.0.0.1 --port "$port" --name alice \
        < "$dir/a.in" > "$dir/a.out" 2>/dev/null &
    apid=$!
    exec 3> "$dir/a.in"
    await "$dir/a.out" signed_in
    "$B/pcsig-client" --json --media test --server 127.0.0.1 --port "$port" --name bob --autocall \
        < "$dir/b.in" > "$dir/b.out" 2>/dev/null &
    bpid=$!
    exec 4> "$dir/b.in"
    await "$dir/b.out" '"first_frame"'
    setup+=("$(grep -o '"setup_ms":[0-9]*' "$dir/b.out" | cut -d: -f2)")
    first+=("$(grep -o '"first_frame".*"ms":[0-9]*' "$dir/b.out" | grep -o '[0-9]*$')")
    if [ "$i" = "$calls" ]; then
        hz=$(getconf CLK_TCK)
        t0=$(awk '{print $14 + $15}' /proc/$bpid/stat); w0=$(date +%s.%N)
        rss=0
        for _ in $(seq 1 "$secs"); do
            sleep 1
            r=$(awk '/VmRSS/ {print $2}' /proc/$bpid/status)
            [ "$r" -gt "$rss" ] && rss=$r
        done
        t1=$(awk '{print $14 + $15}' /proc/$bpid/stat); w1=$(date +%s.%N)
        cpu=$(echo "$t0 $t1 $w0 $w1 $hz" | awk '{printf "%.1f", 100 * ($2 - $1) / $5 / ($4 - $3)}')
        frames=$(grep '"media_stats"' "$dir/b.out" | tail -1 | grep -o '"video_frames_received":[0-9]*' | cut -d: -f2)
    fi
    exec 3>&- 4>&-
    wait $apid $bpid || true
    rm -f "$dir/a.in" "$dir/b.in"
done
sorted() { printf '%s\n' "$@" | sort -n | tr '\n' ' '; }
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "calls: $calls (media test, VP8 320x240@15 + Opus, loopback, via pcsig-server)"
echo "offer sent -> connected (ms): $(sorted "${setup[@]}")  median $(med "${setup[@]}")"
echo "offer sent -> first remote frame (ms): $(sorted "${first[@]}")  median $(med "${first[@]}")"
echo "caller during a ${secs} s call: CPU ${cpu}% of one core, max RSS ${rss} KiB, video frames received ${frames}"

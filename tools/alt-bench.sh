#!/bin/bash
# Alternating A/B bench: REPS short repetitions of pcsig-bench against server
# A (pcsig, or any server taking --port P) and server B (by default the
# original peerconnection_server), alternated in one run so that load drift
# on a shared machine hits both alike. Each repetition starts a fresh server.
# Prints per repetition: rate, p50 and relay CPU µs/msg of each and the
# ratio A/B; then the medians and the load average.
#
# usage: tools/alt-bench.sh [-n REPS] [-m MESSAGES] [-s SENDERS] [-p PEERS]
#            [-a SERVER_A] [-b SERVER_B] [-B BENCH]
# A is started as `SERVER_A --port P --bind 127.0.0.1`, B as
# `SERVER_B --port=P` (the original's flag syntax) unless B is a pcsig-server.
set -eu
reps=9 msgs=2000 senders=1 peers=20
a=build/pcsig-server
b=/work/orig/peerconnection_server
bench=build/pcsig-bench
while getopts n:m:s:p:a:b:B: o; do
    case $o in
    n) reps=$OPTARG ;; m) msgs=$OPTARG ;; s) senders=$OPTARG ;;
    p) peers=$OPTARG ;; a) a=$OPTARG ;; b) b=$OPTARG ;; B) bench=$OPTARG ;;
    *) exit 2 ;;
    esac
done
port=$((20000 + $$ % 20000))

# run_one SERVER: prints "rate p50 cpu" of one repetition (or "0 0 0").
run_one() {
    port=$((port + 1))
    case $1 in
    *pcsig-server*) "$1" --port "$port" --bind 127.0.0.1 >/dev/null 2>&1 & ;;
    *) "$1" --port="$port" >/dev/null 2>&1 & ;;
    esac
    pid=$!
    # the server is up once its port answers
    i=0
    while ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 100 ] || break
        sleep 0.05
    done
    out=$(timeout 120 "$bench" --port "$port" --server-pid "$pid" --quiet \
        --no-sign-out --stepwise-join 2 --drain 60 --peers "$peers" \
        --messages "$msgs" --senders "$senders" 2>/dev/null | tail -1) || true
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo "$out" | awk '{r=0;p=0;c=0; for(i=1;i<=NF;i++){split($i,kv,"=");
        if(kv[1]=="rate"){sub("/s","",kv[2]);r=kv[2]}
        if(kv[1]=="p50")p=kv[2]; if(kv[1]=="relay_cpu_us_per_msg")c=kv[2]}
        print r, p, c}'
}

echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# A=$a B=$b peers=$peers messages=$msgs senders=$senders reps=$reps"
printf '%-4s %9s %8s %8s %9s %8s %8s %7s\n' rep A_rate A_p50 A_cpu B_rate B_p50 B_cpu A/B
tmp=$(mktemp)
r=1
while [ $r -le "$reps" ]; do
    # alternate which goes first, so neither always gets the warmer cache
    if [ $((r % 2)) -eq 1 ]; then
        ra=$(run_one "$a"); rb=$(run_one "$b")
    else
        rb=$(run_one "$b"); ra=$(run_one "$a")
    fi
    echo "$r $ra $rb" | awk '{ratio = ($5 > 0) ? $2 / $5 : 0;
        printf "%-4d %9s %8s %8s %9s %8s %8s %7.2f\n", $1, $2, $3, $4, $5, $6, $7, ratio}' |
        tee -a "$tmp"
    r=$((r + 1))
done
# medians of each column (ratio included)
awk '{for(i=2;i<=8;i++) v[i,NR]=$i} END {n=NR;
    printf "%-4s", "med";
    for(i=2;i<=8;i++){for(j=1;j<=n;j++)a[j]=v[i,j];
        for(j=1;j<=n;j++)for(k=j+1;k<=n;k++)if(a[k]+0<a[j]+0){t=a[j];a[j]=a[k];a[k]=t}
        m=(n%2)?a[(n+1)/2]:(a[n/2]+a[n/2+1])/2;
        printf (i==8)?" %7.2f":" %8s", m}
    print ""}' "$tmp"
rm -f "$tmp"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"

#!/bin/sh
# A small pcsig-bench run as a correctness test (not a timing): every message
# must arrive exactly once, intact and in order, stock style and keep-alive.
set -e
# --drain 100: a drain ends as soon as everything has arrived, so a long one
# costs nothing when the server keeps up; its default (10 s) is a figure for
# benchmarks and was too short for a correctness check on a busy machine
# (under ASan, with other tests running beside it, the churn runs' messages
# queued behind thousands of join/leave notifications were still arriving).
: "${PCSIG_BENCH:?}" "${PCSIG_SERVER:?}"
# The stock client's style costs a connection per request and per /wait
# answer (mostly the kernel's CPU): the stock runs are the smaller ones,
# 1000 messages over 30 peers' /waits (2000 with the churn's joins and
# leaves); the keep-alive runs keep 50 peers and 2000 or 4000 messages.
# Each of them still fails with one message in 700 lost, and the churn runs
# with one leave in 7 untold (tried with the server broken so).
"$PCSIG_BENCH" --spawn-server "$PCSIG_SERVER" --peers 30 --messages 1000 --timeout 120 --drain 100
"$PCSIG_BENCH" --spawn-server "$PCSIG_SERVER" --peers 50 --messages 2000 --keepalive --timeout 120 --drain 100
# Batched waits: every record of every batch answer is checked as a single
# answer would be; a framing flaw fails the run.
"$PCSIG_BENCH" --spawn-server "$PCSIG_SERVER" --peers 30 --messages 1000 --inflight 16 --batch --timeout 120 --drain 100
"$PCSIG_BENCH" --spawn-server "$PCSIG_SERVER" --peers 50 --messages 2000 --inflight 16 --keepalive --batch --timeout 120 --drain 100
# Churn: members sign in and out while messages flow; every peer must see
# each churn member join and leave exactly once, and no message may suffer.
"$PCSIG_BENCH" --spawn-server "$PCSIG_SERVER" --peers 30 --messages 2000 --churn 50 --timeout 120 --drain 100
"$PCSIG_BENCH" --spawn-server "$PCSIG_SERVER" --peers 50 --messages 4000 --churn 50 --keepalive --batch --inflight 16 --timeout 120 --drain 100
# --stepwise-join (the side-by-side mode against the original): one join at
# a time, /wait connections two at a time behind OPTIONS probes; every join
# and message must still arrive.
"$PCSIG_BENCH" --spawn-server "$PCSIG_SERVER" --peers 30 --messages 1000 --stepwise-join 2 --timeout 120 --drain 100

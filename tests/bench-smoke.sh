#!/bin/sh
# A small pcsig-bench run as a correctness test (not a timing): every message
# must arrive exactly once, intact and in order, stock style and keep-alive.
set -e
: "${PCSIG_BENCH:?}" "${PCSIG_SERVER:?}"
"$PCSIG_BENCH" --spawn-server "$PCSIG_SERVER" --peers 50 --messages 2000 --timeout 120
"$PCSIG_BENCH" --spawn-server "$PCSIG_SERVER" --peers 50 --messages 2000 --keepalive --timeout 120

#!/bin/sh
# Build the libFuzzer targets of tests/fuzz/ and run each for a while.
#
#   tests/fuzz/run.sh [target ...]      (default: all four targets)
#   FUZZ_SECONDS=N                      seconds per target (default 60)
#   CLANG=clang-14                      the compiler (default clang, else clang-14)
#   FUZZ_OUT=DIR                        where everything goes (default build/fuzz),
#                                       so that two runs need not share one
#
# Everything generated stays under $FUZZ_OUT: the binaries, a fresh copy
# of each seed corpus ($FUZZ_OUT/corpus-<target>, grown by the run), the
# logs and any crashing input ($FUZZ_OUT/crashes-<target>/). Nothing is
# written into the source tree. Exits 0 when every target ran its time
# without a crash, 1 on a crash (its input's path is printed), 2 when the
# targets cannot be built.
# CFLAGS, SAN, APT_PKGS and the object list are split into words on purpose.
# shellcheck disable=SC2086
set -u
cd "$(dirname "$0")/../.." || exit 2

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
OUT=${FUZZ_OUT:-build/fuzz}
ALL_TARGETS="fuzz_http_request fuzz_http_response fuzz_query fuzz_entry"
APT_PKGS="clang libclang-rt-14-dev"
COMMON_SRC="common/http.c common/proto.c common/buf.c"
SAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"
CFLAGS="$SAN -g -O1 -std=c11 -D_GNU_SOURCE -Icommon \
 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith \
 -Wformat=2 -Wvla -Werror"

case $OUT in
'' | /)
    echo "error: FUZZ_OUT must name a directory, not '$OUT'" >&2
    exit 2 ;;
esac
case $FUZZ_SECONDS in
'' | *[!0-9]* | 0)
    echo "error: FUZZ_SECONDS must be a positive number of seconds, not '$FUZZ_SECONDS'" >&2
    exit 2 ;;
esac
targets=${*:-$ALL_TARGETS}
for t in $targets; do
    [ -f "tests/fuzz/$t.c" ] || { echo "error: no such target: $t" >&2; exit 2; }
done

if [ -z "${CLANG:-}" ]; then
    CLANG=clang
    if ! command -v clang >/dev/null 2>&1 && command -v clang-14 >/dev/null 2>&1; then
        CLANG=clang-14
    fi
fi
mkdir -p "$OUT" || exit 2

# True when $CLANG can link a libFuzzer target with ASan and UBSan.
toolchain_ok() {
    command -v "$CLANG" >/dev/null 2>&1 || return 1
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
        >"$OUT/probe.c" &&
        "$CLANG" $SAN -o "$OUT/probe" "$OUT/probe.c" >"$OUT/probe.log" 2>&1
}

if ! toolchain_ok; then
    echo "clang with the libFuzzer runtime is missing; install it with:"
    echo "  apt-get install -y $APT_PKGS"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing $APT_PKGS"
        # shellcheck disable=SC2086 # APT_PKGS is a list
        if ! apt-get update -qq ||
            ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $APT_PKGS; then
            echo "error: apt-get failed" >&2
            exit 2
        fi
        command -v "$CLANG" >/dev/null 2>&1 || CLANG=clang-14
        toolchain_ok || { echo "error: still cannot link a fuzzer:" >&2; cat "$OUT/probe.log" >&2; exit 2; }
    else
        echo "error: run the command above as root (sudo), then run this again" >&2
        exit 2
    fi
fi

# Build: the common sources once, then one binary per target.
mkdir -p "$OUT/obj" || exit 2
objs=""
for src in $COMMON_SRC; do
    obj="$OUT/obj/$(basename "$src" .c).o"
    "$CLANG" $CFLAGS -c "$src" -o "$obj" || { echo "error: cannot build $src" >&2; exit 2; }
    objs="$objs $obj"
done
for t in $targets; do
    "$CLANG" $CFLAGS -o "$OUT/$t" "tests/fuzz/$t.c" $objs ||
        { echo "error: cannot build $t" >&2; exit 2; }
done

# Run each target on a fresh copy of its seeds.
status=0
for t in $targets; do
    corpus="$OUT/corpus-$t"
    crashes="$OUT/crashes-$t"
    log="$OUT/$t.log"
    dict=""
    case $t in fuzz_http_*) dict="-dict=tests/fuzz/http.dict" ;; esac

    rm -rf "$corpus" "$crashes"
    mkdir -p "$corpus" "$crashes" || exit 2
    cp tests/fuzz/corpus/"$t"/* "$corpus"/ || exit 2

    "$OUT/$t" -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$crashes/" $dict "$corpus" >"$log" 2>&1
    rc=$?

    runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1/p' "$log")
    secs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\2/p' "$log")
    crash=$(find "$crashes" -type f 2>/dev/null | head -n 1)
    if [ "$rc" = 0 ] && [ -n "$runs" ] && [ -z "$crash" ]; then
        echo "$t: $runs execs in $secs s, no crash"
        continue
    fi
    status=1
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "$t: CRASH (exit $rc) after ${execs:-?} execs; log: $log"
    grep -E '^(invariant violated|==[0-9]+==ERROR|SUMMARY:)|runtime error:' "$log" | head -n 5 | sed 's/^/  /'
    if [ -n "$crash" ]; then
        echo "  input kept at $crash"
        echo "  reproduce: $OUT/$t $crash"
    fi
done
exit $status

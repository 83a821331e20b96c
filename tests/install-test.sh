#!/bin/sh
# `make install` into a scratch DESTDIR, then everything a user relies on:
# exactly the listed files with their modes (and no bench), the installed
# binaries run, both man pages render without a warning and document every
# option of --help, a small program builds against the installed header and
# library through pkg-config alone and signs in to the installed server,
# the systemd unit passes `systemd-analyze verify` (when available), the
# directory variables are honoured, and `make uninstall` leaves no file.
#
# Run by `make test` (PCSIG_BUILD, PCSIG_CC and PCSIG_SANITIZE name the build
# it checks); standalone: tests/install-test.sh from the top directory.
set -eu
cd "$(dirname "$0")/.."
build=${PCSIG_BUILD:-build}
cc=${PCSIG_CC:-cc}
sanitize=${PCSIG_SANITIZE:-}
# A make of its own, not a sub-make of `make test` (no jobserver to share).
unset MAKEFLAGS MFLAGS MAKELEVEL || true

tmp=$(mktemp -d /tmp/pcsig-install-test-XXXXXX)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

checks=0
fail() {
    echo "install-test: FAIL: $*" >&2
    exit 1
}
ok() {
    checks=$((checks + 1))
}
# Quiet make with our build's settings; its output is shown on failure only.
mk() {
    if ! make --no-print-directory BUILD="$build" CC="$cc" SANITIZE="$sanitize" "$@" \
        >"$tmp/make.log" 2>&1; then
        cat "$tmp/make.log" >&2
        fail "make $*"
    fi
}

version=$(sed -n 's/^#define PCSIG_VERSION "\(.*\)"$/\1/p' common/version.h)
[ -n "$version" ] || fail "no PCSIG_VERSION in common/version.h"

# The example configuration is installed when dist/pcsig-server.conf exists;
# until it does, the rule is checked with a stand-in.
conf_src=dist/pcsig-server.conf
conf_arg=
if [ ! -f "$conf_src" ]; then
    conf_src=$tmp/pcsig-server.conf
    printf '# stand-in for dist/pcsig-server.conf\nport = 8888\n' >"$conf_src"
    conf_arg="CONF_EXAMPLE=$conf_src"
    echo "install-test: dist/pcsig-server.conf absent; checking its rule with a stand-in"
fi

# ---- install into DESTDIR, default directories ----------------------------
dest=$tmp/root
prefix=/usr/local
mk install DESTDIR="$dest" PREFIX="$prefix" ${conf_arg:+"$conf_arg"}
p=$dest$prefix

# Exactly these files, these modes.
expected="
755 bin/pcsig-server
755 bin/pcsig-client
644 share/man/man1/pcsig-server.1
644 share/man/man1/pcsig-client.1
644 include/pcsig/pcsig_client.h
644 lib/libpcsig-client.a
644 lib/pkgconfig/pcsig-client.pc
644 share/doc/pcsig/pcsig-server.conf.example
644 share/doc/pcsig/protocol.md
644 lib/systemd/system/pcsig-server.service"
while read -r mode file; do
    [ -n "$file" ] || continue
    [ -f "$p/$file" ] || fail "$prefix/$file not installed"
    got=$(stat -c %a "$p/$file")
    [ "$got" = "$mode" ] || fail "$prefix/$file has mode $got, want $mode"
done <<EOF_LIST
$expected
EOF_LIST
ok
want_list=$(echo "$expected" | awk 'NF { print "'"$prefix"'/" $2 }' | sort)
got_list=$(cd "$dest" && find . ! -type d | sed 's|^\.||' | sort)
[ "$got_list" = "$want_list" ] || {
    printf 'installed:\n%s\nwanted:\n%s\n' "$got_list" "$want_list" >&2
    fail "install wrote other files than the listed ones"
}
ok
[ ! -e "$p/bin/pcsig-bench" ] || fail "the bench is installed"
cmp -s "$conf_src" "$p/share/doc/pcsig/pcsig-server.conf.example" ||
    fail "pcsig-server.conf.example differs from $conf_src"
cmp -s client/pcsig_client.h "$p/include/pcsig/pcsig_client.h" || fail "header differs"
cmp -s docs/protocol.md "$p/share/doc/pcsig/protocol.md" || fail "protocol.md differs"
ok

# ---- the binaries run ----------------------------------------------------
for b in pcsig-server pcsig-client; do
    # The first line; pcsig-client adds a second one (media support).
    out=$("$p/bin/$b" --version) || fail "$b --version exited $?"
    out=$(printf '%s\n' "$out" | head -n 1)
    [ "$out" = "$b $version" ] || fail "$b --version printed '$out', want '$b $version'"
done
ok

# ---- man pages: render cleanly, match the version, cover --help ----------
for b in pcsig-server pcsig-client; do
    page=$p/share/man/man1/$b.1
    warn=$(groff -man -Tutf8 -ww -z "$page" 2>&1) || fail "groff $b.1 exited $?"
    [ -z "$warn" ] || fail "groff warns about $b.1: $warn"
    if command -v man >/dev/null; then
        warn=$(man --warnings -l "$page" 2>&1 >/dev/null) || fail "man -l $b.1 exited $?"
        [ -z "$warn" ] || fail "man warns about $b.1: $warn"
        found=$(MANPATH=$p/share/man man -w "$b") || fail "man -w $b: not found under MANPATH"
        [ "$found" = "$page" ] || fail "man -w $b found $found"
    fi
    grep -q "^\.TH [A-Z-]* 1 .*\"pcsig $version\"" "$page" || fail "$b.1 is not for pcsig $version"
    # Every option of --help is documented in the installed page.
    missing=$(tests/undocumented-options.sh "$p/bin/$b" "$page") || fail "$b --help lists no option"
    [ -z "$missing" ] || fail "$b.1 does not document $(printf '%s\n' "$missing" | tr '\n' ' ')(listed by $b --help)"
done
ok

# ---- the library: only its API exported, usable through pkg-config alone ---
# One nm for both: its external symbols, defined ("ADDR T name") and
# undefined ("U name").
nm -g "$p/lib/libpcsig-client.a" >"$tmp/syms" || fail "nm libpcsig-client.a"
exported=$(awk 'NF == 3 { print $3 }' "$tmp/syms" | grep -v '^pcsig_' || true)
[ -z "$exported" ] || fail "libpcsig-client.a exports non-API symbols: $exported"
# The CLI's libraries stay the CLI's: the archive needs no jansson or libedit
# (its .pc file names only OpenSSL), and the installed client links them.
needs=$(awk 'NF == 2 && $1 ~ /^[Uw]$/ { print $2 }' "$tmp/syms" |
    grep -E '^(json_|rl_|el_|add_history|using_history)' || true)
[ -z "$needs" ] || fail "libpcsig-client.a needs the CLI's libraries: $needs"
grep -qE 'jansson|edit' "$p/lib/pkgconfig/pcsig-client.pc" && fail "pcsig-client.pc names jansson or libedit"
if command -v ldd >/dev/null; then
    ldd "$p/bin/pcsig-client" | grep -q libjansson || fail "pcsig-client is not linked with jansson"
fi
ok

cat >"$tmp/app.c" <<'EOF'
/* Signs in to the server on 127.0.0.1:<port> and exits 0 once signed in. */
#include <pcsig/pcsig_client.h>

#include <stdio.h>
#include <stdlib.h>

/* Names the library uses inside: they must not collide with a program's. */
int buf_init(void);
int log_msg(int x);
int buf_init(void) { return 1; }
int log_msg(int x) { return x; }

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    struct pcsig_client_options o = {0};
    o.server = "127.0.0.1";
    o.port = (uint16_t)strtoul(argv[1], NULL, 10);
    o.name = "install-test";
    pcsig_client_t *c = pcsig_client_new(&o);
    if (!c || pcsig_client_connect(c) != 0)
        return 1;
    int rc = 1;
    struct pcsig_event *ev;
    while (rc != 0 && (ev = pcsig_client_next_event(c, 10000)) != NULL) {
        if (ev->type == PCSIG_EV_SIGNED_IN) {
            printf("signed in as %llu\n", (unsigned long long)ev->own_id);
            rc = 0;
        }
        pcsig_event_free(ev);
    }
    pcsig_client_free(c);
    return rc + log_msg(0) + buf_init() - 1;
}
EOF
# Straight from DESTDIR, as a packager or a user trying a staged install
# would: PKG_CONFIG_PATH only, no PKG_CONFIG_SYSROOT_DIR. The .pc file's
# paths are relative to its own directory, so -I and -L name the staged tree.
unset PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_LIBDIR || true
PKG_CONFIG_PATH=$p/lib/pkgconfig
export PKG_CONFIG_PATH
[ "$(pkg-config --modversion pcsig-client)" = "$version" ] || fail "pcsig-client.pc version"
# The path variables resolve into the staged tree.
pc_dir() {
    d=$(pkg-config --variable="$1" pcsig-client) || fail "pkg-config --variable=$1"
    realpath -m "$d"
}
[ "$(pc_dir includedir)" = "$p/include" ] || fail "includedir is $(pc_dir includedir), want $p/include"
[ "$(pc_dir libdir)" = "$p/lib" ] || fail "libdir is $(pc_dir libdir), want $p/lib"
[ "$(pc_dir prefix)" = "$p" ] || fail "prefix is $(pc_dir prefix), want $p"
# Only a static archive is installed: --static brings in OpenSSL.
flags=$(pkg-config --static --cflags --libs pcsig-client) || fail "pkg-config pcsig-client"
san=
[ -z "$sanitize" ] || san="-fsanitize=$sanitize"
# shellcheck disable=SC2086 # word splitting of the flags is intended
$cc -std=c11 -Wall -Wextra -Werror -pedantic $san -o "$tmp/app" "$tmp/app.c" $flags ||
    fail "a program cannot build against the installed library (flags: $flags)"
unset PKG_CONFIG_PATH
ok

# It runs: signs in to the installed server.
"$p/bin/pcsig-server" --bind 127.0.0.1 --port 0 --port-file "$tmp/port" \
    >/dev/null 2>"$tmp/server.log" &
server_pid=$!
i=0
while [ ! -s "$tmp/port" ]; do
    i=$((i + 1))
    [ $i -le 200 ] || { cat "$tmp/server.log" >&2; fail "the installed server did not start"; }
    kill -0 "$server_pid" 2>/dev/null || { cat "$tmp/server.log" >&2; fail "the installed server exited"; }
    sleep 0.05
done
out=$(timeout 30 "$tmp/app" "$(cat "$tmp/port")") || {
    cat "$tmp/server.log" >&2
    fail "the program built against the library did not sign in"
}
[ "$out" = "signed in as 1" ] || fail "the program printed '$out'"
kill -TERM "$server_pid"
rc=0
wait "$server_pid" || rc=$?
server_pid=
[ $rc -eq 0 ] || { cat "$tmp/server.log" >&2; fail "the installed server exited $rc on SIGTERM"; }
ok

# ---- the systemd unit -------------------------------------------------------
unit=$p/lib/systemd/system/pcsig-server.service
grep -qx "ExecStart=$prefix/bin/pcsig-server --config /etc/pcsig/pcsig-server.conf" "$unit" ||
    fail "unit's ExecStart: $(grep ExecStart= "$unit")"
docs=$(sed -n 's/^Documentation=//p' "$unit")
[ -n "$docs" ] || fail "the unit has no Documentation="
for ref in $docs; do
    case $ref in
    'man:pcsig-server(1)' | 'man:pcsig-client(1)') ;; # installed and found by man -w above
    man:*) fail "the unit's Documentation= names $ref, not an installed page" ;;
    esac
done
if command -v systemd-analyze >/dev/null; then
    # verify checks that ExecStart's binary exists: point it into DESTDIR.
    # Its man check (--man=yes: a man run of its own, most of its CPU) is
    # the one above: Documentation= may name only the pages that man -w
    # found in DESTDIR through MANPATH.
    mkdir "$tmp/unit"
    sed "s|^ExecStart=$prefix/bin/|ExecStart=$p/bin/|" "$unit" >"$tmp/unit/pcsig-server.service"
    out=$(systemd-analyze verify --man=no "$tmp/unit/pcsig-server.service" 2>&1) ||
        fail "systemd-analyze verify: $out"
    [ -z "$out" ] || fail "systemd-analyze verify: $out"
    ok
else
    echo "install-test: skip: systemd-analyze not available, unit not verified"
fi

# ---- uninstall leaves nothing ----------------------------------------------
mk uninstall DESTDIR="$dest" PREFIX="$prefix"
left=$(find "$dest" ! -type d)
[ -z "$left" ] || fail "left after uninstall: $left"
[ ! -e "$p/include/pcsig" ] || fail "uninstall left include/pcsig"
[ ! -e "$p/share/doc/pcsig" ] || fail "uninstall left share/doc/pcsig"
ok

# ---- other directories: PREFIX, SYSCONFDIR, SYSTEMDUNITDIR, MANDIR ----------
dest2=$tmp/root2
vars="PREFIX=/opt/pcsig SYSCONFDIR=/etc/opt SYSTEMDUNITDIR=/lib/systemd/system MANDIR=/opt/man"
vars="$vars PKGCONFIGDIR=/opt/share/pkgconfig"
# shellcheck disable=SC2086
mk install DESTDIR="$dest2" $vars ${conf_arg:+"$conf_arg"}
for f in opt/pcsig/bin/pcsig-server opt/pcsig/lib/libpcsig-client.a opt/man/man1/pcsig-client.1 \
    opt/share/pkgconfig/pcsig-client.pc \
    lib/systemd/system/pcsig-server.service opt/pcsig/share/doc/pcsig/pcsig-server.conf.example \
    opt/pcsig/share/doc/pcsig/protocol.md; do
    [ -f "$dest2/$f" ] || fail "/$f not installed with $vars"
done
grep -qx 'ExecStart=/opt/pcsig/bin/pcsig-server --config /etc/opt/pcsig/pcsig-server.conf' \
    "$dest2/lib/systemd/system/pcsig-server.service" || fail "unit paths with $vars"
# The .pc file in a directory of its own still points at the library's.
PKG_CONFIG_PATH=$dest2/opt/share/pkgconfig
export PKG_CONFIG_PATH
[ "$(pc_dir prefix)" = "$dest2/opt/pcsig" ] || fail "pcsig-client.pc prefix with $vars"
[ "$(pc_dir libdir)" = "$dest2/opt/pcsig/lib" ] || fail "pcsig-client.pc libdir with $vars"
[ "$(pc_dir includedir)" = "$dest2/opt/pcsig/include" ] ||
    fail "pcsig-client.pc includedir with $vars"
unset PKG_CONFIG_PATH
if grep -rq "$dest2" "$dest2"; then fail "DESTDIR written into an installed file"; fi
# shellcheck disable=SC2086
mk uninstall DESTDIR="$dest2" $vars
left=$(find "$dest2" ! -type d)
[ -z "$left" ] || fail "left after uninstall with $vars: $left"
ok

echo "install-test: $checks checks passed"

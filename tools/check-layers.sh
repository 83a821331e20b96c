#!/bin/sh
# Fails (exit 1) when the server's layering breaks (issue 14 item 1):
#
#  1. struct server (server_threads.h) and struct session (session.h) are
#     private to the server core: the files that run the threads and the
#     sessions they run. server.h (the lifecycle, struct server left
#     incomplete) is for the core and main.c. No other file of common/,
#     server/, client/ or tools/ includes them, and no other server/ file
#     names the types (main.c: a struct server *). Tests may: a unit
#     harness reaches into what it tests.
#  2. Only session.c writes a session's fields. The one exception is a
#     list's link, written by the list's own module under the list's lock:
#     wq_next by workers.c, grave_next by poller.c.
#  3. The #include graph among server/ modules has no cycle, with the core
#     counted as one module (its files share struct server by design). So
#     router, registry, web, cluster, access, metrics... never include
#     the core back: they get what they need passed to them.
#
# Plain text matching, not a compiler: comments and string literals are
# blanked first, and a session pointer is anything but `srv`, the core's
# name for the server (whose fields share some names with the session's).
cd "$(dirname "$0")/.." || exit 2
CORE='acceptor.c poller.c workers.c reaper.c server.c session.c'
fail=0

# Comments and literals blanked (FILE:LINE:TEXT): see strip-c.awk.
strip() {
    awk -f "$(dirname "$0")/strip-c.awk" "$@"
}

# ---- 1. who includes the core's headers -------------------------------------
core_re=$(echo "$CORE" | sed 's/ /|/g; s/\./\\./g')
bad=$(find common server client tools -name '*.[ch]' -exec grep -EH \
          '^[[:space:]]*#[[:space:]]*include[[:space:]]*"(server_threads|session|server)\.h"' {} + |
      grep -vE "^server/($core_re|server_threads\.h|session\.h|server\.h):" |
      grep -vE '^server/main\.c:.*"server\.h"')
if [ -n "$bad" ]; then
    echo "check-layers: the server core's private headers included outside it ($CORE;"
    echo "server.h also by main.c):"
    echo "$bad"
    fail=1
fi

# ... nor do they name the types, as a hand-written declaration would ...
outside=$(for f in server/*.[ch]; do
              case " $CORE server_threads.h session.h server.h " in
              *" ${f#server/} "*) ;;
              *) echo "$f" ;;
              esac
          done)
# shellcheck disable=SC2086 # one file a word
named=$(strip $outside | grep -E ':[0-9]+:.*struct[[:space:]]+(server|session)([^A-Za-z0-9_]|$)' |
        grep -vE '^server/main\.c:[0-9]+:.*struct[[:space:]]+server[[:space:]]*\*')
if [ -n "$named" ]; then
    echo "check-layers: struct server or struct session named outside the server core:"
    echo "$named"
    fail=1
fi

# ... and server.h keeps struct server incomplete, or main.c would see it all.
if strip server/server.h | grep -qE ':[0-9]+:[[:space:]]*struct server[[:space:]]*\{'; then
    echo "check-layers: server/server.h defines struct server (its place: server_threads.h)"
    fail=1
fi

# ---- 2. session fields written outside session.c ----------------------------
# Only the core sees struct session (rule 1), so only its files are read.
fields=$(strip server/session.h |
         awk '{ sub(/^[^:]*:[0-9]+:/, "") } /^struct session \{/ { on = 1; next }
              on && /^\};/ { exit } on' |
         sed -e 's/\[[^]]*\]//g' -e 's/([^)]*)//g' |
         grep -oE '[A-Za-z_][A-Za-z0-9_]*[[:space:]]*(,|;)' | tr -d ' \t,;' | sort -u)
[ -n "$fields" ] || { echo "check-layers: no fields found in struct session"; exit 2; }
for c in $CORE; do
    [ "$c" = session.c ] && continue
    case $c in
    workers.c) allowed=wq_next ;;
    poller.c) allowed=grave_next ;;
    *) allowed= ;;
    esac
    F=$(echo "$fields" | grep -vxF "${allowed:-/}" | paste -sd'|' -)
    E='[A-Za-z_][]A-Za-z0-9_.[>-]*'
    # srv->x is the server's field x: out of the way first; then reads
    # through atomic_load(&...); what is left of ->field assigned,
    # incremented or given by address is a write.
    hits=$(strip "server/$c" | sed -E -e 's/srv->[A-Za-z_][A-Za-z0-9_]*/SRV/g' \
                                      -e 's/atomic_load(_explicit)?\(&[^,)]*//g' |
           grep -E -e "->($F)[[:space:]]*([-+*/%|&^]|<<|>>)?=([^=]|\$)" \
                   -e "->($F)[[:space:]]*(\\+\\+|--)" \
                   -e "(\\+\\+|--)[[:space:]]*$E->($F)([^A-Za-z0-9_]|\$)" \
                   -e "&[[:space:]]*$E->($F)([^A-Za-z0-9_]|\$)")
    if [ -n "$hits" ]; then
        echo "check-layers: a session field written outside session.c (give session.c a function):"
        echo "$hits"
        fail=1
    fi
done

# ---- 3. no cycle among server/ modules ----------------------------------------
# "from to" for each #include "to.h" of server/from.[ch] that names a server/
# header, with every file of the core mapped to the one module "core".
edges=$(grep -EH '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^"]*"' server/*.[ch] |
        sed -E 's|^server/([^:]*)\.[ch]:.*"([^"]*)".*|\1 \2|' |
        while read -r from h; do
            [ -f "server/$h" ] && echo "$from ${h%.h}"
        done |
        awk -v core="$CORE" '
            BEGIN { n = split(core, c, " "); for (i = 1; i <= n; i++) { sub(/\.c$/, "", c[i]); in_core[c[i]] = 1 }
                    in_core["server_threads"] = 1 }
            { a = ($1 in in_core) ? "core" : $1; b = ($2 in in_core) ? "core" : $2
              if (a != b) print a, b }' | sort -u)
if ! loop=$(echo "$edges" | tsort 2>&1 >/dev/null) || [ -n "$loop" ]; then
    echo "check-layers: the #include graph of server/ has a cycle (module -> module it includes):"
    echo "$loop"
    fail=1
fi

[ $fail = 0 ] || exit 1
echo "check-layers: ok (struct server and struct session private to the core; no include cycle)"

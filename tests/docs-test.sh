#!/bin/sh
# The documentation covers what the programs know. The lists are taken from
# the source and the binaries, so this test cannot go stale:
#   - every interactive command of pcsig-client (IS("word") in client/cli_cmd.c)
#     is in README.md's client section and in pcsig-client.1's "Interactive
#     commands";
#   - every --json command (strcmp(cmd, "word")) appears as "cmd":"word" in
#     both;
#   - every event name (the forms table and cli_ev_object in client/cli_*.c) is in
#     README.md's "Events:" paragraph and pcsig-client.1's "Events, by
#     their event member" list;
#   - the start-up lines the client prints (say() literals but the help line)
#     appear in both;
#   - every option of `pcsig-server --help` and `pcsig-client --help` is in
#     its man page (when the binaries are built: PCSIG_SERVER, PCSIG_CLIENT);
#   - README.md and the man pages point at docs/protocol.md, which exists,
#     and nothing points at the private ../shared/protocol.md.
# Every gap is listed (not just the first); the exit status is 1 if any.
#
# Run by `make test`; standalone: tests/docs-test.sh from the top directory.
set -eu
gaps_file=$(mktemp)
trap 'rm -rf "$gaps_file" "$gaps_file.d"' EXIT
cd "$(dirname "$0")/.."
src="client/main.c client/cli_*.c" # the CLI (named so in the messages)
src_text() { cat client/main.c client/cli_*.c; }
readme=README.md
cman=man/pcsig-client.1
sman=man/pcsig-server.1

gaps=0
gap() {
    echo "docs-test: MISSING: $*" >&2
    gaps=$((gaps + 1))
}
die() {
    echo "docs-test: FAIL: $*" >&2
    exit 1
}

# ---- the lists, from the source ------------------------------------------
text_cmds=$(src_text | grep -o 'IS("[a-z_]*")' | sed 's/^IS("\(.*\)")$/\1/' | sort -u)
json_cmds=$(src_text | grep -o 'strcmp(cmd, "[a-z_]*")' | sed 's/^.*"\(.*\)")$/\1/' | sort -u)
# An event's name: its entry in cli_render.c's table ([PCSIG_EV_X] = {"name", ...)
# or an object made on the spot (cli_ev_object("name")).
events=$( (src_text | grep -oE '^ *\[PCSIG_EV_[A-Z_]+\] = \{"[a-z_]+"' | grep -oE '"[a-z_]+"'
    src_text | grep -oE 'cli_ev_object\("[a-z_]+"\)' | grep -oE '"[a-z_]+"') | tr -d '"' | sort -u)
# say(cli, "...") and say(&cli, "..."): the fixed text before any %, minus
# the help line (it lists the commands, checked above one by one).
says=$(src_text | grep -o 'say(&\{0,1\}cli, "[^"%]*' | sed 's/^say(&\{0,1\}cli, "//; s/ *$//' |
    grep -v '^commands:' | sort -u)

# A broken extraction must not pass as "nothing to check".
count() { printf '%s\n' "$1" | grep -c . || true; }
[ "$(count "$text_cmds")" -ge 6 ] || die "found only these interactive commands in $src: $text_cmds"
[ "$(count "$json_cmds")" -ge 5 ] || die "found only these --json commands in $src: $json_cmds"
[ "$(count "$events")" -ge 10 ] || die "found only these events in $src: $events"
[ "$(count "$says")" -ge 2 ] || die "found only these start-up lines in $src: $says"

# ---- the places to look in ---------------------------------------------------
# README.md: the client's section (## The client ... next ## ), and its
# "Events:" paragraphs (from a line holding "Events" to the next blank line).
readme_client=$(awk '/^## The client/ { on = 1; next } /^## / { on = 0 } on' "$readme")
readme_events=$(printf '%s\n' "$readme_client" | awk '/Events/ { on = 1 } /^$/ { on = 0 } on')
# The man page's source with \- as -, \(dq as ", and the font escapes gone.
man_text() { sed 's/\\-/-/g; s/\\(dq/"/g; s/\\f[BIRP]//g; s/\\&//g' "$1"; }
cman_src=$(man_text "$cman")
cman_cmds=$(printf '%s\n' "$cman_src" | awk '/^\.SS Interactive commands/ { on = 1; next } /^\.S[SH]/ { on = 0 } on')
cman_events=$(printf '%s\n' "$cman_src" | awk '/^Events, by their/ { on = 1; next } /^\.S[SH]/ { on = 0 } on')

# Every look-up below in one awk (a grep per command, event and line was
# most of this test's CPU): the texts and the lists go in as files, each
# missing item comes out as one line, in the order of the checks.
# A word set in bold by a man macro line (.B, .BR, .RB, .BI, .IB, .TP
# items): ^\.(B|BR|RB|BI|IB) (.*[ "])?WORD([ ",.;:)]|$).
w=$gaps_file.d
mkdir "$w"
printf '%s\n' "$text_cmds" >"$w/text_cmds"
printf '%s\n' "$json_cmds" >"$w/json_cmds"
printf '%s\n' "$events" >"$w/events"
printf '%s\n' "$says" >"$w/says"
printf '%s\n' "$readme_client" >"$w/readme_client"
printf '%s\n' "$readme_events" >"$w/readme_events"
printf '%s\n' "$cman_src" >"$w/cman_src"
printf '%s\n' "$cman_cmds" >"$w/cman_cmds"
printf '%s\n' "$cman_events" >"$w/cman_events"
awk -v src="$src" -v readme="$readme" -v cman="$cman" -v w="$w/" -v sq="'" '
    # has(f, s): a line of file f holds the string s; like(f, re): matches re.
    function has(f, s,    i) {
        for (i = 1; i <= n[f]; i++)
            if (index(line[f, i], s))
                return 1
        return 0
    }
    function like(f, re,    i) {
        for (i = 1; i <= n[f]; i++)
            if (line[f, i] ~ re)
                return 1
        return 0
    }
    function bold(f, word) {
        return like(f, "^\\.(B|BR|RB|BI|IB) (.*[ \"])?" word "([ \",.;:)]|$)")
    }
    {
        f = FILENAME == readme ? "readme" : FILENAME == cman ? "cman" : substr(FILENAME, length(w) + 1)
        line[f, ++n[f]] = $0
    }
    END {
        q = "\""
        for (i = 1; i <= n["text_cmds"]; i++) {
            c = line["text_cmds", i]
            if (c == "") continue
            if (!like("readme_client", "`" c "( |`)"))
                print "interactive command " sq c sq " (" src ") not in " readme ", section " sq "## The client" sq " (as `" c " ...`)"
            if (!bold("cman_cmds", c))
                print "interactive command " sq c sq " (" src ") not in " cman ", section " sq "Interactive commands" sq
        }
        for (i = 1; i <= n["json_cmds"]; i++) {
            c = line["json_cmds", i]
            if (c == "") continue
            if (!has("readme", q "cmd" q ":" q c q))
                print "--json command " sq c sq " (" src ") not in " readme " as {" q "cmd" q ":" q c q "}"
            if (!has("cman", q "cmd" q ":" q c q))
                print "--json command " sq c sq " (" src ") not in " cman " as {" q "cmd" q ":" q c q "}"
        }
        for (i = 1; i <= n["events"]; i++) {
            e = line["events", i]
            if (e == "") continue
            if (!has("readme_events", "`" e "`"))
                print "event " sq e sq " (" src ") not in " readme sq "s " sq "Events:" sq " list (as `" e "`)"
            if (!bold("cman_events", e))
                print "event " sq e sq " (" src ") not in " cman sq "s " sq "Events, by their event member" sq " list"
        }
        for (i = 1; i <= n["says"]; i++) {
            l = line["says", i]
            if (l == "") continue
            if (!has("readme", l))
                print "start-up/status line " sq l sq " (" src ") not in " readme
            if (!has("cman_src", l))
                print "start-up/status line " sq l sq " (" src ") not in " cman
        }
    }' "$w/text_cmds" "$w/json_cmds" "$w/events" "$w/says" "$w/readme_client" \
    "$w/readme_events" "$w/cman_src" "$w/cman_cmds" "$w/cman_events" "$readme" "$cman" >"$gaps_file"
while IFS= read -r g; do gap "$g"; done <"$gaps_file"

# ---- every option of --help in the man page ------------------------------------
check_opts() { # binary man-page
    [ -n "$1" ] && [ -x "$1" ] || {
        echo "docs-test: skip: no binary to ask for --help ($2 not checked against it)"
        return 0
    }
    missing=$(tests/undocumented-options.sh "$1" "$2") || {
        gap "$(basename "$1") --help lists no option, or $2 cannot be read"
        return 0
    }
    for o in $missing; do
        gap "option $o ($(basename "$1") --help) not in $2"
    done
}
check_opts "${PCSIG_SERVER:-build/pcsig-server}" "$sman"
check_opts "${PCSIG_CLIENT:-build/pcsig-client}" "$cman"

# ---- the protocol reference ---------------------------------------------------
[ -s docs/protocol.md ] || gap "docs/protocol.md (the protocol reference) does not exist"
for f in "$readme" "$cman" "$sman"; do
    grep -qE '(docs|doc/pcsig)/protocol\.md' "$f" || gap "$f does not point at the protocol reference (protocol.md)"
    if grep -n 'shared/protocol' "$f" >/dev/null; then
        gap "$f names ../shared/protocol.md, which a clone does not have: $(grep -n 'shared/protocol' "$f" | head -3)"
    fi
done

if [ "$gaps" -gt 0 ]; then
    echo "docs-test: FAIL: $gaps gap(s) between the programs and their documentation" >&2
    exit 1
fi
echo "docs-test: $(count "$text_cmds") commands, $(count "$json_cmds") --json commands," \
    "$(count "$events") events, $(count "$says") start-up lines and every --help option documented"

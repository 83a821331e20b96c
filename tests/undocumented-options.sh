#!/bin/sh
# The options BINARY --help lists that MANPAGE does not name, one per line
# (nothing when every one is documented). Whole words both: --port is not
# found in --port-file. Exit 2 when --help lists no option at all (nothing
# would be checked). Used by docs-test.sh (the pages in the tree against
# the built binaries) and install-test.sh (the installed ones).
set -eu
[ $# -eq 2 ] || { echo "usage: $0 BINARY MANPAGE" >&2; exit 2; }
words() { grep -o -- '--[a-z][a-z0-9-]*' | sort -u || true; }
opts=$("$1" --help | words)
[ -n "$opts" ] || { echo "$1 --help lists no option" >&2; exit 2; }
[ -r "$2" ] || { echo "cannot read $2" >&2; exit 2; }
# \- is how a man page spells a hyphen.
sed 's/\\-/-/g' "$2" | words | awk -v opts="$opts" '
    { named[$0] = 1 }
    END { n = split(opts, o, "\n"); for (i = 1; i <= n; i++) if (!(o[i] in named)) print o[i] }'

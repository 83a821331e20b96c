#!/bin/sh
# Fails (exit 1) when C sources call a function pcsig bans: each has a bounded
# or thread-safe replacement (snprintf/buf_t, strtoull + checks / proto_parse_*,
# poll/epoll, getaddrinfo, inet_ntop, localtime_r/gmtime_r, strerror_r).
# Comments and string literals are blanked first (line numbers kept), so a
# ban mentioned in prose passes while any use in code, including a bare
# reference such as `f = atoi;`, does not.
cd "$(dirname "$0")/.." || exit 2
banned='sprintf|vsprintf|strcpy|strcat|gets|atoi|atol|strtok|select|gethostbyname|inet_ntoa|localtime|strerror'
files=$(git ls-files '*.c' '*.h' 2>/dev/null)
[ -n "$files" ] || files=$(find common server client tools tests -name '*.[ch]')
# Blank comments, string and character literals, keeping every newline.
strip='
FNR == 1 { incomment = 0 }
{
    out = ""; i = 1; n = length($0)
    while (i <= n) {
        c = substr($0, i, 1); d = substr($0, i, 2)
        if (incomment) {
            if (d == "*/") { incomment = 0; i += 2 } else i++
            continue
        }
        if (d == "/*") { incomment = 1; i += 2; out = out " "; continue }
        if (d == "//") break
        if (c == "\"" || c == "\047") {
            q = c; i++
            while (i <= n && substr($0, i, 1) != q) { if (substr($0, i, 1) == "\\") i++; i++ }
            i++; out = out q q; continue
        }
        out = out c; i++
    }
    printf "%s:%d:%s\n", FILENAME, FNR, out
}'
# One awk over every file (a comment never runs on into the next one).
# shellcheck disable=SC2086 # one word a file name
hits=$(awk "$strip" $files |
       grep -E "^[^:]+:[0-9]+:.*(^|[^A-Za-z0-9_])($banned)([^A-Za-z0-9_]|$)" |
       grep -vE "^[^:]+:[0-9]+:.*(->|\.)($banned)([^A-Za-z0-9_]|$)")
if [ -n "$hits" ]; then
    echo "banned functions used:"
    echo "$hits"
    exit 1
fi
echo "banned-function check: clean"

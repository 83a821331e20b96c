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
strip=$(dirname "$0")/strip-c.awk
# One awk over every file (a comment never runs on into the next one).
# shellcheck disable=SC2086 # one word a file name
stripped=$(awk -f "$strip" $files) || {
    echo "check-banned: could not read the sources ($strip failed)" >&2
    exit 2
}
hits=$(printf '%s\n' "$stripped" |
       grep -E "^[^:]+:[0-9]+:.*(^|[^A-Za-z0-9_])($banned)([^A-Za-z0-9_]|$)" |
       grep -vE "^[^:]+:[0-9]+:.*(->|\.)($banned)([^A-Za-z0-9_]|$)")
if [ -n "$hits" ]; then
    echo "banned functions used:"
    echo "$hits"
    exit 1
fi
echo "banned-function check: clean"

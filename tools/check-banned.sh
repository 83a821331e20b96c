#!/bin/sh
# Fails (exit 1) when C sources call a function pcsig bans: each has a bounded
# or thread-safe replacement (snprintf/buf_t, strtoull + checks / proto_parse_*,
# poll/epoll, getaddrinfo, inet_ntop, localtime_r/gmtime_r, strerror_r).
cd "$(dirname "$0")/.." || exit 2
banned='sprintf|vsprintf|strcpy|strcat|gets|atoi|atol|strtok|select|gethostbyname|inet_ntoa|localtime|strerror'
hits=$(grep -nE "(^|[^A-Za-z0-9_])($banned)[[:space:]]*\(" \
        $(git ls-files '*.c' '*.h' 2>/dev/null || find common server client tools tests -name '*.[ch]') \
        | grep -vE '^[^:]+:[0-9]+:[[:space:]]*(\*|//|/\*)' )
if [ -n "$hits" ]; then
    echo "banned functions used:"
    echo "$hits"
    exit 1
fi
echo "banned-function check: clean"

#!/bin/sh
# The page in a real headless Chromium: installs what it needs when missing
# (Debian's chromium-headless-shell with apt-get when root: Chromium's
# headless shell, without the full browser's windows, tab strip and
# omnibox, costs about a third less CPU per test file than chromium's own
# --headless, and runs the same renderer, WebRTC and fake media devices;
# PCSIG_CHROMIUM=/usr/bin/chromium runs the full browser instead; the
# full browser, Debian's chromium, runs native.test.mjs in any case;
# playwright-core with npm ci,
# pinned by package-lock.json), then runs the tests with node's test runner
# against $PCSIG_SERVER (default build/pcsig-server): all test files, or the
# ones named (run.sh page.test.mjs). Run from anywhere;
# make test and make test-browser call it, after `run.sh --install-only`
# has done the installs outside the test runner's time limit.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
chromium=${PCSIG_CHROMIUM:-/usr/bin/chromium-headless-shell}
chromium_full=${PCSIG_CHROMIUM_FULL:-/usr/bin/chromium}

# Both: the headless shell for the page files, the full browser for
# native.test.mjs (one real call in the browser users run).
missing=
[ -x "$chromium" ] || missing="$missing chromium-headless-shell"
[ -x "$chromium_full" ] || missing="$missing chromium"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing:$missing"
        # shellcheck disable=SC2086
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing) >/dev/null ||
            { echo "error: could not install$missing; run: sudo apt-get install -y$missing" >&2; exit 1; }
    else
        echo "error: no$missing; run: sudo apt-get update && sudo apt-get install -y$missing" >&2
        exit 1
    fi
fi
[ -x "$chromium" ] || { echo "error: no $chromium (PCSIG_CHROMIUM)" >&2; exit 1; }
[ -x "$chromium_full" ] || { echo "error: no $chromium_full (PCSIG_CHROMIUM_FULL)" >&2; exit 1; }
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "error: the browser tests need Node.js 20.10 or later with npm" >&2
    exit 1
fi
# node --test with --test-concurrency came in 20.10 (read from --version:
# a node -e to compare them cost each run a tenth of a second of CPU).
version=$(node --version)
major=${version#v}
major=${major%%.*}
minor=${version#v*.}
minor=${minor%%.*}
case $major$minor in *[!0-9]* | '') major=0 minor=0 ;; esac
if [ "$major" -lt 20 ] || { [ "$major" -eq 20 ] && [ "$minor" -lt 10 ]; }; then
    echo "error: the browser tests need Node.js 20.10 or later; this is $version" >&2
    exit 1
fi
# npm ci again whenever the lockfile changed since the last install.
stamp=$here/node_modules/.package-lock.json
if [ ! -f "$stamp" ] || [ "$here/package-lock.json" -nt "$stamp" ]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi
[ "${1:-}" != "--install-only" ] || exit 0

cd "$root"
export PCSIG_SERVER="${PCSIG_SERVER:-$root/build/pcsig-server}"
export PCSIG_CLIENT="${PCSIG_CLIENT:-$root/build/pcsig-client}"
export PCSIG_CHROMIUM="$chromium" PCSIG_CHROMIUM_FULL="$chromium_full"
# The files named (make test runs one file per run, so that they run in
# parallel with each other and the rest), or all of them one after another.
# One file runs in node itself (its tests run when it is the main module,
# exit status 1 when one fails): node --test would run it in a child
# process of a second node, a fifth of a second of CPU more.
if [ $# -eq 1 ]; then
    [ -f "$here/$1" ] || { echo "error: no test file $here/$1" >&2; exit 2; }
    exec node "$here/$1"
fi
if [ $# -gt 0 ]; then
    files=
    for f in "$@"; do
        [ -f "$here/$f" ] || { echo "error: no test file $here/$f" >&2; exit 2; }
        files="$files $here/$f"
    done
    # shellcheck disable=SC2086
    exec node --test --test-concurrency=1 $files
fi
exec node --test --test-concurrency=1 "$here"/*.test.mjs

# pcsig: one Makefile builds the server, the client, the tools and the tests.
#
#   make            build everything under build/
#   make run        build and start the server on its defaults (port 8888);
#                   ARGS='--bind 127.0.0.1 ...' passes options (so do PCSIG_*)
#   make run-tls    the same with TLS on 8443 beside plain HTTP on 8888
#   make test       build and run every unit and integration test
#   make check      the tests again under ASan+UBSan and under TSan
#   make CC=clang   the same with clang
#   make install    install under PREFIX (default /usr/local); DESTDIR stages;
#                   make uninstall removes exactly that again
#
# SANITIZE=address,undefined or SANITIZE=thread switches sanitizers on;
# BUILD=dir puts the objects elsewhere (make check uses build/asan, build/tsan).

CC      ?= cc
BUILD   ?= build
SANITIZE ?=

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wformat=2 -Wvla -Werror
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -pthread $(WARN) -MMD -MP -Icommon
LDFLAGS += -pthread
LIBS    := -lssl -lcrypto
ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif

COMMON_SRC := $(wildcard common/*.c)
SERVER_SRC := $(wildcard server/*.c)
# The CLI's own files (main.c, cli_*.c, and the media conductor) are not
# part of the library: libpcsig-client never needs GStreamer, jansson or
# libedit (CLI_LIBS are linked into pcsig-client only).
CLIENT_CLI_SRC := client/main.c $(wildcard client/cli_*.c) client/conductor.c
CLI_LIBS := -ljansson -ledit
CLIENT_LIB_SRC := $(filter-out $(CLIENT_CLI_SRC),$(wildcard client/*.c))
CLIENT_MAIN_SRC := $(wildcard client/main.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
ITEST_SRC  := $(wildcard tests/integration/test_*.c)
HARNESS_SRC := $(filter-out $(ITEST_SRC),$(wildcard tests/integration/*.c))

COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o)
# The browser page (web/), built into the server as C arrays (server/web.h).
WEB_FILES  := web/index.html web/app.css web/app.js
WEB_GEN    := $(BUILD)/gen/web_assets.c
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/web_assets.o
CLIENT_LIB_OBJ := $(CLIENT_LIB_SRC:%.c=$(BUILD)/%.o)
HARNESS_OBJ := $(HARNESS_SRC:%.c=$(BUILD)/%.o)
# Unit tests link libpcsig; a test of a server module names its objects here.
# Everything else of the server is exercised through the real binary.
# A test that checks a module's static functions #includes the module's .c
# (test_config, test_metrics, test_procstat, test_web, test_registry, the
# unit test_client): nothing is exported only for tests, and that module's
# object is not linked again.
UNIT_EXTRA_test_sdnotify := $(BUILD)/server/sdnotify.o
UNIT_EXTRA_test_response := $(BUILD)/server/response.o
UNIT_EXTRA_test_web := $(BUILD)/server/response.o $(BUILD)/server/config.o $(BUILD)/gen/web_assets.o \
                      $(BUILD)/server/cluster_keys.o
UNIT_EXTRA_test_config := $(BUILD)/server/cluster_keys.o
UNIT_EXTRA_test_cli_json := $(BUILD)/client/cli_json.o
UNIT_EXTRA_test_cli_ice := $(BUILD)/client/cli_ice.o
UNIT_EXTRA_test_cli_peers := $(BUILD)/client/cli_peers.o
UNIT_LIBS_test_cli_json := -ljansson
# The session ownership harness includes session.c and reaper.c; it links
# the queue, the graveyard and what a request reaches (server.c's two
# functions it needs are stubs in the test: no threads, no sockets).
UNIT_EXTRA_test_session_own := $(addprefix $(BUILD)/server/,workers.o poller.o registry.o \
                               router.o response.o access.o metrics.o ratelimit.o cluster.o \
                               cluster_keys.o web.o config.o) $(BUILD)/gen/web_assets.o
UNIT_LIBS_test_session_own := -lhiredis

LIBPCSIG := $(BUILD)/libpcsig.a
SERVER   := $(BUILD)/pcsig-server
LIBCLIENT := $(BUILD)/libpcsig-client.a
CLIENT   := $(if $(CLIENT_MAIN_SRC),$(BUILD)/pcsig-client)
BENCH_SRC := $(wildcard tools/bench*.c)
BENCH_OBJ := $(BENCH_SRC:%.c=$(BUILD)/%.o)
BENCH    := $(BUILD)/pcsig-bench
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
ITEST_BIN := $(ITEST_SRC:tests/integration/%.c=$(BUILD)/tests/integration/%)
# make test runs every integration test (tests/integration/test_*.c) plain,
# and again over TLS (PCSIG_TEST_TLS=1: TLS servers, TLS clients) only those
# where TLS changes what is tested: one line each, with the reason. Not here:
# protocol and parser logic (the same bytes once decrypted: test_bad_input,
# test_batch, test_errors, test_queue), what does not touch the transport
# (test_config, test_sdnotify, test_cli_exec, test_client_auth, test_media and
# test_media_signaling: their media is DTLS either way), tests that skip in
# TLS mode (test_flood, test_client_wire, test_cli_tty), and test_tls and
# test_client_tls, which start TLS servers of their own.
ITEST_TLS :=
ITEST_TLS += test_access         # per-address limits: the refusal comes after a handshake
ITEST_TLS += test_biglist        # MB-sized answers written through TLS records
ITEST_TLS += test_cli            # the CLI's --tls/--ca options end to end
ITEST_TLS += test_client_lib     # the library's TLS connect, reads, writes, reconnects
ITEST_TLS += test_cluster_basic  # instances over Redis: waits parked and woken through TLS
ITEST_TLS += test_fd_limit       # handshakes and plain text to the TLS port without fds
ITEST_TLS += test_garbage        # garbage inside TLS records and raw to the TLS port
ITEST_TLS += test_keepalive      # pipelined requests across TLS records (SSL_pending)
ITEST_TLS += test_killed_clients # peers killed mid-record: TLS read and write errors
ITEST_TLS += test_metrics        # the TLS handshake counters
ITEST_TLS += test_oversize       # heads and bodies spanning many TLS records
ITEST_TLS += test_scale          # the cap's refusal needs a handshake; parked TLS waits hold no worker
ITEST_TLS += test_session        # hang-ups of parked waits seen through TLS (close_notify)
ITEST_TLS += test_sigterm_queues # the shutdown notice and drain to stuck TLS clients
ITEST_TLS += test_slowloris      # the handshake counts in the first request's read timeout
ITEST_TLS += test_stuck_clients  # a TLS client that never reads (SSL_write held), half-close
ITEST_TLS_BIN := $(ITEST_TLS:%=$(BUILD)/tests/integration/%)
$(if $(filter-out $(ITEST_BIN),$(ITEST_TLS_BIN)),$(error ITEST_TLS: no such test: $(notdir $(filter-out $(ITEST_BIN),$(ITEST_TLS_BIN)))))
# The browser tests (tests/browser/*.test.mjs): one run per file, each
# with its own Chromium, so that the runner spreads them over its slots
# beside the rest (in two runs of several files each, those two were the
# last to end). Then the shell tests.
BROWSER_RUNS := $(foreach f,$(sort $(notdir $(wildcard tests/browser/*.test.mjs))),'tests/browser/run.sh $(f)')
TEST_SCRIPTS := tests/bench-smoke.sh tests/install-test.sh tests/docs-test.sh tools/check-banned.sh
# The cluster tests one run each (not one run of a runner of their own):
# scheduled with the rest.
TEST_SCRIPTS += $(foreach t,$(shell tests/cluster/run.sh --list),'tests/cluster/run.sh $(t)')

# ---- install ---------------------------------------------------------------
# The conventional directory variables; each can be set on the command line.
# DESTDIR stages the whole tree elsewhere (packages, tests) and is never
# written into an installed file.
PREFIX       ?= /usr/local
EXEC_PREFIX  ?= $(PREFIX)
BINDIR       ?= $(EXEC_PREFIX)/bin
LIBDIR       ?= $(EXEC_PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
DATAROOTDIR  ?= $(PREFIX)/share
MANDIR       ?= $(DATAROOTDIR)/man
MAN1DIR      ?= $(MANDIR)/man1
DOCDIR       ?= $(DATAROOTDIR)/doc/pcsig
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# /etc even for PREFIX=/usr/local: the unit's ConfigurationDirectory=pcsig
# is always /etc/pcsig. Nothing is installed there; the unit names the file.
SYSCONFDIR   ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALL      ?= install
OBJCOPY      ?= objcopy
# The example configuration, installed when it exists.
CONF_EXAMPLE ?= dist/pcsig-server.conf

VERSION := $(shell sed -n 's/^\#define PCSIG_VERSION "\(.*\)"$$/\1/p' common/version.h)

# The installed client library is one archive holding the client and the
# common/ objects it needs, linked into one relocatable object whose only
# global symbols are the API's (pcsig_*): buf_, log_, http_... stay private
# and cannot collide with a program's own names.
DIST_LIB  := $(BUILD)/dist/libpcsig-client.a
DIST_PC   := $(BUILD)/dist/pcsig-client.pc
DIST_UNIT := $(BUILD)/dist/pcsig-server.service
DIST_FILES := $(DIST_LIB) $(DIST_PC) $(DIST_UNIT)

.PHONY: all run run-tls certs test test-cluster test-browser browser-deps check clean deps bench fuzz install uninstall FORCE
all: deps $(SERVER) $(LIBCLIENT) $(CLIENT) $(BENCH) $(DIST_FILES)

# ---- build dependencies: installed when we can, else the exact command ----
# pkg-config and groff-base: the install test (linking against the installed
# library, rendering the man pages). Unless MEDIA=0, GStreamer for the
# conductor: the dev packages to build it, and the plugins a call runs on
# (webrtcbin, dtls, srtp, sctp in -bad; ICE in -nice; VP8 in -good; Opus,
# the test sources and converters in -base).
# haproxy: the cluster tests (tests/cluster) and tools/cluster-bench.sh.
DEB_DEPS := libcmocka-dev libssl-dev openssl pkg-config groff-base libjansson-dev libedit-dev \
            libhiredis-dev redis-server haproxy
deps:
	@missing=""; \
	[ -f /usr/include/cmocka.h ] || missing="$$missing libcmocka-dev"; \
	[ -f /usr/include/openssl/ssl.h ] || missing="$$missing libssl-dev"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	command -v groff >/dev/null || missing="$$missing groff-base"; \
	[ -f /usr/include/hiredis/hiredis.h ] || missing="$$missing libhiredis-dev"; \
	[ -f /usr/include/jansson.h ] || missing="$$missing libjansson-dev"; \
	[ -f /usr/include/editline/readline.h ] || missing="$$missing libedit-dev"; \
	media=""; \
	if [ "$(MEDIA)" != 0 ]; then \
	  gst=/usr/include/gstreamer-1.0/gst; \
	  plug=$$(pkg-config --variable=pluginsdir gstreamer-1.0 2>/dev/null); \
	  [ -f $$gst/webrtc/webrtc.h ] || media="$$media libgstreamer-plugins-bad1.0-dev"; \
	  [ -f $$gst/sdp/sdp.h ] || media="$$media libgstreamer-plugins-base1.0-dev"; \
	  [ -f $$gst/gst.h ] || media="$$media libgstreamer1.0-dev"; \
	  [ -n "$$plug" ] && [ -f "$$plug/libgstwebrtc.so" ] || media="$$media gstreamer1.0-plugins-bad"; \
	  [ -n "$$plug" ] && [ -f "$$plug/libgstnice.so" ] || media="$$media gstreamer1.0-nice"; \
	  [ -n "$$plug" ] && [ -f "$$plug/libgstvpx.so" ] || media="$$media gstreamer1.0-plugins-good"; \
	  [ -n "$$plug" ] && [ -f "$$plug/libgstopus.so" ] || media="$$media gstreamer1.0-plugins-base"; \
	fi; \
	[ -x /usr/bin/redis-server ] || command -v redis-server >/dev/null || media="$$media redis-server"; \
	[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null || media="$$media haproxy"; \
	if [ -n "$$missing$$media" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing:$$missing$$media"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing$$media) || \
	    { echo "error: could not install$$missing$$media; run: sudo apt-get install -y$$missing$$media" >&2; exit 1; }; \
	elif [ -n "$$missing" ]; then \
	  echo "error: missing$$missing; run: sudo apt-get update && sudo apt-get install -y$$missing$$media" >&2; exit 1; \
	elif [ -n "$$media" ]; then \
	  echo "note: without$$media: no media support in pcsig-client (real calls) or no --cluster tests (redis-server, haproxy); for them: sudo apt-get install -y$$media (MEDIA=0 skips GStreamer)" >&2; \
	fi

# The compiler and flags an object was built with: a stamp rewritten only
# when they change, so `make CC=clang` or SANITIZE=... after a gcc build
# rebuilds everything instead of mixing objects (or building nothing).
BUILD_FLAGS := $(CC)|$(CFLAGS)|$(LDFLAGS)|$(LIBS)
FLAGS_STAMP := $(BUILD)/flags
$(FLAGS_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(BUILD_FLAGS)' | cmp -s - $@ || echo '$(BUILD_FLAGS)' > $@

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(WEB_GEN): $(WEB_FILES) tools/web-embed.sh
	@mkdir -p $(dir $@)
	tools/web-embed.sh $@ $(WEB_FILES)

$(BUILD)/gen/web_assets.o: $(WEB_GEN) $(FLAGS_STAMP)
	$(CC) $(CFLAGS) -Iserver -c $< -o $@

$(LIBPCSIG): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# hiredis (--cluster) is the server's alone: nothing else links it.
$(SERVER): $(SERVER_OBJ) $(LIBPCSIG) $(FLAGS_STAMP)
	$(CC) $(LDFLAGS) -o $@ $(SERVER_OBJ) $(LIBPCSIG) $(LIBS) -lhiredis

$(BENCH): $(BENCH_OBJ) $(LIBPCSIG) $(FLAGS_STAMP)
	$(CC) $(LDFLAGS) -o $@ $(BENCH_OBJ) $(LIBPCSIG) $(LIBS)

# What a head sent one byte per read costs (BENCHMARKS.md); not installed.
DRIBBLE := $(BUILD)/pcsig-dribble
all: $(DRIBBLE)
$(DRIBBLE): $(BUILD)/tools/dribble.o $(LIBPCSIG) $(FLAGS_STAMP)
	$(CC) $(LDFLAGS) -o $@ $(BUILD)/tools/dribble.o $(LIBPCSIG) $(LIBS)

# The figures of BENCHMARKS.md (a few minutes on 2 cores).
# Short versions (under a minute in all) of the runs in BENCHMARKS.md.
bench: all
	$(BENCH) --spawn-server $(SERVER) --peers 400 --messages 30000 --inflight 8 --quiet
	$(BENCH) --spawn-server $(SERVER) --peers 400 --messages 100000 --keepalive --batch --inflight 32 --loops 1 --quiet
	$(BENCH) --spawn-server $(SERVER) --peers 1000 --messages 10000 --rate 1000 --keepalive --batch --quiet

$(LIBCLIENT): $(CLIENT_LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# ---- media (issue 16): the conductor, when GStreamer's webrtc is there ----
# MEDIA=0 builds a signaling-only client (and deps installs no GStreamer);
# otherwise `deps` installs the packages and the conductor is built in. The
# flags are looked up when a recipe runs (recursive variables), after deps:
# on a fresh machine the first `make` installs GStreamer and uses it.
MEDIA ?= 1
MEDIA_PKGS := gstreamer-webrtc-1.0 gstreamer-sdp-1.0 gstreamer-1.0
media_found = $(if $(filter 0,$(MEDIA)),,$(shell pkg-config --exists $(MEDIA_PKGS) 2>/dev/null && echo yes))
# GLib's and GStreamer's headers are not ours to keep -Wextra clean: -isystem.
MEDIA_CFLAGS = $(if $(media_found),-DPCSIG_HAVE_MEDIA $(patsubst -I%,-isystem %,$(shell pkg-config --cflags $(MEDIA_PKGS))))
MEDIA_LIBS = $(if $(media_found),$(shell pkg-config --libs $(MEDIA_PKGS)))
CLI_OBJ := $(CLIENT_CLI_SRC:%.c=$(BUILD)/%.o)
MEDIA_STAMP := $(BUILD)/media
$(MEDIA_STAMP): FORCE | deps
	@mkdir -p $(dir $@)
	@echo '$(MEDIA_CFLAGS)' | cmp -s - $@ || echo '$(MEDIA_CFLAGS)' > $@
$(BUILD)/client/cli_media.o: client/cli_media.c $(FLAGS_STAMP) $(MEDIA_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(MEDIA_CFLAGS) -c $< -o $@
$(BUILD)/client/conductor.o: client/conductor.c $(FLAGS_STAMP) $(MEDIA_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(MEDIA_CFLAGS) -c $< -o $@

$(BUILD)/pcsig-client: $(CLI_OBJ) $(LIBCLIENT) $(LIBPCSIG) $(FLAGS_STAMP) $(MEDIA_STAMP)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIBCLIENT) $(LIBPCSIG) $(LIBS) $(CLI_LIBS) $(MEDIA_LIBS)

# Objects built through pattern rules are kept (never deleted as intermediates).
.SECONDARY:
.SECONDEXPANSION:
$(BUILD)/tests/unit/%: tests/unit/%.c $$(UNIT_EXTRA_%) $(LIBCLIENT) $(LIBPCSIG) $(FLAGS_STAMP) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iserver -Iclient -o $@ $< $(UNIT_EXTRA_$*) $(LIBCLIENT) $(LIBPCSIG) $(LDFLAGS) $(LIBS) $(UNIT_LIBS_$*) -lcmocka

# The integration tests' shared helpers (harness.c, hostile.c, client_util.c).
$(BUILD)/tests/integration/%.o: tests/integration/%.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/integration -Iclient -c $< -o $@

$(BUILD)/tests/integration/%: tests/integration/%.c $(HARNESS_OBJ) $(LIBCLIENT) $(LIBPCSIG) $(FLAGS_STAMP) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/integration -Iclient -o $@ $< $(HARNESS_OBJ) $(LIBCLIENT) $(LIBPCSIG) $(LDFLAGS) $(LIBS) -lcmocka

# ---- cluster tests (issue 17): Redis + 3 instances + haproxy, tests/cluster ----
CTEST_SRC := $(wildcard tests/cluster/test_*.c)
CTEST_BIN := $(CTEST_SRC:tests/cluster/%.c=$(BUILD)/tests/cluster/%)
CLUSTER_LIB_OBJ := $(BUILD)/tests/cluster/cluster.o
CLUSTER_LAUNCH := $(BUILD)/tests/cluster/pcsig-cluster-launch
$(CLUSTER_LAUNCH): $(BUILD)/tests/cluster/launch.o $(CLUSTER_LIB_OBJ) $(LIBPCSIG) $(FLAGS_STAMP)
	$(CC) $(LDFLAGS) -o $@ $(BUILD)/tests/cluster/launch.o $(CLUSTER_LIB_OBJ) $(LIBPCSIG) $(LIBS)
$(BUILD)/tests/cluster/%: tests/cluster/%.c $(CLUSTER_LIB_OBJ) $(HARNESS_OBJ) $(LIBCLIENT) $(LIBPCSIG) $(FLAGS_STAMP) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/integration -Itests/cluster -o $@ $< $(CLUSTER_LIB_OBJ) $(HARNESS_OBJ) $(LIBCLIENT) $(LIBPCSIG) $(LDFLAGS) $(LIBS) -lcmocka
CLUSTER_TEST_ENV = PCSIG_SERVER=$(abspath $(SERVER)) PCSIG_CLIENT=$(abspath $(BUILD)/pcsig-client) \
	  PCSIG_BUILD=$(BUILD)
# Skips (saying why) when the server has no --cluster or Redis/haproxy are missing.
test-cluster: all $(CTEST_BIN) $(CLUSTER_LAUNCH) $(ITEST_BIN)
	@$(CLUSTER_TEST_ENV) tests/cluster/run.sh

# ARGS: options for the server, e.g. make run ARGS='--bind 127.0.0.1 --port 9000'
# (the PCSIG_* environment variables work too: PCSIG_BIND=127.0.0.1 make run).
# When the server cannot start, a hint names the ports these rules use.
ARGS ?=
RUN_HINT = st=$$?; if [ $$st -eq 1 ]; then \
	  echo "make $@: pcsig-server did not start (status 1). If it said 'Address already in use':" >&2; \
	  echo "  $(1) is taken (is \`make run\` or another server running?);" >&2; \
	  echo "  stop it, or choose other ports: make $@ ARGS='$(2)'" >&2; \
	fi; exit $$st
run: all
	@echo '$(SERVER) $(ARGS)'; $(SERVER) $(ARGS); \
	$(call RUN_HINT,port 8888 (or the --port of ARGS),--port 8889)

# A development CA, server and client certificates in certs/ (never committed).
certs: certs/server.pem
certs/server.pem: certs/gen-certs.sh certs/ca.cnf certs/server.cnf certs/client.cnf
	certs/gen-certs.sh --force

# Plain HTTP on --port (8888, as `make run`) and TLS on --tls-port 8443.
RUN_TLS := $(SERVER) --tls-cert certs/server.pem --tls-key certs/server.key --tls-port 8443
run-tls: all certs
	@echo '$(RUN_TLS) $(ARGS)'; $(RUN_TLS) $(ARGS); \
	$(call RUN_HINT,port 8888 (plain HTTP; the port of \`make run\`) or 8443 (TLS),--port 8889 --tls-port 8444)

# In parallel, longest first by the last run's times ($(BUILD)/test-times);
# each run's output in $(BUILD)/test-logs.
test: all browser-deps $(UNIT_BIN) $(ITEST_BIN) $(CTEST_BIN) $(CLUSTER_LAUNCH)
	@tools/check-layers.sh
	@rm -rf $(BUILD)/test-logs
	@certs/gen-certs.sh --force $(BUILD)/test-certs >/dev/null # once for every TLS run
	@PCSIG_SERVER=$(abspath $(SERVER)) PCSIG_CLIENT=$(abspath $(BUILD)/pcsig-client) \
	  PCSIG_BENCH=$(abspath $(BENCH)) PCSIG_TEST_CERTS=$(abspath $(BUILD)/test-certs) \
	  PCSIG_BUILD=$(BUILD) PCSIG_CC="$(CC)" PCSIG_SANITIZE=$(SANITIZE) \
	  PCSIG_TEST_TIMES=$(BUILD)/test-times PCSIG_TEST_TIMELINE=$(BUILD)/test-timeline PCSIG_TEST_LOGS=$(BUILD)/test-logs \
	  tests/run-tests.sh $(BROWSER_RUNS) $(TEST_SCRIPTS) \
	    $(ITEST_BIN) $(UNIT_BIN) --tls $(ITEST_TLS_BIN)

# Chromium (apt-get) and playwright-core (npm ci, pinned by
# tests/browser/package-lock.json) when missing: installed here, before the
# tests, not inside the test runner's time limit.
browser-deps:
	tests/browser/run.sh --install-only

# The page in headless Chromium (plain and TLS) against the real server.
test-browser: all browser-deps
	PCSIG_SERVER=$(abspath $(SERVER)) PCSIG_CLIENT=$(abspath $(BUILD)/pcsig-client) \
	  PCSIG_BUILD=$(abspath $(BUILD)) tests/browser/run.sh

# libFuzzer targets of the parsers (clang); FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh

CHECK_FUZZ_SECONDS ?= 30
check:
	tools/check-banned.sh
	$(MAKE) BUILD=build/asan SANITIZE=address,undefined test
	$(MAKE) BUILD=build/tsan SANITIZE=thread test
	$(MAKE) fuzz FUZZ_SECONDS=$(CHECK_FUZZ_SECONDS)

clean:
	rm -rf build

# ---- install: the generated files and the rules (variables at the top) ----
$(BUILD)/dist/pcsig-client.o: $(CLIENT_LIB_OBJ) $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	$(LD) -r -o $@.tmp $^
	$(OBJCOPY) --wildcard --keep-global-symbol='pcsig_*' $@.tmp $@
	rm -f $@.tmp

$(DIST_LIB): $(BUILD)/dist/pcsig-client.o
	rm -f $@ && ar rcs $@ $^

# The generated files depend on the directories' values: this stamp changes
# only when they do, so `make install PREFIX=/opt` after `make` regenerates.
INSTALL_DIRS := $(PREFIX)|$(EXEC_PREFIX)|$(BINDIR)|$(LIBDIR)|$(INCLUDEDIR)|$(PKGCONFIGDIR)|$(SYSCONFDIR)|$(VERSION)
$(BUILD)/dist/dirs: FORCE
	@mkdir -p $(dir $@)
	@echo '$(INSTALL_DIRS)' | cmp -s - $@ || echo '$(INSTALL_DIRS)' > $@

# Relocatable: every path is written relative to the .pc file's directory
# (${pcfiledir}, which pkg-config sets), so a DESTDIR staging or a moved tree
# still yields the right -I and -L. PC_REL: path $(1) seen from PKGCONFIGDIR.
PC_REL = $${pcfiledir}/$(shell realpath -m --relative-to='$(PKGCONFIGDIR)' '$(1)')
$(DIST_PC): dist/pcsig-client.pc.in $(BUILD)/dist/dirs
	sed -e 's|@PREFIX@|$(call PC_REL,$(PREFIX))|g' -e 's|@EXEC_PREFIX@|$(call PC_REL,$(EXEC_PREFIX))|g' \
	    -e 's|@LIBDIR@|$(call PC_REL,$(LIBDIR))|g' -e 's|@INCLUDEDIR@|$(call PC_REL,$(INCLUDEDIR))|g' \
	    -e 's|@VERSION@|$(VERSION)|g' $< > $@.tmp && mv $@.tmp $@

# dist/pcsig-server.service names the default paths; they become this install's.
$(DIST_UNIT): dist/pcsig-server.service $(BUILD)/dist/dirs
	sed -e 's|/usr/local/bin/pcsig-server|$(BINDIR)/pcsig-server|g' \
	    -e 's|/etc/pcsig/|$(SYSCONFDIR)/pcsig/|g' $< > $@.tmp && mv $@.tmp $@

FORCE:

install: $(SERVER) $(BUILD)/pcsig-client $(DIST_FILES) docs/protocol.md
	$(INSTALL) -D -m 0755 $(SERVER) $(DESTDIR)$(BINDIR)/pcsig-server
	$(INSTALL) -D -m 0755 $(BUILD)/pcsig-client $(DESTDIR)$(BINDIR)/pcsig-client
	$(INSTALL) -D -m 0644 man/pcsig-server.1 $(DESTDIR)$(MAN1DIR)/pcsig-server.1
	$(INSTALL) -D -m 0644 man/pcsig-client.1 $(DESTDIR)$(MAN1DIR)/pcsig-client.1
	$(INSTALL) -D -m 0644 client/pcsig_client.h $(DESTDIR)$(INCLUDEDIR)/pcsig/pcsig_client.h
	$(INSTALL) -D -m 0644 $(DIST_LIB) $(DESTDIR)$(LIBDIR)/libpcsig-client.a
	$(INSTALL) -D -m 0644 $(DIST_PC) $(DESTDIR)$(PKGCONFIGDIR)/pcsig-client.pc
	$(INSTALL) -D -m 0644 $(DIST_UNIT) $(DESTDIR)$(SYSTEMDUNITDIR)/pcsig-server.service
	$(INSTALL) -D -m 0644 docs/protocol.md $(DESTDIR)$(DOCDIR)/protocol.md
	@if [ -f '$(CONF_EXAMPLE)' ]; then \
	  echo "$(INSTALL) -D -m 0644 $(CONF_EXAMPLE) $(DESTDIR)$(DOCDIR)/pcsig-server.conf.example"; \
	  $(INSTALL) -D -m 0644 '$(CONF_EXAMPLE)' '$(DESTDIR)$(DOCDIR)/pcsig-server.conf.example'; \
	else \
	  echo "note: no $(CONF_EXAMPLE): pcsig-server.conf.example not installed"; \
	fi

# Exactly the files install writes, then its own directories if empty.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/pcsig-server $(DESTDIR)$(BINDIR)/pcsig-client \
	      $(DESTDIR)$(MAN1DIR)/pcsig-server.1 $(DESTDIR)$(MAN1DIR)/pcsig-client.1 \
	      $(DESTDIR)$(INCLUDEDIR)/pcsig/pcsig_client.h \
	      $(DESTDIR)$(LIBDIR)/libpcsig-client.a $(DESTDIR)$(PKGCONFIGDIR)/pcsig-client.pc \
	      $(DESTDIR)$(SYSTEMDUNITDIR)/pcsig-server.service \
	      $(DESTDIR)$(DOCDIR)/pcsig-server.conf.example $(DESTDIR)$(DOCDIR)/protocol.md
	@for d in '$(DESTDIR)$(INCLUDEDIR)/pcsig' '$(DESTDIR)$(DOCDIR)'; do \
	  if [ -d "$$d" ]; then echo "rmdir --ignore-fail-on-non-empty $$d"; \
	    rmdir --ignore-fail-on-non-empty "$$d"; fi; \
	done

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# pcsig: one Makefile builds the server, the client, the tools and the tests.
#
#   make            build everything under build/
#   make run        build and start the server on its defaults (port 8888)
#   make test       build and run every unit and integration test
#   make check      the tests again under ASan+UBSan and under TSan
#   make CC=clang   the same with clang
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
CLIENT_LIB_SRC := $(filter-out client/main.c,$(wildcard client/*.c))
CLIENT_MAIN_SRC := $(wildcard client/main.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
ITEST_SRC  := $(wildcard tests/integration/test_*.c)
HARNESS_SRC := $(filter-out $(ITEST_SRC),$(wildcard tests/integration/*.c))

COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o)
CLIENT_LIB_OBJ := $(CLIENT_LIB_SRC:%.c=$(BUILD)/%.o)
HARNESS_OBJ := $(HARNESS_SRC:%.c=$(BUILD)/%.o)
# Unit tests link libpcsig; a test of a server module names its objects here.
# Everything else of the server is exercised through the real binary.
UNIT_EXTRA_test_registry := $(BUILD)/server/registry.o
UNIT_EXTRA_test_metrics := $(BUILD)/server/metrics.o

LIBPCSIG := $(BUILD)/libpcsig.a
SERVER   := $(BUILD)/pcsig-server
LIBCLIENT := $(BUILD)/libpcsig-client.a
CLIENT   := $(if $(CLIENT_MAIN_SRC),$(BUILD)/pcsig-client)
BENCH_SRC := $(wildcard tools/bench*.c)
BENCH_OBJ := $(BENCH_SRC:%.c=$(BUILD)/%.o)
BENCH    := $(BUILD)/pcsig-bench
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
ITEST_BIN := $(ITEST_SRC:tests/integration/%.c=$(BUILD)/tests/integration/%)
# Run again over TLS: every scenario but those that test TLS (or plain) themselves.
ITEST_TLS_BIN := $(filter-out %/test_tls,$(ITEST_BIN))

.PHONY: all run run-tls certs test check clean deps bench fuzz
all: deps $(SERVER) $(LIBCLIENT) $(CLIENT) $(BENCH)

# ---- build dependencies: installed when we can, else the exact command ----
DEB_DEPS := libcmocka-dev
deps:
	@missing=""; \
	[ -f /usr/include/cmocka.h ] || missing="$$missing libcmocka-dev"; \
	[ -f /usr/include/openssl/ssl.h ] || missing="$$missing libssl-dev"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) || \
	      { echo "error: could not install$$missing; run: sudo apt-get install -y$$missing" >&2; exit 1; }; \
	  else \
	    echo "error: missing$$missing; run: sudo apt-get update && sudo apt-get install -y$$missing" >&2; exit 1; \
	  fi; \
	fi

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIBPCSIG): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(SERVER): $(SERVER_OBJ) $(LIBPCSIG)
	$(CC) $(LDFLAGS) -o $@ $(SERVER_OBJ) $(LIBPCSIG) $(LIBS)

$(BENCH): $(BENCH_OBJ) $(LIBPCSIG)
	$(CC) $(LDFLAGS) -o $@ $(BENCH_OBJ) $(LIBPCSIG) $(LIBS)

# The figures of BENCHMARKS.md (a few minutes on 2 cores).
bench: all
	$(BENCH) --spawn-server $(SERVER) --peers 400 --messages 50000
	$(BENCH) --spawn-server $(SERVER) --peers 400 --messages 50000 --keepalive
	$(BENCH) --spawn-server $(SERVER) --peers 1000 --messages 10000 --rate 1000 --keepalive

$(LIBCLIENT): $(CLIENT_LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/pcsig-client: $(BUILD)/client/main.o $(LIBCLIENT) $(LIBPCSIG)
	$(CC) $(LDFLAGS) -o $@ $< $(LIBCLIENT) $(LIBPCSIG) $(LIBS)

# Objects built through pattern rules are kept (never deleted as intermediates).
.SECONDARY:
.SECONDEXPANSION:
$(BUILD)/tests/unit/%: tests/unit/%.c $$(UNIT_EXTRA_%) $(LIBCLIENT) $(LIBPCSIG) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iserver -Iclient -o $@ $< $(UNIT_EXTRA_$*) $(LIBCLIENT) $(LIBPCSIG) $(LDFLAGS) $(LIBS) -lcmocka

$(BUILD)/tests/integration/%: tests/integration/%.c $(HARNESS_OBJ) $(LIBCLIENT) $(LIBPCSIG) | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/integration -Iclient -o $@ $< $(HARNESS_OBJ) $(LIBCLIENT) $(LIBPCSIG) $(LDFLAGS) $(LIBS) -lcmocka

run: all
	$(SERVER)

# A development CA, server and client certificates in certs/ (never committed).
certs: certs/server.pem
certs/server.pem: certs/gen-certs.sh certs/ca.cnf certs/server.cnf certs/client.cnf
	certs/gen-certs.sh --force

run-tls: all certs
	$(SERVER) --tls-cert certs/server.pem --tls-key certs/server.key --tls-port 8443

test: all $(UNIT_BIN) $(ITEST_BIN)
	@PCSIG_SERVER=$(abspath $(SERVER)) PCSIG_CLIENT=$(abspath $(BUILD)/pcsig-client) \
	  PCSIG_BENCH=$(abspath $(BENCH)) \
	  tests/run-tests.sh $(UNIT_BIN) $(ITEST_BIN) tests/bench-smoke.sh --tls $(ITEST_TLS_BIN)

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

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# sluice — build, run and test. Everything is built out of tree under $(BUILD).
#
#   make            build the gateway, the shim, the libraries and the tests
#   make run        run sluiced on conf/sluiced.json with $(BUILD)/dev's certificate
#   make test       run every test, then again under ASan + UBSan
#   make demo       shim -> gateway -> echo round trip with RTT and loss
#   make bench      measure sluiced (memory per idle connection and tunnel, accuracy of the
#                   tenant limits, tenant isolation, RTT and CPU per packet under load side
#                   by side with a plain UDP forwarder and coturn); reports in $(BUILD)/bench
#   make attack     every attack of issue 10 §3 against sluiced while a legitimate call is
#                   measured; report in $(BUILD)/bench/attack.md (docs/attacks.md)
#   make soak       sluiced under 1,000 tunnels x 50 pkt/s with churn for SOAK_SECONDS
#                   (default 3600): RSS, descriptor and latency drift (docs/soak.md)
#   make overload   sluiced at 2x and 6x its saturation rate (CPU-capped): RTT and loss by
#                   reason (root; $(BUILD)/bench/overload.md)
#   make fuzz       build the libFuzzer targets (clang, ASan + UBSan, $(BUILD)/fuzz) and
#                   run each over its seed corpus for FUZZ_SECONDS (docs/fuzzing.md)
#   make install    install the programs, man pages, systemd unit and example config
#                   under $(DESTDIR)$(PREFIX) (docs/operations.md, "Installing")
#
# Fresh machine: `sh .ci/bootstrap make test` installs the Debian packages first.

BUILD   ?= build
SAN     ?=
CC      ?= cc
PKGS    := libssl libcrypto libnghttp2 libev yajl

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wformat=2 -Wno-unused-parameter -Werror
CFLAGS  ?= -O2 -g
override CFLAGS += -std=c11 -D_GNU_SOURCE -fno-strict-aliasing $(WARN) -MMD -MP
LDLIBS  := -lssl -lcrypto -lnghttp2 -lev -lyajl -lcurl -lpacparser -lmicrohttpd -lsystemd -lm

ifeq ($(SAN),1)
override CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
override LDFLAGS += -fsanitize=address,undefined
endif

PROTO_SRC   := $(wildcard proto/*.c)
# common/: I/O-edge helpers both sides use; linked into both libraries, so a
# user of libsluice-shim.a links nothing new.
COMMON_SRC  := $(wildcard common/*.c)
GW_SRC      := $(filter-out gateway/main.c,$(wildcard gateway/*.c)) $(COMMON_SRC)
SHIM_SRC    := $(wildcard client-shim/lib/*.c) $(COMMON_SRC)
SHIMCLI_SRC := $(wildcard client-shim/cli/*.c)
CTL_SRC     := $(wildcard tools/sluicectl/*.c)
SUPPORT_SRC := $(wildcard tests/support/*.c)
TEST_SRC    := $(wildcard tests/*/test_*.c)
DEMO_SRC    := $(wildcard tests/demo/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB_PROTO   := $(BUILD)/libsluice-proto.a
LIB_GW      := $(BUILD)/libsluiced.a
LIB_SHIM    := $(BUILD)/libsluice-shim.a
LIB_SUPPORT := $(BUILD)/libtestsupport.a
SLUICED     := $(BUILD)/sluiced
SHIM        := $(BUILD)/sluice-shim
SLUICECTL   := $(BUILD)/sluicectl
DEMO        := $(BUILD)/sluice-demo
TESTS       := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
DEVCERT     := $(BUILD)/dev/cert.pem

.PHONY: all tests run test test-plain test-asan test-fuzz fuzz fuzzers demo devcert clean install
all: $(SLUICED) $(SHIM) $(SLUICECTL) $(LIB_SHIM) $(LIB_PROTO) $(if $(DEMO_SRC),$(DEMO))
tests: all $(TESTS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Iclient-shim/include -c $< -o $@

$(LIB_PROTO): $(call obj,$(PROTO_SRC))
$(LIB_GW): $(call obj,$(GW_SRC))
$(LIB_SHIM): $(call obj,$(SHIM_SRC))
$(LIB_SUPPORT): $(call obj,$(SUPPORT_SRC))
$(BUILD)/%.a:
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(SLUICED): $(call obj,gateway/main.c) $(LIB_GW) $(LIB_PROTO)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@
$(SLUICECTL): $(call obj,$(CTL_SRC)) $(LIB_GW) $(LIB_PROTO)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@
$(SHIM): $(call obj,$(SHIMCLI_SRC)) $(LIB_SHIM) $(LIB_PROTO)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@
$(DEMO): $(call obj,$(DEMO_SRC)) $(LIB_SUPPORT) $(LIB_SHIM) $(LIB_PROTO)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# A test links the layer it tests and the layers below it. Tests may #include
# a .c to reach its static functions. A test's object is made by a pattern
# rule, so make would delete it as an intermediate and rebuild it every time:
# keep it.
.SECONDARY: $(call obj,$(TEST_SRC) $(wildcard tests/bench/*.c))
TEST_LINK = $(CC) $(LDFLAGS) $^ $(LDLIBS) -lcriterion -o $@
$(BUILD)/tests/proto/%: $(call obj,tests/proto/%.c) $(LIB_PROTO)
	@mkdir -p $(@D)
	$(TEST_LINK)
$(BUILD)/tests/common/%: $(call obj,tests/common/%.c $(COMMON_SRC)) $(LIB_PROTO)
	@mkdir -p $(@D)
	$(TEST_LINK)
# Gateway tests may use the test support library too (a real etcd for the
# etcd store, helpers for reading a metrics page): it links only what they use.
$(BUILD)/tests/gateway/%: $(call obj,tests/gateway/%.c) $(LIB_SUPPORT) $(LIB_GW) $(LIB_PROTO)
	@mkdir -p $(@D)
	$(TEST_LINK)
$(BUILD)/tests/shim/%: $(call obj,tests/shim/%.c) $(LIB_SUPPORT) $(LIB_SHIM) $(LIB_PROTO)
	@mkdir -p $(@D)
	$(TEST_LINK)
$(BUILD)/tests/integration/%: $(call obj,tests/integration/%.c) $(LIB_SUPPORT) $(LIB_SHIM) $(LIB_PROTO)
	@mkdir -p $(@D)
	$(TEST_LINK)

# Development certificate: self-signed, for localhost, 127.0.0.1 and ::1 only.
devcert: $(DEVCERT)
$(DEVCERT):
	@mkdir -p $(@D)
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	  -days 825 -subj /CN=localhost \
	  -addext subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1 \
	  -keyout $(BUILD)/dev/key.pem -out $@ 2>/dev/null

# conf/sluiced.json names the certificate as ../build/dev/*.pem (relative to
# conf/). The run target serves $(BUILD)/dev's certificate, the one its hint
# prints, through a copy of that config in $(BUILD)/dev with the paths made
# relative to there.
RUNCONF     := $(BUILD)/dev/sluiced.json
$(RUNCONF): conf/sluiced.json
	@mkdir -p $(@D)
	sed -e 's#"\.\./build/dev/cert\.pem"#"cert.pem"#' \
	    -e 's#"\.\./build/dev/key\.pem"#"key.pem"#' conf/sluiced.json >$@.tmp
	@if grep -q 'build/dev' $@.tmp; then \
	    echo "$@: conf/sluiced.json no longer names ../build/dev/{cert,key}.pem" >&2; \
	    rm -f $@.tmp; exit 1; fi
	mv $@.tmp $@

run: all $(DEVCERT) $(RUNCONF)
	@echo "sluiced: dev certificate $(DEVCERT); built-in echo backend; Ctrl-C stops."
	@echo "Point a shim at it (tenant 'demo', dev secret from conf/sluiced.json):"
	@echo "  $(SHIM) --gateway https://localhost:8443 --ca-file $(DEVCERT) \\"
	@echo "      --tenant demo --kind sfu --secret dev-only-secret --listen 127.0.0.1:5004"
	exec $(SLUICED) --config $(RUNCONF)

demo: all $(DEVCERT)
	$(DEMO) --build $(BUILD)

# Benchmarks: numbers in a report, never assertions in the test suite.
# `make bench` measures sluiced's memory per idle connection and tunnel
# ($(BUILD)/bench/report.txt), then the accuracy of each tenant limit and one
# tenant's latency while another floods ($(BUILD)/bench/limits.md, about 25 s;
# docs/benchmarks.md), then RTT, loss and the relay's CPU per relayed packet
# under an open-loop load through udp_fwd, sluiced and coturn (TURN/TLS and
# TURN/UDP) side by side ($(BUILD)/bench/load.md, about 35 s).
BENCH_SRC := $(wildcard tests/bench/*.c)
BENCHES   := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
.PHONY: bench
# bench_scrape times the gateway's own /metrics renderer: it links libsluiced.
$(BUILD)/bench/bench_scrape: $(call obj,tests/bench/bench_scrape.c) $(LIB_GW) $(LIB_PROTO)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@
$(BUILD)/bench/%: $(call obj,tests/bench/%.c) $(LIB_SUPPORT) $(LIB_SHIM) $(LIB_PROTO)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@
# udp_fwd, the floor in bench_load's table, is a helper program of its own
# (tests/bench/fwd/, not a benchmark): plain C, no project library; its
# --uring mode links liburing.
FWD := $(BUILD)/bench/fwd/udp_fwd
$(FWD): $(call obj,tests/bench/fwd/udp_fwd.c)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ -luring -o $@
bench: all $(BENCHES) $(FWD) $(DEVCERT)
	$(BUILD)/bench/bench_mem --build $(BUILD) --out $(BUILD)/bench/report.txt
	$(BUILD)/bench/bench_limits --build $(BUILD) --out $(BUILD)/bench/limits.md
	$(BUILD)/bench/bench_scrape --out $(BUILD)/bench/scrape.md
	$(BUILD)/bench/bench_load --build $(BUILD) --out $(BUILD)/bench/load.md

# `make attack` runs every attack of issue 10 §3 on a fresh sluiced while a
# legitimate call is measured, slowloris with ATTACK_CONNS connections
# ($(BUILD)/bench/attack.md, about 4-5 minutes; docs/attacks.md).
ATTACK_CONNS ?= 10000
.PHONY: attack
attack: all $(BUILD)/bench/bench_attack $(DEVCERT)
	$(BUILD)/bench/bench_attack --build $(BUILD) --conns $(ATTACK_CONNS) --out $(BUILD)/bench/attack.md

# `make soak` runs sluiced for SOAK_SECONDS (default one hour) at 1,000
# tunnels x 50 pkt/s with 1 % of the tunnels replaced per second, sampling its
# RSS, descriptors and RTT every minute (docs/soak.md; $(BUILD)/bench/soak.md).
SOAK_SECONDS ?= 3600
.PHONY: soak
soak: all $(BUILD)/bench/bench_soak $(DEVCERT)
	SOAK_SECONDS=$(SOAK_SECONDS) $(BUILD)/bench/bench_soak --build $(BUILD) --out $(BUILD)/bench/soak.md

# `make overload` (root: a CPU cgroup caps sluiced at OVERLOAD_CPU % of one
# CPU, so that one generator can offer it six times what it relays): each
# sluice system's saturation rate, then 2x and 6x it, with RTT and loss by
# reason ($(BUILD)/bench/overload.md, about 2 minutes; docs/benchmarks.md,
# "Overload").
OVERLOAD_CPU ?= 20
.PHONY: overload
overload: all $(BUILD)/bench/bench_load $(DEVCERT)
	$(BUILD)/bench/bench_load --build $(BUILD) --system sluice,sluice10 --rates 5000 \
	    --cpu-quota $(OVERLOAD_CPU) --age 100 --overload 2,6 --seconds 5 \
	    --out $(BUILD)/bench/overload.md

# The suite runs twice: a plain -O2 build, then an ASan + UBSan build in which
# any error or leak fails the run (skipped when the plain run fails); then
# every fuzz target runs for FUZZ_SECONDS (also skipped when the plain run
# fails). Each run ends with its own "tests (BUILD): N passed, N failed" (for
# the fuzz run, N targets); the last line is the sum of all three,
# "tests: N passed, N failed" (.ci/test-total).
test:
	@mkdir -p $(BUILD) && rm -f $(BUILD)/test-plain.rc $(BUILD)/test-asan.rc $(BUILD)/test-fuzz.rc; \
	( $(MAKE) --no-print-directory test-plain; echo $$? >$(BUILD)/test-plain.rc ) 2>&1 \
	    | tee $(BUILD)/test-plain.log; \
	if [ "$$(cat $(BUILD)/test-plain.rc)" = 0 ]; then \
	    ( $(MAKE) --no-print-directory test-asan; echo $$? >$(BUILD)/test-asan.rc ) 2>&1 \
	        | tee $(BUILD)/test-asan.log; \
	    ( $(MAKE) --no-print-directory test-fuzz; echo $$? >$(BUILD)/test-fuzz.rc ) 2>&1 \
	        | tee $(BUILD)/test-fuzz.log; \
	fi; \
	sh .ci/test-total $(BUILD)/test-plain $(BUILD)/test-asan $(BUILD)/test-fuzz

test-plain: tests $(DEVCERT)
	sh tests/run.sh $(BUILD)

# The third run of `make test`: every fuzz target for a few seconds (below).
test-fuzz:
	$(MAKE) --no-print-directory fuzz

test-asan:
	$(MAKE) --no-print-directory BUILD=$(BUILD)/asan SAN=1 CFLAGS="-O1 -g" tests $(BUILD)/asan/dev/cert.pem
	ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0:strict_string_checks=1:fast_unwind_on_malloc=0 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	sh tests/run.sh $(BUILD)/asan

# Fuzzing (docs/fuzzing.md): libFuzzer targets tests/fuzz/fuzz_<name>.c, built
# with Debian's clang under ASan + UBSan against the project's libraries
# rebuilt the same way in $(FUZZ_BUILD) (never the gcc objects: the fuzzer's
# coverage comes from -fsanitize=fuzzer-no-link on every object). `make fuzz`
# runs each target for FUZZ_SECONDS over a temporary copy of
# tests/fuzz/corpus/<name>/ with tests/fuzz/dict/<name>.dict; any crash, leak
# or sanitizer report fails it (tests/fuzz/run.sh).
FUZZ_BUILD   := $(BUILD)/fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 5
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# -Wno-format-nonliteral: clang also warns on a vsnprintf whose format is a
# callback's parameter (proxy_pac.c's error hook, fixed by pacparser's API).
FUZZ_CFLAGS  := -O1 -g -std=c11 -D_GNU_SOURCE -fno-strict-aliasing $(WARN) -Wno-format-nonliteral \
                -MMD -MP -fsanitize=fuzzer-no-link $(FUZZ_SAN)
FUZZ_SRC     := $(wildcard tests/fuzz/fuzz_*.c)
FUZZERS      := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/%,$(FUZZ_SRC))
fobj = $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(1))
FUZZ_LIB_PROTO := $(FUZZ_BUILD)/libsluice-proto.a
FUZZ_LIB_GW    := $(FUZZ_BUILD)/libsluiced.a
FUZZ_LIB_SHIM  := $(FUZZ_BUILD)/libsluice-shim.a

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Iclient-shim/include -c $< -o $@
$(FUZZ_LIB_PROTO): $(call fobj,$(PROTO_SRC))
$(FUZZ_LIB_GW): $(call fobj,$(GW_SRC))
$(FUZZ_LIB_SHIM): $(call fobj,$(SHIM_SRC))
.SECONDARY: $(call fobj,$(FUZZ_SRC))
# A target links the gateway's library and the codecs (the linker takes only
# what it uses); fuzz_shim_* targets link the shim's library instead.
FUZZ_LINK = $(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) $^ $(LDLIBS) -o $@
$(FUZZ_BUILD)/fuzz_shim_%: $(call fobj,tests/fuzz/fuzz_shim_%.c) $(FUZZ_LIB_SHIM) $(FUZZ_LIB_PROTO)
	$(FUZZ_LINK)
$(FUZZ_BUILD)/fuzz_%: $(call fobj,tests/fuzz/fuzz_%.c) $(FUZZ_LIB_GW) $(FUZZ_LIB_PROTO)
	$(FUZZ_LINK)

fuzzers: $(FUZZERS)
fuzz: $(FUZZERS)
	ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0:fast_unwind_on_malloc=0 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	sh tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# Installing (docs/operations.md, "Installing"): the three programs, their
# man pages, the systemd unit, an example config and the operators' files. PREFIX is where they
# live, DESTDIR a staging root prepended to every path (packaging, tests).
# The unit names $(PREFIX)/bin/sluiced: the installed copy is rewritten to
# match PREFIX. The example config goes to $(PREFIX)/share/doc/sluice, never
# to /etc: an install never overwrites an operator's config.
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
DOCDIR      ?= $(PREFIX)/share/doc/sluice
UNITDIR     ?= $(PREFIX)/lib/systemd/system
INSTALL     ?= install
MANPAGES    := docs/man/sluiced.8 docs/man/sluice-shim.1 docs/man/sluicectl.1
# Alert rules, dashboard and HAProxy example (docs/operations.md), for the
# operator to copy into Prometheus, Grafana and HAProxy.
OPSFILES    := conf/prometheus/sluice-alerts.yml conf/grafana/sluice-dashboard.json \
               conf/haproxy/sni-443.cfg

install: all
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)
	$(INSTALL) -m 0755 $(SLUICED) $(SHIM) $(SLUICECTL) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 0644 docs/man/sluice-shim.1 docs/man/sluicectl.1 $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 0644 docs/man/sluiced.8 $(DESTDIR)$(MANDIR)/man8/
	sed 's#/usr/local/bin/#$(BINDIR)/#g' conf/sluiced.service >$(DESTDIR)$(UNITDIR)/sluiced.service.tmp
	chmod 0644 $(DESTDIR)$(UNITDIR)/sluiced.service.tmp
	mv $(DESTDIR)$(UNITDIR)/sluiced.service.tmp $(DESTDIR)$(UNITDIR)/sluiced.service
	$(INSTALL) -m 0644 conf/example-production.json $(DESTDIR)$(DOCDIR)/sluiced.json.example
	$(INSTALL) -m 0644 $(OPSFILES) $(DESTDIR)$(DOCDIR)/

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj $(BUILD)/fuzz/obj -name '*.d' 2>/dev/null)

# Kino -- build, test, serve, bench.
#
#   make                 build lib/kino/kino.so for the `ruby` in PATH
#   make RUBY=ruby3.4    ... for another Ruby (run `make clean` when switching)
#   make test            C unit tests, then the Ruby suites (installs rack
#                        and minitest into ./.gems when they are missing)
#   make test SANITIZE=1 the same under AddressSanitizer + UBSan
#   make TLS=0           build without HTTPS (default: with it when
#                        `pkg-config openssl` finds OpenSSL's headers)
#   make test-tls        the HTTPS suite plus an sslscan of Kino's TLS
#   make test-deploy     against nginx, HAProxy, promtool, systemd (doc/deploy.md)
#   make valgrind        the C tests under valgrind memcheck
#   make tsan            the C tests under ThreadSanitizer (any data race fails)
#   make test-hpack-nghttp2  HPACK against nghttp2's, both ways (libnghttp2-dev)
#   make test-ruby4      the pure-Ruby suites (test/pure) on Ruby 4.0: ruby.wasm
#                        under node, no native extension (about 10 s once installed)
#   make test-ruby3.4    make test on Ruby 3.4 (or test-ruby3.3), in a Debian
#                        unstable chroot: tools/newer-ruby (root, minutes once)
#   make test-kqueue     the C tests on the kqueue backend (libkqueue, in that chroot)
#   make fuzz            libFuzzer on the parser (fuzz/, doc/fuzzing.md)
#   make serve           Kino.serve from this checkout, on :9292
#   make bench           Kino against Puma (bench/README.md), then what logging costs
#   make bench-logging   only the logging part (bench/logging.rb, doc/logging.md)
#   make bench-all       ... and against Puma single, Falcon, Agoo, Iodine, nginx
#   make test-rails      examples/rails-hello under Kino, every feature over real sockets
#   make bench-rails     the Rails example: Kino :cluster, :threaded, Puma cluster
#   make bench-tls       HTTPS: Kino against nginx and Puma (bench/tls.rb)
#   make test-h2         HTTP/2 with curl, nghttp, h2load and python3-h2 (test/http2_test.rb)
#   make bench-h2        HTTP/2 against HTTP/1.1 with h2load (bench/http2.rb)
#   make bench-hpack     HPACK ns per header, against nghttp2's (bench/hpack.c)
#   make clean

RUBY ?= ruby
CC ?= cc
CFLAGS ?= -O2 -g
SANITIZE ?=

# HTTPS through OpenSSL (kino_tls.c, doc/tls.md): compiled in when its
# headers are found, unless TLS=0. `make openssl-dev` installs them
# (Debian: libssl-dev) when missing. Switching TLS needs `make clean`.
TLS ?= $(shell pkg-config --exists openssl 2>/dev/null && echo 1 || echo 0)
ifeq ($(TLS),1)
TLS_CFLAGS := -DKINO_TLS $(shell pkg-config --cflags openssl)
TLS_LIBS := $(shell pkg-config --libs openssl)
endif

RB_HDR := $(shell $(RUBY) -e 'print RbConfig::CONFIG["rubyhdrdir"]')
RB_ARCH_HDR := $(shell $(RUBY) -e 'print RbConfig::CONFIG["rubyarchhdrdir"]')
RB_LIBS := $(shell $(RUBY) -e 'c = RbConfig::CONFIG; print "-L#{c["libdir"]} #{c["LIBRUBYARG_SHARED"]}"')
DLEXT := $(shell $(RUBY) -e 'print RbConfig::CONFIG["DLEXT"]')
RB_GEM_PATH := $(shell $(RUBY) -e 'print Gem.path.join(":")')

ifeq ($(shell uname -s),Darwin)
SHARED = -bundle -undefined dynamic_lookup
else
SHARED = -shared
endif

WARN = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
KINO_CFLAGS = -std=c11 $(WARN) -fPIC -pthread $(CFLAGS)
ifneq ($(SANITIZE),)
KINO_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SAN_LDFLAGS = -fsanitize=address,undefined
# Ruby raises with __builtin_longjmp (RUBY_LONGJMP in its config.h), which
# ASan cannot intercept: binding frames unwound by a raise would leave their
# stack redzones poisoned, and a later frame on that stack (a respawned
# worker on a reused native thread) would be reported as an overflow that
# never happened. So the binding keeps heap and global checks but no stack
# redzones; the engine (kino*.c), which Ruby never unwinds, keeps them all.
SAN_NO_STACK := $(if $(shell $(CC) --version 2>/dev/null | grep -i clang),-mllvm -asan-stack=0,--param=asan-stack=0)
# Ruby itself is not built with ASan: preload the runtime, skip leak
# checks of the interpreter (LeakSanitizer runs on the C tests instead).
SAN_ENV = LD_PRELOAD=$(shell $(CC) -print-file-name=libasan.so) \
          ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:use_sigaltstack=0 \
          UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
endif

EXT = lib/kino/kino.$(DLEXT)
# KQUEUE=1: the extension on the kqueue backend through libkqueue (see
# test-kqueue); for the chroot only, `make clean` before and after.
ifeq ($(KQUEUE),1)
KINO_CFLAGS += -DKINO_USE_KQUEUE $(shell pkg-config --cflags libkqueue) -include test/c/libkqueue.h
KQ_OBJ = build/libkqueue.o
KQ_EXT_LIBS = $(shell pkg-config --libs libkqueue)
endif
GEMS = .gems
# KINO_TLS: the gem test's build (extconf.rb) follows this one's TLS choice
TEST_ENV = GEM_PATH=$(CURDIR)/$(GEMS):$(RB_GEM_PATH) KINO_TLS=$(TLS) $(SAN_ENV)

.PHONY: all test test-c test-ruby test-deploy serve bench bench-all bench-tls clean gems check-kqueue kqueue-c test-kqueue valgrind openssl-dev test-tls test-ruby3.3 test-ruby3.4 test-ruby4 tsan test-h2 bench-h2

all: $(EXT)

build:
	mkdir -p build

# The engine: kino.c (I/O side, server), kino_http.c (parser), kino_worker.c
# (worker side), sharing the private header kino_engine.h (doc/architecture.md
# section 8).
ENGINE_C = kino.c kino_http.c kino_worker.c kino_stream.c kino_h2.c
ENGINE_H = kino.h kino_engine.h kino_tls.h kino_log.h kino_hpack.h kino_h2.h

build/%.o: %.c $(ENGINE_H) | build
	$(CC) $(KINO_CFLAGS) $(TLS_CFLAGS) -c $< -o $@

build/kino_ruby.o: kino_ruby.c kino.h kino_log.h | build
	$(CC) $(KINO_CFLAGS) $(SAN_NO_STACK) -isystem $(RB_HDR) -isystem $(RB_ARCH_HDR) -c $< -o $@

$(EXT): build/kino.o build/kino_http.o build/kino_worker.o build/kino_control.o build/kino_tls.o build/kino_log.o build/kino_hpack.o build/kino_h2.o build/kino_stream.o build/kino_ruby.o $(KQ_OBJ)
	$(CC) $(SHARED) $(SAN_LDFLAGS) -pthread -o $@ $^ $(RB_LIBS) $(TLS_LIBS) $(KQ_EXT_LIBS)

# C tests: one binary, a unity build so it can test static helpers too.
build/test_c: test/c/*.c test/c/*.h $(ENGINE_C) $(ENGINE_H) kino_control.c kino_tls.c kino_log.c kino_hpack.c | build
	$(CC) $(KINO_CFLAGS) $(TLS_CFLAGS) $(SAN_LDFLAGS) -I. -o $@ test/c/run.c -pthread $(TLS_LIBS)

test-c: build/test_c check-kqueue
	$(if $(SANITIZE),ASAN_OPTIONS=detect_leaks=1) ./build/test_c

# The C tests under valgrind's memcheck: any invalid access or any leak
# fails (built without the sanitizers, which cannot run under valgrind),
# except the one glibc false positive test/c/valgrind.supp explains.
VALGRIND = valgrind --error-exitcode=1 --leak-check=full --show-leak-kinds=definite,indirect,possible \
           --errors-for-leak-kinds=definite,indirect,possible -q --suppressions=test/c/valgrind.supp

build/test_c_vg: test/c/*.c test/c/*.h $(ENGINE_C) $(ENGINE_H) kino_control.c kino_tls.c kino_log.c kino_hpack.c | build
	$(CC) -std=c11 $(WARN) $(TLS_CFLAGS) -pthread -O1 -g -I. -o $@ test/c/run.c -pthread $(TLS_LIBS)

valgrind: build/test_c_vg
	$(VALGRIND) ./build/test_c_vg

# The C tests under ThreadSanitizer: I/O threads, workers and the shutdown
# calls on real sockets; any data race it sees fails the run. Nothing is
# suppressed (the Date cache is race-free by construction, kino.c section 2).
build/test_c_tsan: test/c/*.c test/c/*.h $(ENGINE_C) $(ENGINE_H) kino_control.c kino_tls.c kino_log.c kino_hpack.c | build
	$(CC) -std=c11 $(WARN) $(TLS_CFLAGS) -pthread -O1 -g -fsanitize=thread -fno-omit-frame-pointer -I. -o $@ test/c/run.c $(TLS_LIBS)

# die_after_fork=0: the logging tests fork a multi-threaded process whose
# child starts its own flusher thread, which TSan refuses by default.
tsan: build/test_c_tsan
	TSAN_OPTIONS=halt_on_error=1:exitcode=66:die_after_fork=0 ./build/test_c_tsan

# The kqueue backend (BSD, macOS) compiled on any machine, against the
# declarations in test/compat: both poller backends build on every run.
# This only checks that it compiles; make test-kqueue runs it.
check-kqueue:
	$(CC) -std=c11 $(WARN) -fsyntax-only -DKINO_USE_KQUEUE -Itest/compat $(ENGINE_C) kino_log.c

# The kqueue backend run: the C tests built with -DKINO_USE_KQUEUE against
# libkqueue (kqueue over epoll; Debian has libkqueue-dev in experimental
# only, so this runs in tools/newer-ruby's chroot), under AddressSanitizer
# and UBSan. test/c/libkqueue.h fixes the two places where libkqueue 2.3.1
# is not a kernel kqueue (one socket watched for read and write; close
# removing its knotes); the engine is built as it is. Leak checks are off:
# libkqueue frees a closed kqueue's state lazily. In the chroot, `make
# test-ruby RUBY=ruby3.4 KQUEUE=1` runs the Ruby suites on it as well.
KQ_CFLAGS = $(shell pkg-config --cflags libkqueue 2>/dev/null)
KQ_LIBS = $(shell pkg-config --libs libkqueue 2>/dev/null)

build/libkqueue.o: test/c/libkqueue.c test/c/libkqueue.h | build
	$(CC) -std=c11 $(WARN) -fPIC -pthread -O1 -g $(KQ_CFLAGS) -c $< -o $@

build/test_c_kqueue: test/c/*.c test/c/*.h $(ENGINE_C) $(ENGINE_H) kino_control.c kino_tls.c kino_log.c kino_hpack.c build/libkqueue.o | build
	$(CC) -std=c11 $(WARN) $(TLS_CFLAGS) -pthread -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
	  -fno-sanitize-recover=undefined -DKINO_USE_KQUEUE $(KQ_CFLAGS) -include test/c/libkqueue.h -I. \
	  -o $@ test/c/run.c build/libkqueue.o $(KQ_LIBS) $(TLS_LIBS)

kqueue-c: build/test_c_kqueue
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ./build/test_c_kqueue

test-kqueue:
	tools/newer-ruby --copy make kqueue-c

# Test-only gems go into ./.gems, never into the system.
gems: $(GEMS)/.installed

$(GEMS)/.installed: test/install_gems.rb
	@command -v c++ >/dev/null 2>&1 || { echo "installing g++ (eventmachine, for the hijack suite, compiles C++)"; \
	  apt-get update -q && apt-get install -y -q g++; }
	mkdir -p $(GEMS)
	$(RUBY) test/install_gems.rb $(GEMS)
	touch $@

test-ruby: $(EXT) gems
	$(TEST_ENV) $(RUBY) -Ilib -Itest test/run.rb

test: test-c test-ruby

# OpenSSL's headers for the TLS build, from Debian when missing (as root).
openssl-dev:
	@pkg-config --exists openssl 2>/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q libssl-dev pkg-config >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libssl-dev pkg-config >/dev/null; }; }; } || \
	  echo "make: OpenSSL's headers are missing (Debian: libssl-dev): Kino builds without TLS" >&2

# The HTTPS suite (also part of make test), then sslscan against a Kino
# listener: no SSLv3, TLS 1.0/1.1 or weak cipher may be accepted.
test-tls: $(EXT) gems
	bench/need curl openssl sslscan
	$(TEST_ENV) KINO_SSLSCAN=1 TESTS=test/tls_test.rb $(RUBY) -Ilib -Itest test/run.rb

# HTTP/2 with the clients people use (test/http2_test.rb): curl, nghttp
# and h2load from Debian's nghttp2-client, and python3-h2 for the
# frame-level cases (test/h2/frames.py), installed when missing
# (test/h2/need); about 15 s. make test runs the same file and skips a
# case whose client is missing.
test-h2: $(EXT) gems
	test/h2/need
	$(TEST_ENV) KINO_H2_TOOLS=required TESTS=test/http2_test.rb $(RUBY) -Ilib -Itest test/run.rb

# HTTP/2 against HTTP/1.1 on the same Kino with h2load (bench/http2.rb);
# BENCH_LOCK=/path serializes it on a shared machine.
bench-h2: $(EXT)
	test/h2/need
	bench/need nginx
	$(if $(BENCH_LOCK),flock $(BENCH_LOCK)) $(RUBY) bench/http2.rb

# Kino against what it is deployed with -- nginx, HAProxy, promtool,
# systemd-socket-activate -- every configuration doc/deploy.md shows
# (test/deploy/need installs them from Debian when missing).
test-deploy: $(EXT) gems
	test/deploy/need
	$(TEST_ENV) TESTS="$(wildcard test/deploy/*_test.rb)" $(RUBY) -Ilib -Itest test/run.rb

# Ruby 4.0 without a native build: ruby.wasm 4.0 (npm @ruby/4.0-wasm-wasi
# 2.10.x), run by node, and minitest, all in ./vendor/ruby4 (git-ignored);
# node and npm come from Debian when missing. It runs the suites that need
# no native extension (test/pure) and prints the Ruby version first.
RUBY4 = vendor/ruby4
$(RUBY4)/.installed:
	command -v node >/dev/null && command -v npm >/dev/null || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm; }
	mkdir -p $(RUBY4)
	cd $(RUBY4) && npm install --no-audit --no-fund --silent @ruby/4.0-wasm-wasi@~2.10.1
	$(RUBY) -S gem install --no-document --install-dir $(RUBY4)/gems minitest -v '~> 5.15'
	touch $@

test-ruby4: $(RUBY4)/.installed
	node --no-warnings test/ruby4/run.mjs $(RUBY4) test/ruby4/suite.rb \
	  /kino/$$(ls -d $(RUBY4)/gems/gems/minitest-*/lib | tail -n 1)

# The suite on a newer Ruby than the machine's, in tools/newer-ruby's chroot,
# built in a copy of the checkout's files (this tree's build/ is untouched).
test-ruby3.3 test-ruby3.4:
	tools/newer-ruby --copy make test RUBY=$(@:test-%=%)

serve: $(EXT)
	$(RUBY) -Ilib -rkino -e 'Kino.serve'

# wrk (and nginx for bench-all) come from Debian when missing: bench/need.
bench: $(EXT)
	bench/need wrk
	$(RUBY) bench/run
	$(RUBY) bench/logging.rb
	$(if $(filter 1,$(TLS)),$(MAKE) bench-tls)

# What logging costs: the access log on /plaintext in both modes, and
# Kino::Logger against ::Logger on an endpoint logging a line per request
# (bench/logging.rb, doc/logging.md); part of make bench. On a shared
# machine BENCH_LOCK=/path/to/lockfile serializes it with other benchmarks.
bench-logging: $(EXT)
	bench/need wrk
	$(if $(BENCH_LOCK),flock $(BENCH_LOCK)) $(RUBY) bench/logging.rb $(BENCH_LOGGING_ARGS)

# Every server bench/run knows, on every endpoint each of them serves.
BENCH_ALL = kino-threaded,kino-ractor,puma-cluster,puma-single,falcon,agoo,iodine,nginx
bench-all: $(EXT)
	bench/need wrk nginx
	$(RUBY) bench/run --servers $(BENCH_ALL)

# HTTPS: Kino against nginx and Puma (ssl_bind), same certificate
# (bench/tls.rb; doc/benchmarks.md has the figures).
bench-tls: $(EXT)
	bench/need wrk nginx openssl
	$(RUBY) bench/tls.rb

# HPACK throughput, ns per header field (bench/hpack.c, doc/http2.md):
# kino_hpack.c against nghttp2's HPACK in the same run, when libnghttp2's
# headers are there (Debian: libnghttp2-dev, installed when missing and
# root); Kino alone otherwise. BENCH_LOCK=/path serializes it on a shared
# machine; BENCH_HPACK_ARGS="ITER REPEAT" (default 200000 5).
NGHTTP2_CFLAGS = $(shell pkg-config --exists libnghttp2 2>/dev/null && echo -DWITH_NGHTTP2 $$(pkg-config --cflags libnghttp2))
NGHTTP2_LIBS = $(shell pkg-config --libs libnghttp2 2>/dev/null)
.PHONY: bench-hpack nghttp2-dev test-hpack-nghttp2
, := ,
nghttp2-dev:
	@pkg-config --exists libnghttp2 2>/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q libnghttp2-dev >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libnghttp2-dev >/dev/null; }; }; } || \
	  echo "make: libnghttp2's headers are missing (Debian: libnghttp2-dev): bench-hpack measures Kino alone" >&2

build/bench_hpack: bench/hpack.c kino_hpack.c kino_hpack.h | build
	$(CC) -std=c11 $(WARN) -O2 -g -I. $(NGHTTP2_CFLAGS) -o $@ bench/hpack.c kino_hpack.c $(NGHTTP2_LIBS)

bench-hpack: nghttp2-dev
	$(MAKE) -B build/bench_hpack
	$(if $(BENCH_LOCK),flock $(BENCH_LOCK)) ./build/bench_hpack $(BENCH_HPACK_ARGS)

# HPACK against nghttp2's, both ways, 3000 blocks each, dynamic table and
# size updates included (test/hpack_nghttp2.c; a second or two): needs
# libnghttp2-dev, installed when missing (as root).
build/hpack_nghttp2: test/hpack_nghttp2.c kino_hpack.c kino_hpack.h | build
	$(CC) -std=c11 $(WARN) -O1 -g $(if $(SANITIZE),-fsanitize=address$(,)undefined -fno-sanitize-recover=undefined) -I. \
	  $(NGHTTP2_CFLAGS) -o $@ test/hpack_nghttp2.c kino_hpack.c $(NGHTTP2_LIBS)

test-hpack-nghttp2: nghttp2-dev
	@pkg-config --exists libnghttp2 || { echo "make: test-hpack-nghttp2 needs libnghttp2-dev" >&2; exit 1; }
	$(MAKE) -B build/hpack_nghttp2
	./build/hpack_nghttp2

clean:
	rm -rf build lib/kino/*.so lib/kino/*.bundle

# ------------------------------------------------------------------
# Fuzzing: libFuzzer harnesses for the parser (doc/fuzzing.md)
#
#   make fuzz-build      build/fuzz_head, _chunked, _pipeline, _proxy, _hpack
#   make fuzz            each harness for FUZZ_SECONDS (600), one after the
#                        other, single process, on a fresh copy of its seeds
#   make fuzz-smoke      each harness for 20 s (CI)
#   make fuzz-coverage   parser coverage reached by each corpus (llvm-cov)
#   make -B fuzz-build fuzz FUZZ_DEFS='-DKINO_MAX_HEAD=512 ...'
#                        the same with smaller limits, so they are reached

FUZZ_CC ?= $(shell command -v clang-14 >/dev/null 2>&1 && echo clang-14 || echo clang)
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I.
FUZZ_DEFS ?=
FUZZ_SECONDS ?= 600
FUZZ_MAX_LEN ?= 16384
FUZZ_NAMES = head chunked pipeline proxy hpack h2

.PHONY: fuzz fuzz-build fuzz-smoke fuzz-toolchain fuzz-regress fuzz-coverage

fuzz-build: $(FUZZ_NAMES:%=build/fuzz_%)

# clang's libFuzzer runtime is a separate Debian package: installed when missing.
fuzz-toolchain: build/.fuzz-toolchain
build/.fuzz-toolchain: | build
	fuzz/toolchain $(FUZZ_CC)
	touch $@

# The parser is pure: a harness links kino_http.c alone.
build/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h kino_http.c kino.h kino_engine.h build/.fuzz-toolchain | build
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_DEFS) -o $@ $< kino_http.c

# HPACK stands alone: the harness includes kino_hpack.c (for its tables).
# The HTTP/2 frame layer and, through it, the HPACK decoder.
build/fuzz_h2: fuzz/fuzz_h2.c fuzz/fuzz.h kino_h2.c kino_h2.h kino_hpack.c kino_hpack.h build/.fuzz-toolchain | build
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_DEFS) -o $@ $< kino_h2.c kino_hpack.c

build/fuzz_hpack: fuzz/fuzz_hpack.c fuzz/fuzz.h kino_hpack.c kino_hpack.h build/.fuzz-toolchain | build
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_DEFS) -o $@ $<

# Every input that once crashed a harness (fuzz/crashes/<harness>-*),
# replayed: they must all pass now.
fuzz-regress: fuzz-build
	@for n in $(FUZZ_NAMES); do \
	  set -- fuzz/crashes/$$n-*; [ -e "$$1" ] || continue; \
	  ./build/fuzz_$$n "$$@" > build/fuzz-regress-$$n.log 2>&1 || \
	    { tail -n 30 build/fuzz-regress-$$n.log; echo "fuzz_$$n: a known crash is back"; exit 1; }; \
	  echo "fuzz_$$n: $$# known crash inputs pass"; \
	done

# $(call fuzz_run,seconds): run every harness in turn, even after one
# fails, and fail at the end. Logs: build/fuzz-<name>.log; crashing
# inputs: build/fuzz-crashes/<name>-crash-*.
define fuzz_run
	@failed=; for n in $(FUZZ_NAMES); do \
	  rm -rf build/fuzz-corpus/$$n; mkdir -p build/fuzz-corpus/$$n build/fuzz-crashes; \
	  cp fuzz/corpus/$$n/* build/fuzz-corpus/$$n/; \
	  echo "fuzz_$$n: $(1) s"; \
	  if ./build/fuzz_$$n -max_total_time=$(1) -max_len=$(FUZZ_MAX_LEN) \
	      -dict=$$(f=fuzz/dict/$$n.dict; [ -f $$f ] || f=fuzz/dict/http.dict; echo $$f) -print_final_stats=1 \
	      -artifact_prefix=build/fuzz-crashes/$$n- build/fuzz-corpus/$$n \
	      > build/fuzz-$$n.log 2>&1; then \
	    grep -E '^#[0-9]+[[:space:]]+DONE' build/fuzz-$$n.log | tail -n 1; \
	    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' build/fuzz-$$n.log; \
	  else \
	    tail -n 40 build/fuzz-$$n.log; echo "fuzz_$$n FAILED (build/fuzz-$$n.log)"; \
	    failed="$$failed $$n"; \
	  fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzzing failed:$$failed"; exit 1; fi
endef

fuzz: fuzz-regress
	$(call fuzz_run,$(FUZZ_SECONDS))

fuzz-smoke: fuzz-regress
	$(call fuzz_run,20)

# How much of the parser each corpus reaches (after make fuzz: the grown
# corpora in build/fuzz-corpus), with clang's source-based coverage.
fuzz-coverage: build/.fuzz-toolchain
	fuzz/coverage $(FUZZ_CC) $(FUZZ_NAMES)

# ------------------------------------------------------------------
# Install: the library, the extension, bin/kino and the manual page
#
#   make install                      into /usr/local (builds the extension first)
#   make install PREFIX=$HOME/.local  anywhere; DESTDIR=... is honoured for packages
#   make uninstall PREFIX=...
#
# $(PREFIX)/lib/kino/lib and .../bin hold lib/ and bin/ as in a checkout;
# $(PREFIX)/bin/kino runs them with the Ruby that built the extension;
# the manual goes to $(PREFIX)/share/man/man1/kino.1 (man kino).

PREFIX ?= /usr/local
KINO_HOME = $(PREFIX)/lib/kino
MAN1DIR = $(PREFIX)/share/man/man1
RUBY_EXE := $(shell $(RUBY) -e 'print RbConfig.ruby')

.PHONY: install uninstall

install: $(EXT)
	mkdir -p '$(DESTDIR)$(KINO_HOME)/bin' '$(DESTDIR)$(PREFIX)/bin' '$(DESTDIR)$(MAN1DIR)'
	cd lib && find . -name '*.rb' | while read -r f; do \
	  mkdir -p "$(DESTDIR)$(KINO_HOME)/lib/$$(dirname "$$f")" && \
	  cp "$$f" "$(DESTDIR)$(KINO_HOME)/lib/$$f" || exit 1; \
	done
	cp $(EXT) '$(DESTDIR)$(KINO_HOME)/lib/kino/'
	cp bin/kino '$(DESTDIR)$(KINO_HOME)/bin/kino'
	printf '#!/bin/sh\n# kino, installed by make install from a Kino checkout\nexec "%s" -I "%s" "%s" "$$@"\n' \
	  '$(RUBY_EXE)' '$(KINO_HOME)/lib' '$(KINO_HOME)/bin/kino' > '$(DESTDIR)$(PREFIX)/bin/kino'
	chmod 755 '$(DESTDIR)$(PREFIX)/bin/kino' '$(DESTDIR)$(KINO_HOME)/bin/kino'
	cp man/kino.1 '$(DESTDIR)$(MAN1DIR)/kino.1'

uninstall:
	rm -rf '$(DESTDIR)$(KINO_HOME)'
	rm -f '$(DESTDIR)$(PREFIX)/bin/kino' '$(DESTDIR)$(MAN1DIR)/kino.1'

# examples/rails-hello: its gems go into examples/rails-hello/vendor/bundle
# (script/install; a second run installs nothing).
RAILS_APP = examples/rails-hello
RAILS_BUNDLE = BUNDLE_GEMFILE=$(CURDIR)/$(RAILS_APP)/Gemfile BUNDLE_PATH=$(CURDIR)/$(RAILS_APP)/vendor/bundle
.PHONY: test-rails bench-rails

test-rails: $(EXT)
	$(RAILS_APP)/script/install
	cd $(RAILS_APP) && $(RAILS_BUNDLE) BUNDLE_WITHOUT=bench bundle exec ruby test/kino_test.rb

# The example in production: Kino :cluster and :threaded against Puma's
# cluster mode, 2 x 5 each (bench/rails --help; Puma joins the bundle).
bench-rails: $(EXT)
	bench/need wrk
	$(RAILS_APP)/script/install bench
	$(RUBY) bench/rails $(BENCH_RAILS_ARGS)

# Kino -- build, test, serve, bench.
#
#   make                 build lib/kino/kino.so for the `ruby` in PATH
#   make RUBY=ruby3.4    ... for another Ruby (run `make clean` when switching)
#   make test            C unit tests, then the Ruby suites (installs rack
#                        and minitest into ./.gems when they are missing)
#   make test SANITIZE=1 the same under AddressSanitizer + UBSan
#   make serve           Kino.serve from this checkout, on :9292
#   make bench           Kino against Puma (bench/README.md)
#   make clean

RUBY ?= ruby
CC ?= cc
CFLAGS ?= -O2 -g
SANITIZE ?=

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
# Ruby itself is not built with ASan: preload the runtime, skip leak
# checks of the interpreter (LeakSanitizer runs on the C tests instead).
SAN_ENV = LD_PRELOAD=$(shell $(CC) -print-file-name=libasan.so) \
          ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 \
          UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
endif

EXT = lib/kino/kino.$(DLEXT)
GEMS = .gems
TEST_ENV = GEM_PATH=$(CURDIR)/$(GEMS):$(RB_GEM_PATH) $(SAN_ENV)

.PHONY: all test test-c test-ruby serve bench clean gems

all: $(EXT)

build:
	mkdir -p build

build/%.o: %.c kino.h | build
	$(CC) $(KINO_CFLAGS) -c $< -o $@

build/kino_ruby.o: kino_ruby.c kino.h | build
	$(CC) $(KINO_CFLAGS) -isystem $(RB_HDR) -isystem $(RB_ARCH_HDR) -c $< -o $@

$(EXT): build/kino.o build/kino_ruby.o
	$(CC) $(SHARED) $(SAN_LDFLAGS) -pthread -o $@ $^ $(RB_LIBS)

# C tests: one binary, a unity build so it can test static helpers too.
build/test_c: test/c/*.c test/c/*.h kino.c kino.h | build
	$(CC) $(KINO_CFLAGS) $(SAN_LDFLAGS) -I. -o $@ test/c/run.c -pthread

test-c: build/test_c
	$(if $(SANITIZE),ASAN_OPTIONS=detect_leaks=1) ./build/test_c

# Test-only gems go into ./.gems, never into the system.
gems: $(GEMS)/.installed

$(GEMS)/.installed:
	mkdir -p $(GEMS)
	$(RUBY) test/install_gems.rb $(GEMS)
	touch $@

test-ruby: $(EXT) gems
	$(TEST_ENV) $(RUBY) -Ilib -Itest test/run.rb

test: test-c test-ruby

serve: $(EXT)
	$(RUBY) -Ilib -rkino -e 'Kino.serve'

bench: $(EXT)
	$(RUBY) bench/run

clean:
	rm -rf build lib/kino/*.so lib/kino/*.bundle

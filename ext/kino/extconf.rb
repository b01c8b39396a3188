# frozen_string_literal: true

# Builds Kino's native extension (kino/kino.so) with mkmf when the gem is
# installed: the sources are the engine (kino.c, kino.h) and the binding
# (kino_ruby.c) at the top of the gem, the same files `make` builds in a
# checkout. Needs only a C compiler and Ruby's headers.
require "mkmf"

root = File.expand_path("../..", __dir__)
abort "kino.c not found in #{root}" unless File.file?(File.join(root, "kino.c"))

# The sources are found through VPATH; the source directory stays
# ext/kino, so mkmf does not also install the gem's lib/ files.
$VPATH << root
$INCFLAGS << " -I#{root}"
$CFLAGS << " -std=c11 -pthread"
$LDFLAGS << " -pthread"
$objs = %w[kino.o kino_ruby.o]

create_makefile("kino/kino")

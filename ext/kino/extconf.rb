# frozen_string_literal: true

# Builds Kino's native extension (kino/kino.so) with mkmf when the gem is
# installed: the sources are the engine (kino.c, kino_http.c, kino_worker.c,
# kino_control.c, kino_log.c, kino_tls.c, kino_hpack.c and their headers) and the binding
# (kino_ruby.c) at the top of the gem, the same files `make` builds in a
# checkout. Needs a C compiler and Ruby's headers; OpenSSL's (Debian:
# libssl-dev) for HTTPS, which is left out without them.
require "mkmf"

root = File.expand_path("../..", __dir__)
abort "kino.c not found in #{root}" unless File.file?(File.join(root, "kino.c"))

# The sources are found through VPATH; the source directory stays
# ext/kino, so mkmf does not also install the gem's lib/ files.
$VPATH << root
$INCFLAGS << " -I#{root}"
$CFLAGS << " -std=c11 -pthread"
$LDFLAGS << " -pthread"
$objs = %w[kino.o kino_http.o kino_worker.o kino_control.o kino_tls.o kino_log.o kino_hpack.o kino_h2.o kino_stream.o kino_ruby.o]

# HTTPS (kino_tls.c) when OpenSSL's headers and libraries are found, as
# `make` does; KINO_TLS=0 in the environment builds without it.
if ENV["KINO_TLS"] != "0" && (pkg_config("openssl") || (have_header("openssl/ssl.h") && have_library("crypto") && have_library("ssl")))
  $defs << "-DKINO_TLS"
else
  message "kino: building without TLS (OpenSSL's headers were not found)\n"
end

create_makefile("kino/kino")

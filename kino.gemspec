# frozen_string_literal: true

require_relative "lib/kino/version"

# gem build kino.gemspec && gem install ./kino-*.gem
# Installing compiles the extension (ext/kino/extconf.rb) from the engine
# (kino.c, kino_http.c, kino_worker.c, kino_control.c, kino_log.c) and
# kino_ruby.c (and kino_tls.c, with HTTPS when OpenSSL's headers are
# found): a C compiler and Ruby's headers are all it needs.
Gem::Specification.new do |spec|
  spec.name = "kino"
  spec.version = Kino::VERSION
  spec.summary = "A Rack 3 web server with a small C engine: Ractors or threads, one process"
  spec.description = "Kino serves any Rack app with C I/O threads and runs it in parallel " \
                     "Ractors (Ractor-shareable apps) or threads (any app, Rails included). " \
                     "Puma-shaped: workers x threads, a kino.rb config DSL, a kino CLI and a " \
                     "Rack handler (rackup -s kino, rails server -u kino)."
  spec.authors = ["Kino contributors"]
  spec.license = "MIT"
  spec.required_ruby_version = ">= 3.1"

  spec.files = Dir.glob(%w[kino.c kino_http.c kino_worker.c kino_engine.h kino_control.c kino.h kino_tls.c kino_tls.h kino_log.c kino_log.h kino_hpack.c kino_hpack.h kino_h2.c kino_h2.h kino_stream.c kino_ruby.c lib/**/*.rb bin/kino man/kino.1 ext/kino/extconf.rb
                           README.md LICENSE], base: __dir__)
  spec.bindir = "bin"
  spec.executables = ["kino"]
  spec.extensions = ["ext/kino/extconf.rb"]
  spec.require_paths = ["lib"]
end

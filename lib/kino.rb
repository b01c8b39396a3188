# frozen_string_literal: true

# Kino: a Rack 3 web server whose network side is a small C engine.
#
#   require "kino"
#   Kino.serve                          # ./config.ru, else the built-in page
#   Kino.serve(app, port: 3000)
#   Kino::Server.new(app, **options).start
#
# Where things live: the engine is kino*.c (C, no Ruby), the binding is
# kino_ruby.c (Kino::Native), and each file under lib/kino has one job.
require_relative "kino/version"
begin
  # The native extension (Kino::Native, Kino::Input): lib/kino/kino.so in a
  # checkout (make) and in most gem installs, else RubyGems' extension dir.
  require_relative "kino/kino"
rescue LoadError => e
  begin
    require "kino/kino"
  rescue LoadError
    raise LoadError, "Kino's native extension is not built (#{e.message}); run `make` in the Kino checkout"
  end
end
require_relative "kino/errors"
require_relative "kino/cpus"
require_relative "kino/options"
require_relative "kino/log"
require_relative "kino/logger"
require_relative "kino/access_log"
require_relative "kino/reporter"
require_relative "kino/hijack"
require_relative "kino/pidfile"
require_relative "kino/check"
require_relative "kino/shareable"
require_relative "kino/hooks"
require_relative "kino/backoff"
require_relative "kino/quarantine"
require_relative "kino/elastic"
require_relative "kino/pool"
require_relative "kino/slots"
require_relative "kino/workers"
require_relative "kino/ractors"
require_relative "kino/inherit"
require_relative "kino/systemd"
require_relative "kino/restart"
require_relative "kino/loader"
require_relative "kino/frames"
require_relative "kino/cluster_worker"
require_relative "kino/cluster"
require_relative "kino/control_publisher"
require_relative "kino/server"
require_relative "kino/builder"
require_relative "kino/welcome"
require_relative "kino/configuration"

module Kino
  # Serve a Rack app until INT or TERM: +app+, or the block, or
  # ./config.ru when present, else the built-in welcome page. Listens on
  # port 9292 unless +port:+ says otherwise; other options as for
  # Kino::Server.new.
  def self.serve(app = nil, **options, &block)
    app ||= block || (File.exist?("config.ru") ? Builder.load_file("config.ru") : Welcome)
    options = { port: 9292 }.merge(options)
    Server.run(app, **options)
  end

  # Sleep +seconds+ on the OS clock with the GVL released. Unlike
  # Kernel#sleep it stays precise in worker ractors; Thread#kill ends it
  # at once.
  def self.sleep(seconds)
    Native.sleep(seconds)
  end
end

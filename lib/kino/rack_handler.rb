# frozen_string_literal: true

require_relative "../kino"

module Kino
  # What `rackup -s kino` and `rails server -u kino` run, through
  # Rackup::Handler::Kino (lib/rackup/handler/kino.rb) or, on Rack 2,
  # Rack::Handler::Kino (lib/rack/handler/kino.rb).
  #
  # Host options (the Rack handler convention) map to Kino options: Host,
  # Port, Threads, Workers, Mode (-O Mode=threaded) and Config (-O
  # Config=path; else kino.rb or config/kino.rb when present). Others
  # (environment, pid, AccessLog, daemonize, ...) are ignored.
  #
  # Precedence: options the user typed > the config file > the host's
  # defaults (its Host and Port) > Kino's defaults, with port 9292.
  module RackHandler
    # Host option => Kino option.
    KEYS = { Host: :bind, Port: :port, Threads: :threads, Workers: :workers, Mode: :mode }.freeze

    # rackup cannot say which options were typed; a Host or Port equal to
    # its defaults counts as its default.
    RACKUP_DEFAULTS = { Host: %w[localhost 0.0.0.0], Port: [9292, "9292"] }.freeze

    # What the handler's -O options are, for `rackup -s kino -h`.
    VALID_OPTIONS = {
      "Host=HOST" => "address to listen on (default: localhost)",
      "Port=PORT" => "port to listen on (default: 9292)",
      "Threads=N" => "threads per worker (Puma's MIN:MAX works: MAX is used)",
      "Workers=N" => "workers (default: the CPUs this process may use)",
      "Mode=MODE" => "auto, ractor or threaded (default: auto)",
      "Config=FILE" => "Kino config file (default: kino.rb, then config/kino.rb)"
    }.freeze

    # The two methods of a Rack handler module; Rackup::Handler::Kino and
    # Rack::Handler::Kino extend it.
    module Handler
      # Serve +app+ until INT or TERM; yields the built server first.
      def run(app, options = {}, **more, &block)
        RackHandler.run(app, options.merge(more), &block)
      end

      # The -O options, for `rackup -s kino -h`.
      def valid_options
        VALID_OPTIONS
      end
    end

    # Builds the server for +app+ from the host's +options+, yields it (not
    # started) to the block if there is one, then runs it until INT/TERM.
    def self.run(app, options = {})
      server = build(app, options)
      yield server if block_given?
      server.run
    end

    # The Kino::Server +app+ and the host's +options+ describe, not started.
    def self.build(app, options = {})
      Server.new(app, **server_options(options))
    end

    # Kino's server options for the host's +options+ (see the precedence
    # above). Raises ConfigError for a bad config file, ArgumentError (on
    # Server.new) for a bad value.
    def self.server_options(options)
      options = options.transform_keys(&:to_sym)
      typed, host_defaults = split(options)
      { port: 9292 }.merge(translate(host_defaults)).merge(config(options)).merge(translate(typed))
    end

    # [typed, host defaults]: Rails lists what was typed in
    # :user_supplied_options; without it, rackup's defaults are guessed.
    def self.split(options)
      given = options.slice(*KEYS.keys).compact
      if (typed = options[:user_supplied_options])
        typed = typed.map(&:to_sym)
        given.partition { |key, _| typed.include?(key) }.map(&:to_h)
      else
        given.partition { |key, value| !RACKUP_DEFAULTS.fetch(key, []).include?(value) }.map(&:to_h)
      end
    end

    # Host options renamed and coerced ("8" => 8, "threaded" => :threaded).
    def self.translate(options)
      options.to_h { |key, value| [KEYS[key], Directives.coerce(KEYS[key], value)] }
    end

    # The server options of the config file (-O Config=path, or a default
    # one), or {}.
    def self.config(options)
      path = options[:Config] || Configuration.default_path
      path ? Configuration.load(path.to_s).server_options : {}
    end

    private_class_method :split, :translate, :config
  end
end

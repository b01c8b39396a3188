# frozen_string_literal: true

require_relative "listeners"

module Kino
  # Server options: names, defaults and validation. Kino::Server.new, the
  # config file and the CLI all use these names (README, Options;
  # doc/architecture.md, section 6).
  module Options
    MiB = 1024 * 1024

    DEFAULTS = {
      bind: "127.0.0.1",      # an address or URL, or an Array of them (Listeners)
      port: 0,
      proxy_protocol: false,  # every listener requires a PROXY protocol header
      control_bind: nil,      # "HOST:PORT" or "unix:///PATH": /live, /ready, /stats, /metrics
      control_token: nil,     # bearer token for /stats and /metrics
      workers: nil,           # nil: Kino.available_parallelism
      threads: nil,           # nil: 1 in :ractor mode, 3 in :threaded and :cluster
      mode: :auto,
      preload: true,          # :cluster: load the app in the master, before the fork
      max_workers: nil,       # elastic pool: grow up to this many workers under a backlog; nil: off
      scale_down_after: 30.0, # elastic pool: idle seconds before the extra workers leave
      io_threads: 1,
      queue_depth: 1024,
      queue_timeout: 5.0,
      request_timeout: nil,   # nil: off
      quarantine_timeout: nil, # seconds on one request before its worker is replaced; nil: off
      quarantine_max: nil,    # workers in quarantine at once; nil: as many as workers
      shutdown_timeout: 30.0,
      max_body_size: 50 * MiB, # nil or 0: unlimited
      body_buffer: 1 * MiB,   # request-body bytes gathered before the app runs; 0: stream
      header_timeout: 15.0,
      keepalive_timeout: 65.0,
      body_timeout: 30.0,
      max_connections: nil,   # nil: 80% of the open-file limit
      lanes: false,           # each worker thread gets a short queue of its own
      batch: 1,               # requests a worker thread takes per visit to the queue
      tls: nil,               # {cert:, key:, ...}: HTTPS (see TLS_KEYS, doc/tls.md)
      http2: true,            # HTTP/2: ALPN h2 over TLS, prior-knowledge h2c (doc/http2.md)
      pidfile: nil,           # path of a pid file to claim at start
      log_requests: nil,      # access log: nil/false off, true stdout, or a path to append to
      log_format: :text,      # access log lines: :text or :json
      on_error: nil,          # callable(exception, env), after the error is logged
      after_boot: nil,        # callable(), once the workers are up (main thread)
      on_worker_boot: nil,    # callable(worker), in each worker before it serves
      on_worker_exit: nil,    # callable(worker, error), when a worker ends (main thread)
      before_fork: nil        # callable(), in the :cluster master before each fork
    }.freeze

    HOOKS = %i[on_error after_boot on_worker_boot on_worker_exit before_fork].freeze

    MODES = %i[auto ractor threaded cluster].freeze

    # The keys of the tls: Hash. cert and key are required; each of cert,
    # key and ca is a file path or PEM text.
    TLS_KEYS = %i[cert key ca verify min_version ciphers].freeze
    TLS_VERIFY = { none: 0, peer: 1 }.freeze
    TLS_VERSIONS = { "1.2" => 12, "1.3" => 13 }.freeze
    LOG_FORMATS = %i[text json].freeze
    BATCH_MAX = 64 # KINO_BATCH_MAX (kino.h)

    # The given options over the defaults, validated and frozen. Raises
    # ArgumentError naming the first unknown or invalid option.
    def self.resolve(given)
      unknown = given.keys - DEFAULTS.keys
      raise ArgumentError, "unknown option #{unknown.first.inspect} (known: #{DEFAULTS.keys.join(', ')})" if unknown.any?

      options = DEFAULTS.merge(given)
      options.each { |name, value| check(name, value) }
      check_pool(options)
      options[:mode] = options[:mode].to_sym
      options[:log_format] = options[:log_format].to_sym
      options.freeze
    end

    def self.check(name, value)
      case name
      when :bind
        Listeners.validate(value)
      when :control_bind
        Listeners.control(value) unless value.nil?
      when :control_token
        invalid(name, value, "a non-empty String without spaces, or nil") unless value.nil? || (value.is_a?(String) && value.match?(/\A[\x21-\x7e]+\z/))
      when :proxy_protocol, :lanes
        invalid(name, value, "true or false") unless [true, false].include?(value)
      when :batch
        invalid(name, value, "an Integer from 1 to #{BATCH_MAX}") unless value.is_a?(Integer) && value.between?(1, BATCH_MAX)
      when :port
        invalid(name, value, "an Integer from 0 to 65535") unless value.is_a?(Integer) && value.between?(0, 65_535)
      when :workers, :threads, :max_connections, :max_workers
        positive_integer(name, value) unless value.nil?
      when :quarantine_max
        invalid(name, value, "an Integer of at least 0, or nil") unless value.nil? || (value.is_a?(Integer) && value >= 0)
      when :io_threads, :queue_depth
        positive_integer(name, value)
      when :mode
        invalid(name, value, "one of #{MODES.map(&:inspect).join(', ')}") unless value.respond_to?(:to_sym) && MODES.include?(value.to_sym)
      when :request_timeout, :quarantine_timeout
        positive_number(name, value) unless value.nil?
      when :scale_down_after
        positive_number(name, value)
      when :shutdown_timeout
        invalid(name, value, "a number of seconds, 0 or more") unless value.is_a?(Numeric) && value >= 0
      when :queue_timeout, :header_timeout, :keepalive_timeout, :body_timeout
        positive_number(name, value)
      when *HOOKS
        invalid(name, value, "a callable (responds to call), or nil") unless value.nil? || value.respond_to?(:call)
      when :preload, :http2
        invalid(name, value, "true or false") unless [true, false].include?(value)
      when :pidfile
        invalid(name, value, "a path (String), or nil") unless value.nil? || (value.is_a?(String) && !value.empty?)
      when :log_requests
        invalid(name, value, "true (stdout), a path (String), or nil/false (off)") unless
          [nil, true, false].include?(value) || (value.is_a?(String) && !value.empty?)
      when :log_format
        invalid(name, value, "one of #{LOG_FORMATS.map(&:inspect).join(', ')}") unless
          value.respond_to?(:to_sym) && LOG_FORMATS.include?(value.to_sym)
      when :body_buffer
        invalid(name, value, "a number of bytes, 0 or more") unless value.is_a?(Integer) && value >= 0
      when :max_body_size
        invalid(name, value, "a number of bytes, or nil for no limit") unless value.nil? || (value.is_a?(Integer) && value >= 0)
      when :tls
        check_tls(value) unless value.nil?
      end
    end

    # max_workers against workers. When workers is nil (the CPUs) the
    # server checks again once it knows the number (Pool.shape).
    def self.check_pool(options)
      workers = options[:workers]
      max = options[:max_workers]
      return unless max && workers && max < workers

      invalid(:max_workers, max, "at least workers (#{workers}), or nil")
    end

    # The shape of tls: (the files themselves are read at start, where a
    # missing file or a bad PEM is a Kino::Error naming it).
    def self.check_tls(tls)
      invalid(:tls, tls, "a Hash like {cert: \"cert.pem\", key: \"key.pem\"}") unless tls.is_a?(Hash)
      unknown = tls.keys - TLS_KEYS
      invalid(:tls, tls, "only the keys #{TLS_KEYS.join(', ')}; #{unknown.first.inspect} is unknown") if unknown.any?
      %i[cert key].each { |k| invalid(:tls, tls, "#{k}: a file path or PEM text") unless text?(tls[k]) }
      invalid(:tls, tls, "ca: a file path or PEM text") unless tls[:ca].nil? || text?(tls[:ca])
      invalid(:tls, tls, "ciphers: an OpenSSL cipher list String") unless tls[:ciphers].nil? || text?(tls[:ciphers])
      verify = tls[:verify]
      invalid(:tls, tls, "verify: :peer or :none") unless verify.nil? || TLS_VERIFY.key?(verify.to_s.to_sym)
      invalid(:tls, tls, "verify: :peer needs ca:") if verify.to_s == "peer" && tls[:ca].nil?
      invalid(:tls, tls, "min_version: \"1.2\" or \"1.3\"") unless tls[:min_version].nil? || tls_version(tls[:min_version])
    end

    def self.text?(value)
      value.is_a?(String) && !value.empty?
    end

    # 12 or 13 for 1.2, "1.3", :TLSv1_3, "TLSv1.2"...; nil otherwise.
    def self.tls_version(value)
      TLS_VERSIONS[value.to_s.delete_prefix("TLSv").tr("_", ".")]
    end

    # tls: as the engine takes it: verify and min_version as numbers; a
    # ca without verify: means verify: :peer.
    def self.native_tls(tls)
      return nil unless tls

      verify = tls[:verify] || (tls[:ca] ? :peer : :none)
      tls.slice(:cert, :key, :ca, :ciphers).merge(verify: TLS_VERIFY.fetch(verify.to_s.to_sym),
                                                  min_version: tls_version(tls[:min_version] || "1.2"))
    end

    def self.positive_integer(name, value)
      invalid(name, value, "an Integer of at least 1") unless value.is_a?(Integer) && value >= 1
    end

    def self.positive_number(name, value)
      invalid(name, value, "a number of seconds greater than 0") unless value.is_a?(Numeric) && value.positive?
    end

    def self.invalid(name, value, expected)
      raise ArgumentError, "invalid #{name}: #{value.inspect} (expected #{expected})"
    end

    # The subset the C engine takes, with nil spelled the way it wants.
    # +listeners+: Listeners::Listener entries (Options.listeners).
    def self.native(options, listeners = self.listeners(options))
      first_tcp = listeners.find { |l| l.kind == :tcp }
      {
        bind: first_tcp ? first_tcp.host : "localhost", # SERVER_NAME without a Host
        listen: listeners.map(&:native),
        io_threads: options[:io_threads],
        queue_depth: options[:queue_depth],
        queue_timeout: options[:queue_timeout],
        request_timeout: options[:request_timeout] || 0,
        header_timeout: options[:header_timeout],
        keepalive_timeout: options[:keepalive_timeout],
        body_timeout: options[:body_timeout],
        max_body_size: options[:max_body_size] || 0,
        max_connections: options[:max_connections] || 0,
        body_buffer: options[:body_buffer],
        lanes: options[:lanes],
        batch: options[:batch],
        tls: native_tls(options[:tls]),
        http2: options[:http2],
        shared_listener: options[:mode] == :cluster # forked workers accept on it (ProcessPool)
      }
    end

    # The listeners +bind+ names (raises ArgumentError for ssl:// where
    # this build has no TLS). With tls: settings, the ssl:// ones speak TLS,
    # or every TCP one when bind names no ssl:// URL.
    def self.listeners(options)
      list = Listeners.parse(options[:bind], port: options[:port], proxy_protocol: options[:proxy_protocol],
                                             tls: Listeners.tls_available?)
      if list.any?(&:tls)
        raise ArgumentError, "ssl:// listeners need the tls settings (tls cert: ..., key: ...)" unless options[:tls]
      elsif options[:tls]
        list = list.map { |l| l.kind == :tcp ? l.dup.tap { |t| t.tls = true } : l }
      end
      list
    end

    private_class_method :check, :check_pool, :positive_integer, :positive_number, :invalid, :check_tls, :text?
  end
end

# frozen_string_literal: true

require_relative "listeners"

module Kino
  # Server options: names, defaults and validation. Kino::Server.new, the
  # config file and the CLI all use these names (SPEC.md section 3).
  module Options
    MiB = 1024 * 1024

    DEFAULTS = {
      bind: "127.0.0.1",      # an address or URL, or an Array of them (Listeners)
      port: 0,
      proxy_protocol: false,  # every listener requires a PROXY protocol header
      workers: nil,           # nil: Kino.available_parallelism
      threads: nil,           # nil: 1 in :ractor mode, 3 in :threaded
      mode: :auto,
      io_threads: 1,
      queue_depth: 1024,
      queue_timeout: 5.0,
      request_timeout: nil,   # nil: off
      shutdown_timeout: 30.0,
      max_body_size: 50 * MiB, # nil or 0: unlimited
      header_timeout: 15.0,
      keepalive_timeout: 65.0,
      body_timeout: 30.0,
      max_connections: nil,   # nil: 80% of the open-file limit
      pidfile: nil,           # path of a pid file to claim at start
      on_error: nil,          # callable(exception, env), after the error is logged
      after_boot: nil,        # callable(), once the workers are up (main thread)
      on_worker_boot: nil,    # callable(worker), in each worker before it serves
      on_worker_exit: nil     # callable(worker, error), when a worker ends (main thread)
    }.freeze

    HOOKS = %i[on_error after_boot on_worker_boot on_worker_exit].freeze

    MODES = %i[auto ractor threaded].freeze

    # The given options over the defaults, validated and frozen. Raises
    # ArgumentError naming the first unknown or invalid option.
    def self.resolve(given)
      unknown = given.keys - DEFAULTS.keys
      raise ArgumentError, "unknown option #{unknown.first.inspect} (known: #{DEFAULTS.keys.join(', ')})" if unknown.any?

      options = DEFAULTS.merge(given)
      options.each { |name, value| check(name, value) }
      options[:mode] = options[:mode].to_sym
      options.freeze
    end

    def self.check(name, value)
      case name
      when :bind
        Listeners.validate(value)
      when :proxy_protocol
        invalid(name, value, "true or false") unless [true, false].include?(value)
      when :port
        invalid(name, value, "an Integer from 0 to 65535") unless value.is_a?(Integer) && value.between?(0, 65_535)
      when :workers, :threads, :max_connections
        positive_integer(name, value) unless value.nil?
      when :io_threads, :queue_depth
        positive_integer(name, value)
      when :mode
        invalid(name, value, "one of #{MODES.map(&:inspect).join(', ')}") unless value.respond_to?(:to_sym) && MODES.include?(value.to_sym)
      when :request_timeout
        positive_number(name, value) unless value.nil?
      when :shutdown_timeout
        invalid(name, value, "a number of seconds, 0 or more") unless value.is_a?(Numeric) && value >= 0
      when :queue_timeout, :header_timeout, :keepalive_timeout, :body_timeout
        positive_number(name, value)
      when *HOOKS
        invalid(name, value, "a callable (responds to call), or nil") unless value.nil? || value.respond_to?(:call)
      when :pidfile
        invalid(name, value, "a path (String), or nil") unless value.nil? || (value.is_a?(String) && !value.empty?)
      when :max_body_size
        invalid(name, value, "a number of bytes, or nil for no limit") unless value.nil? || (value.is_a?(Integer) && value >= 0)
      end
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
        max_connections: options[:max_connections] || 0
      }
    end

    # The listeners +bind+ names (raises ArgumentError for ssl:// where
    # this build has no TLS).
    def self.listeners(options)
      Listeners.parse(options[:bind], port: options[:port], proxy_protocol: options[:proxy_protocol],
                                      tls: Listeners.tls_available?)
    end

    private_class_method :check, :positive_integer, :positive_number, :invalid
  end
end

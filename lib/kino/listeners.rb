# frozen_string_literal: true

module Kino
  # The +bind+ option read as listeners. +bind+ is one address or URL, or an
  # Array of them:
  #
  #   "127.0.0.1", "::", "[::1]", "localhost"   TCP on the +port+ option
  #   "tcp://HOST:PORT" (PORT defaults to +port+)
  #   "unix:///PATH", "unix://@NAME" (Linux abstract socket)
  #   "ssl://HOST:PORT"                         TLS (the tls settings)
  #
  # A URL may end in "?proxy_protocol=1" (or 0) to require (or not) a PROXY
  # protocol header on that listener; the +proxy_protocol+ option is the
  # default for the others. Pure Ruby: the CLI validates with it.
  module Listeners
    # One listener. +fd+ is an inherited listening socket to adopt (systemd
    # socket activation, hot restart), nil to bind; +systemd+ says systemd
    # owns it (and its socket file).
    Listener = Struct.new(:kind, :host, :port, :path, :tls, :proxy_protocol, :fd, :systemd, keyword_init: true) do
      # What the engine takes (Kino::Native.server_new's :listen entries).
      # An adopted unix socket's path is given only when its file is ours
      # to remove at exit (a hot restart's, not systemd's).
      def native
        h = { tls: tls, proxy_protocol: proxy_protocol }
        h[:fd] = fd if fd
        return h.merge(host: host, port: port) unless kind == :unix

        fd && (systemd || path.start_with?("@")) ? h : h.merge(path: path)
      end

      # The canonical URL: how the listener is named in hot restarts and
      # matched against inherited sockets (port: the bound one when known).
      def url(bound_port = port)
        base = if kind == :unix then "unix://#{path}"
               else "#{tls ? 'ssl' : 'tcp'}://#{host.include?(':') ? "[#{host}]" : host}:#{bound_port}"
               end
        proxy_protocol ? "#{base}?proxy_protocol=1" : base
      end

      # The address people open: http://host:port, https://..., unix://path.
      def display(bound_port = port)
        return "unix://#{path}" if kind == :unix

        "#{tls ? 'https' : 'http'}://#{host.include?(':') ? "[#{host}]" : host}:#{bound_port}"
      end
    end

    URL = %r{\A(?<scheme>tcp|ssl|unix)://(?<rest>.*)\z}m
    HOST_PORT = /\A(?:\[(?<v6>[^\]]+)\]|(?<host>[^:\[\]]+))(?::(?<port>\d{1,5}))?\z/

    # The listeners +bind+ names, in order. +port+ is the port of bare
    # hosts (and URLs without one); +proxy_protocol+ the default for URLs
    # that do not say. Raises ArgumentError naming the bad entry.
    def self.parse(bind, port: 0, proxy_protocol: false, tls: false)
      list = bind.is_a?(Array) ? bind : [bind]
      raise ArgumentError, "invalid bind: [] (expected at least one address or URL)" if list.empty?

      list.map { |entry| parse_one(entry, port, proxy_protocol, tls) }
    end

    # Raises ArgumentError unless +bind+ is a valid bind value (ssl:// is
    # checked against the build when the server starts).
    def self.validate(bind)
      parse(bind, tls: true)
      nil
    end

    # Whether this build serves ssl:// (the native extension says).
    def self.tls_available?
      defined?(Kino::Native) && Kino::Native.respond_to?(:tls_available?) && Kino::Native.tls_available? ? true : false
    end

    def self.parse_one(entry, port, proxy_default, tls_available)
      unless entry.is_a?(String) && !entry.empty?
        raise ArgumentError, "invalid bind: #{entry.inspect} (expected an address or a URL, as a non-empty String)"
      end

      m = URL.match(entry)
      return bare(entry, port, proxy_default) unless m || entry.include?("://")
      raise ArgumentError, "invalid bind: #{entry.inspect} (expected tcp://, ssl:// or unix://)" unless m

      rest, query = m[:rest].split("?", 2)
      rest ||= ""
      proxy = query.nil? ? proxy_default : query_flag(entry, query)
      case m[:scheme]
      when "unix"
        raise ArgumentError, "invalid bind: #{entry.inspect} (expected unix:///path or unix://@name)" if rest.empty?

        Listener.new(kind: :unix, path: rest, tls: false, proxy_protocol: proxy)
      when "ssl"
        unless tls_available
          raise ArgumentError, "invalid bind: #{entry.inspect} (ssl:// needs TLS, which this build of Kino does not have)"
        end

        tcp(entry, rest, port, proxy, true)
      else tcp(entry, rest, port, proxy, false)
      end
    end

    # A host alone, as the bind option has always taken it ("::", "[::1]").
    def self.bare(entry, port, proxy)
      if entry.match?(/[\s\/?#]/)
        raise ArgumentError, "invalid bind: #{entry.inspect} (expected an address, a host name or a URL)"
      end

      Listener.new(kind: :tcp, host: entry.delete_prefix("[").delete_suffix("]"), port: port, tls: false,
                   proxy_protocol: proxy)
    end

    def self.tcp(entry, rest, port, proxy, tls)
      hp = HOST_PORT.match(rest)
      raise ArgumentError, "invalid bind: #{entry.inspect} (expected HOST, HOST:PORT or [IPv6]:PORT)" unless hp

      bound = hp[:port] ? Integer(hp[:port], 10) : port
      raise ArgumentError, "invalid bind: #{entry.inspect} (the port must be from 0 to 65535)" unless bound.between?(0, 65_535)

      Listener.new(kind: :tcp, host: hp[:v6] || hp[:host], port: bound, tls: tls, proxy_protocol: proxy)
    end

    # "proxy_protocol=1" (or true/0/false) is the one query a URL may carry.
    def self.query_flag(entry, query)
      key, value = query.split("=", 2)
      unless key == "proxy_protocol" && %w[1 0 true false].include?(value)
        raise ArgumentError, "invalid bind: #{entry.inspect} (the only query is ?proxy_protocol=1 or =0)"
      end

      %w[1 true].include?(value)
    end

    # The control plane's address (control_bind): "HOST:PORT", "[IPv6]:PORT",
    # "tcp://HOST:PORT" or "unix:///PATH" as {host:, port:} or {path:}.
    # Raises ArgumentError.
    def self.control(value)
      unless value.is_a?(String) && !value.empty?
        raise ArgumentError, "invalid control_bind: #{value.inspect} (expected HOST:PORT or unix:///PATH)"
      end

      return { path: value.delete_prefix("unix://") } if value.start_with?("unix://") && value.size > 7

      hp = HOST_PORT.match(value.delete_prefix("tcp://"))
      unless hp && hp[:port] && Integer(hp[:port], 10) <= 65_535
        raise ArgumentError, "invalid control_bind: #{value.inspect} (expected HOST:PORT or unix:///PATH)"
      end

      { host: hp[:v6] || hp[:host], port: Integer(hp[:port], 10) }
    end

    private_class_method :parse_one, :bare, :tcp, :query_flag
  end
end

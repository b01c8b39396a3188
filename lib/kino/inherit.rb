# frozen_string_literal: true

require "socket"

module Kino
  # Listening sockets this process was given instead of binding them:
  #
  # - by a hot restart (SIGUSR2): KINO_LISTEN_FDS="FD:URL,FD:URL" names
  #   each socket by the listener URL it served (Listener#url), and a
  #   listener with the same URL adopts it;
  # - by systemd socket activation: LISTEN_PID is this process and
  #   LISTEN_FDS sockets start at fd 3 (named by LISTEN_FDNAMES). They
  #   are then the listeners; a bind entry with the same address lends
  #   its settings (ssl://, ?proxy_protocol=) to the socket, and a TCP
  #   socket named "tls" (FileDescriptorName=tls) serves TLS whatever
  #   bind says.
  #
  # The variables are removed once read, so that processes this one
  # starts do not take the sockets for theirs.
  module Inherit
    RESTART_VAR = "KINO_LISTEN_FDS"
    SYSTEMD_START = 3 # SD_LISTEN_FDS_START
    # The LISTEN_FDNAMES name of systemd sockets that serve TLS.
    TLS_NAME = "tls"

    # +listeners+ (from bind) with the inherited sockets applied: fd set
    # where one is adopted. +proxy_protocol+ is the server's setting, for
    # systemd sockets no bind entry describes. Reads and clears the
    # environment.
    def self.apply(listeners, env = ENV, proxy_protocol: false)
      restart = env.delete(RESTART_VAR)
      systemd = systemd_fds(env)
      return from_systemd(listeners, systemd, proxy_protocol) if systemd
      return listeners unless restart

      from_restart(listeners, restart)
    end

    # "FD:URL,..." for the listeners of a server about to re-execute:
    # +pairs+ is [[Listener, fd]]. Sockets systemd gave are "FD!URL": they
    # stay the listeners, whatever bind says.
    def self.restart_value(pairs)
      pairs.map { |l, fd| "#{fd}#{l.systemd ? '!' : ':'}#{escape(l.url)}" }.join(",")
    end

    # The systemd sockets, [[fd, name]], when LISTEN_PID is this process.
    def self.systemd_fds(env)
      pid = env.delete("LISTEN_PID")
      count = env.delete("LISTEN_FDS")
      names = env.delete("LISTEN_FDNAMES").to_s.split(":")
      return nil unless pid.to_s == Process.pid.to_s && count.to_s.match?(/\A[1-9]\d*\z/)

      Array.new(Integer(count, 10)) { |i| [SYSTEMD_START + i, names[i]] }
    end

    def self.from_restart(listeners, value)
      inherited = value.split(",").filter_map do |entry|
        fd, mark, url = entry.partition(/[:!]/)
        [Integer(fd, 10), unescape(url), mark == "!"] if fd.match?(/\A\d+\z/) && !url.empty?
      end
      systemd = inherited.select(&:last)
      unless systemd.empty? # socket activation at first boot: still systemd's sockets
        return systemd.map { |fd, url, _| Listeners.parse(url, tls: true).first.tap { |l| l.fd = fd; l.systemd = true } }
      end

      adopted = listeners.map do |l|
        i = inherited.index { |_, url| url == l.url }
        i ? l.dup.tap { |a| a.fd = inherited.delete_at(i).first } : l
      end
      inherited.each { |fd, _| close_fd(fd) } # listeners the new configuration dropped
      adopted
    end

    # Every systemd socket becomes a listener, taking the settings of the
    # bind entry with the same address, else the server's; one named
    # TLS_NAME serves TLS (with the server's tls settings).
    def self.from_systemd(listeners, fds, proxy_default)
      fds.map do |fd, name|
        address = local_address(fd)
        raise Error, "systemd socket #{fd} (#{name || 'unnamed'}) is not a stream socket Kino can serve" unless address

        match = listeners.find { |l| same_address?(l, address) }
        proxy = match ? match.proxy_protocol : proxy_default
        tls = name == TLS_NAME || (match ? match.tls : false)
        if address.unix?
          raise Error, "systemd socket #{fd} is named #{TLS_NAME}, but TLS is served on TCP sockets only" if tls

          Listeners::Listener.new(kind: :unix, path: unix_path(address), tls: false,
                                  proxy_protocol: proxy, fd: fd, systemd: true)
        else
          if tls && !Listeners.tls_available?
            raise Error, "systemd socket #{fd} is named #{TLS_NAME}, but this build of Kino has no TLS"
          end

          Listeners::Listener.new(kind: :tcp, host: address.ip_address, port: address.ip_port,
                                  tls: tls, proxy_protocol: proxy, fd: fd, systemd: true)
        end
      end
    end

    # The Addrinfo fd is bound to, without taking the fd over; nil when it
    # is not a socket.
    def self.local_address(fd)
      socket = Socket.for_fd(fd)
      socket.autoclose = false
      socket.local_address
    rescue SystemCallError, ArgumentError
      nil
    end

    def self.unix_path(address)
      path = address.unix_path
      path.start_with?("\0") ? "@#{path[1..]}" : path
    end

    def self.same_address?(listener, address)
      if address.unix?
        listener.kind == :unix && listener.path == unix_path(address)
      else
        listener.kind == :tcp && listener.port == address.ip_port &&
          (wildcard?(listener.host) || resolves_to?(listener.host, address.ip_address))
      end
    end

    def self.wildcard?(host)
      ["0.0.0.0", "::", ""].include?(host)
    end

    def self.resolves_to?(host, ip)
      Addrinfo.getaddrinfo(host, nil, nil, :STREAM).any? { |a| a.ip_address == ip }
    rescue SocketError
      false
    end

    def self.close_fd(fd)
      IO.for_fd(fd).close
    rescue SystemCallError, ArgumentError
      nil
    end

    def self.escape(url)
      url.gsub("%", "%25").gsub(",", "%2C")
    end

    def self.unescape(url)
      url.gsub("%2C", ",").gsub("%25", "%")
    end

    private_class_method :systemd_fds, :from_restart, :from_systemd, :local_address, :unix_path,
                         :same_address?, :wildcard?, :resolves_to?, :close_fd, :escape, :unescape
  end
end

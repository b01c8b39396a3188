# frozen_string_literal: true

require "socket"

module Kino
  # The sd_notify protocol without libsystemd: one datagram per message to
  # the unix socket NOTIFY_SOCKET names ("@name" is an abstract socket).
  # Type=notify services say READY=1 once serving, STATUS= lines,
  # RELOADING=1 before a hot restart, STOPPING=1 when draining, and
  # WATCHDOG=1 every WATCHDOG_USEC / 2 when the unit has WatchdogSec=.
  # Every call is a no-op outside systemd (no NOTIFY_SOCKET).
  module Systemd
    # Send +state+ ("READY=1\nSTATUS=...") to the service manager. Returns
    # true when sent; a failure is reported once and otherwise ignored (the
    # server must not stop because its supervisor went away).
    def self.notify(state, env = ENV)
      path = env["NOTIFY_SOCKET"]
      return false if path.nil? || path.empty?

      address = path.start_with?("@") ? "\0#{path[1..]}" : path
      socket = Socket.new(:UNIX, :DGRAM)
      socket.send(state, 0, Socket.sockaddr_un(address))
      true
    rescue SystemCallError, ArgumentError => e
      Log.warn("main", "cannot notify systemd at #{path}: #{e.message}") unless @warned
      @warned = true
      false
    ensure
      socket&.close
    end

    # Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or nil when
    # the watchdog is off or meant for another process (WATCHDOG_PID).
    def self.watchdog_interval(env = ENV)
      usec = env["WATCHDOG_USEC"].to_s
      return nil unless usec.match?(/\A[1-9]\d*\z/)
      return nil if env["WATCHDOG_PID"] && env["WATCHDOG_PID"] != Process.pid.to_s

      Integer(usec, 10) / 2_000_000.0
    end

    # A thread that pings the watchdog until +running+ returns false;
    # nil when there is no watchdog.
    def self.start_watchdog(env = ENV, &running)
      interval = watchdog_interval(env) or return nil
      thread = Thread.new do
        while running.call
          notify("WATCHDOG=1", env)
          sleep interval
        end
      end
      thread.name = "kino-watchdog"
      thread
    end
  end
end

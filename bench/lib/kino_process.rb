# frozen_string_literal: true

require "rbconfig"
require "socket"
require_relative "endpoints" # BENCH_DIR

module Bench
  # A Kino in a child process, for the scripts that measure one thing
  # about it (idle_connections, slow_clients, soak, logging, starvation).
  module KinoProcess
    # A port nothing listened on a moment ago: never a leftover server's.
    def self.free_port
      TCPServer.open("127.0.0.1", 0) { |s| s.addr[1] }
    end

    # Run `ruby *args` (a server that listens on 127.0.0.1:+port+), its
    # output discarded unless +spawn_options+ say otherwise; returns its
    # pid once the port accepts connections. Raises when the server exits
    # first or does not listen within +timeout+ seconds.
    def self.spawn(port, *args, env: {}, timeout: 60, **spawn_options)
      pid = Process.spawn(env, RbConfig.ruby, *args, out: File::NULL, err: File::NULL, **spawn_options)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
      until listening?(port)
        raise "server #{args.first} exited before listening on #{port}" if Process.wait(pid, Process::WNOHANG)
        if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
          stop(pid, signal: "KILL")
          raise "server #{args.first} did not listen on #{port} within #{timeout} s"
        end

        sleep 0.1
      end
      pid
    end

    # Signal the server (TERM: a graceful stop) and reap it.
    def self.stop(pid, signal: "TERM")
      Process.kill(signal, pid)
      Process.wait(pid)
    rescue Errno::ESRCH, Errno::ECHILD
      nil
    end

    # Start bench/serve_kino.rb on a free port in +mode+ with +workers+
    # (threads: 1 in ractor mode, 3 in threaded); stopped with TERM at
    # exit. Returns [pid, port]. +env+: the server's extra environment
    # (KINO_BENCH_TLS_*: HTTPS).
    def self.start(mode, workers: 1, env: {}, **spawn_options)
      port = free_port
      pid = spawn(port, File.join(BENCH_DIR, "serve_kino.rb"), port.to_s, mode, workers.to_s,
                  mode == "ractor" ? "1" : "3", env: env, **spawn_options)
      at_exit { stop(pid) }
      [pid, port]
    end

    def self.listening?(port)
      TCPSocket.new("127.0.0.1", port).close
      true
    rescue Errno::ECONNREFUSED
      false
    end
  end
end

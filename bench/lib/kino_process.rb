# frozen_string_literal: true

require "rbconfig"
require "socket"
require_relative "endpoints" # BENCH_DIR

module Bench
  # A Kino on the bench app in a child process, for the scripts that
  # measure one thing about it (idle_connections, slow_clients, soak).
  module KinoProcess
    # Start bench/serve_kino.rb on a free port in +mode+ with +workers+
    # (threads: 1 in ractor mode, 3 in threaded); stopped with TERM at
    # exit. Returns [pid, port] once the port accepts connections. +env+:
    # the server's extra environment (KINO_BENCH_TLS_*: HTTPS).
    def self.start(mode, workers: 1, env: {}, **spawn_options)
      port = TCPServer.open("127.0.0.1", 0) { |s| s.addr[1] } # free: never a leftover server
      pid = Process.spawn(env, RbConfig.ruby, File.join(BENCH_DIR, "serve_kino.rb"), port.to_s, mode, workers.to_s,
                          mode == "ractor" ? "1" : "3", out: File::NULL, err: File::NULL, **spawn_options)
      at_exit do
        Process.kill("TERM", pid)
        Process.wait(pid)
      end
      sleep 0.1 until listening?(port)
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

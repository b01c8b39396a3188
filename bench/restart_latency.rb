#!/usr/bin/env ruby
# frozen_string_literal: true

# bench/restart_latency.rb [MODE...] -- the longest a request waits across a
# hot restart (SIGUSR2) under load. Starts `kino` on bench/config.ru (2
# workers), keeps CLIENTS threads each opening a new connection per
# GET /plaintext, sends USR2 after 2 s, and stops 2 s after the restarted
# program answers. Prints, per run, the requests, the failures (refused,
# reset, not 200), the longest request and the p99 outside the restart
# window; then the median of RUNS runs. Run it under flock /work/bench.lock
# on a shared machine. Modes: threaded (default), ractor, cluster (USR2:
# the worker processes drain, the master runs again) and phased (cluster
# with preload false, URG: the workers are replaced one at a time; "to
# new banner" is then to "phased restart done").
require "rbconfig"
require "socket"
require "tmpdir"

ROOT = File.expand_path("..", __dir__)
CLIENTS = Integer(ENV.fetch("CLIENTS", "4"))
RUNS = Integer(ENV.fetch("RUNS", "3"))
PRELOAD_FALSE = File.join(Dir.mktmpdir, "kino.rb").tap { |path| File.write(path, "preload false\n") }

def request(port)
  started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  socket = TCPSocket.new("127.0.0.1", port)
  socket.write("GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
  ok = socket.read.start_with?("HTTP/1.1 200")
  [ok, Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, started]
rescue SystemCallError
  [false, Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, started]
ensure
  socket&.close
end


def one_run(mode)
  port = TCPServer.open("127.0.0.1", 0) { |s| s.addr[1] }
  log = IO.pipe
  phased = mode == "phased"
  flags = phased ? ["-m", "cluster", "-C", PRELOAD_FALSE] : ["-m", mode]
  pid = Process.spawn(RbConfig.ruby, File.join(ROOT, "bin", "kino"), *flags, "-w", "2", "-p", port.to_s,
                      File.join(ROOT, "bench", "config.ru"), out: log[1], err: log[1])
  log[1].close
  output = +""
  output << log[0].readpartial(4096) until output.include?("Ctrl-C")
  results = Queue.new
  stop = false
  clients = Array.new(CLIENTS) { Thread.new { results << request(port) until stop } }
  sleep 2
  signalled = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  Process.kill(phased ? "URG" : "USR2", pid)
  if phased
    output << log[0].readpartial(4096) until output.include?("phased restart done")
  else
    output << log[0].readpartial(4096) until output.scan("Ctrl-C").size == 2
  end
  ready = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  sleep 2
  stop = true
  clients.each(&:join)
  Process.kill("TERM", pid)
  Process.wait(pid)
  all = []
  all << results.pop until results.empty?
  outside = all.reject { |_, _, at| at >= signalled - 0.05 && at <= ready }.map { |_, t, _| t }.sort
  { requests: all.size, failed: all.count { |ok, _, _| !ok }, longest: all.map { |_, t, _| t }.max,
    p99_outside: outside[(outside.size * 0.99).floor] || 0.0, restart: ready - signalled }
end

modes = ARGV.empty? ? %w[threaded] : ARGV
modes.each do |mode|
  runs = Array.new(RUNS) do |i|
    r = one_run(mode)
    printf("%-8s run %d: %d requests, %d failed, longest %.0f ms, p99 outside the restart %.1f ms, " \
           "signal to restarted %.0f ms\n", mode, i + 1, r[:requests], r[:failed], r[:longest] * 1000,
           r[:p99_outside] * 1000, r[:restart] * 1000)
    r
  end
  median = ->(key) { runs.map { |r| r[key] }.sort[runs.size / 2] }
  printf("%-8s median of %d: longest request %.0f ms, signal to restarted %.0f ms, failed %d\n", mode, RUNS,
         median.(:longest) * 1000, median.(:restart) * 1000, runs.sum { |r| r[:failed] })
end

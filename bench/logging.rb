#!/usr/bin/env ruby
# frozen_string_literal: true

# bench/logging.rb: what logging costs (doc/logging.md).
#
#   ruby bench/logging.rb [--duration S] [--repeat N] [--workers N] [--only access,loggers]
#
# 1. /plaintext with the access log to a file vs off, in :threaded and
#    :ractor mode: req/s of each, and the ratio (target: at most 5% off).
# 2. GET /log, which writes one line per request to a file: a Kino::Logger
#    (one shared Device) in :ractor and :threaded mode, one ::Logger shared
#    by every thread (:threaded), one ::Logger per worker ractor (:ractor).
#
# Each variant runs in turn within a repeat, repeats alternate, and the
# medians are printed; every run also counts the lines written, so a
# variant that silently dropped lines shows it. Take `flock
# /work/bench.lock` (or your machine's equivalent) around it on a shared
# machine: `make bench-logging` does.
require "etc"
require "optparse"
require "tmpdir"
require_relative "lib/kino_process"
require_relative "lib/wrk"

module BenchLogging
  DIR = __dir__

  # +base+: the variant the ratio column divides by.
  Variant = Struct.new(:name, :mode, :variant, :path, :base, keyword_init: true)

  ACCESS = [
    Variant.new(name: "threaded, access log off", mode: "threaded", variant: "off", path: "/plaintext",
                base: "threaded, access log off"),
    Variant.new(name: "threaded, access log to a file", mode: "threaded", variant: "access", path: "/plaintext",
                base: "threaded, access log off"),
    Variant.new(name: "ractor, access log off", mode: "ractor", variant: "off", path: "/plaintext",
                base: "ractor, access log off"),
    Variant.new(name: "ractor, access log to a file", mode: "ractor", variant: "access", path: "/plaintext",
                base: "ractor, access log off")
  ].freeze

  LOGGERS = [
    Variant.new(name: "threaded, one ::Logger shared", mode: "threaded", variant: "shared_logger", path: "/log",
                base: "threaded, one ::Logger shared"),
    Variant.new(name: "threaded, Kino::Logger", mode: "threaded", variant: "kino_logger", path: "/log",
                base: "threaded, one ::Logger shared"),
    Variant.new(name: "ractor, one ::Logger per ractor", mode: "ractor", variant: "ractor_logger", path: "/log",
                base: "threaded, one ::Logger shared"),
    Variant.new(name: "ractor, Kino::Logger (one Device)", mode: "ractor", variant: "kino_logger", path: "/log",
                base: "threaded, one ::Logger shared")
  ].freeze

  def self.options(argv)
    o = { duration: 10, repeat: 5, workers: Etc.nprocessors, connections: 64, only: %w[access loggers] }
    OptionParser.new do |opts|
      opts.on("--duration S", Integer) { |v| o[:duration] = v }
      opts.on("--repeat N", Integer) { |v| o[:repeat] = v }
      opts.on("--workers N", Integer) { |v| o[:workers] = v }
      opts.on("--connections N", Integer) { |v| o[:connections] = v }
      opts.on("--only LIST", Array, "access, loggers or both (default)") { |v| o[:only] = v }
    end.parse!(argv)
    o
  end

  # Start the server for +v+, run wrk once, stop it; [req/s, lines written].
  def self.measure(v, o, dir)
    log = File.join(dir, "#{v.variant}-#{v.mode}.log")
    File.delete(log) if File.exist?(log)
    port = Bench::KinoProcess.free_port
    threads = v.mode == "ractor" ? 1 : 3
    pid = Bench::KinoProcess.spawn(port, File.join(DIR, "serve_logging.rb"), port.to_s, v.mode, o[:workers].to_s,
                                   threads.to_s, v.variant, log)
    url = "http://127.0.0.1:#{port}#{v.path}"
    Bench::Wrk.capture(["wrk", "-t2", "-c#{o[:connections]}", "-d2s", url]) # warm-up
    output, = Bench::Wrk.capture(["wrk", "-t2", "-c#{o[:connections]}", "-d#{o[:duration]}s", url])
    result = Bench::Wrk.parse(output)
    Bench::KinoProcess.stop(pid) # TERM: the access log is flushed before the lines are counted
    pid = nil
    [result.rps, File.exist?(log) ? File.foreach(log).count : 0, result.requests, result.errors]
  ensure
    Bench::KinoProcess.stop(pid, signal: "KILL") if pid
  end

  def self.median(list)
    s = list.sort
    s.size.odd? ? s[s.size / 2] : (s[s.size / 2 - 1] + s[s.size / 2]) / 2.0
  end

  def self.run(argv)
    o = options(argv)
    puts "bench/logging.rb: #{o[:workers]} workers, wrk -t2 -c#{o[:connections]} -d#{o[:duration]}s, " \
         "#{o[:repeat]} repeats, medians (#{RUBY_DESCRIPTION})"
    Dir.mktmpdir do |dir|
      parts = { "access" => ["access log cost on /plaintext", ACCESS],
                "loggers" => ["one log line per request on /log", LOGGERS] }
      parts.values_at(*o[:only]).each do |title, variants|
        rps = Hash.new { |h, k| h[k] = [] }
        o[:repeat].times do |r|
          variants.each do |v|
            value, lines, requests, errors = measure(v, o, dir)
            rps[v.name] << value
            warn format("  repeat %d  %-36s %9.0f req/s  %8d lines written (%d requests in the timed run, %d errors)",
                        r + 1, v.name, value, lines, requests, errors)
          end
        end
        puts "\n#{title} (ratio: to the first line of its mode's pair, or to the shared ::Logger):"
        variants.each do |v|
          m = median(rps[v.name])
          puts format("  %-36s %9.0f req/s  %.3f×  (runs: %s)", v.name, m, m / median(rps[v.base]),
                      rps[v.name].map(&:round).join(" "))
        end
      end
    end
  end
end

BenchLogging.run(ARGV) if $PROGRAM_NAME == __FILE__

# frozen_string_literal: true

# Starts Kino for bench/logging.rb:
#   ruby bench/serve_logging.rb PORT MODE WORKERS THREADS VARIANT LOG_PATH
# VARIANT: off (no logging), access (log_requests LOG_PATH, /plaintext),
# and for GET /log, which writes one line per request:
#   kino_logger    one Kino::Logger::Device; a Kino::Logger over it per ractor (or one, threaded)
#   shared_logger  one ::Logger shared by every thread (threaded mode only)
#   ractor_logger  one ::Logger per worker ractor, each appending to LOG_PATH (ractor mode only)
require "logger"
require_relative "../lib/kino"
require_relative "app"

port, mode, workers, threads, variant, log_path = ARGV
options = { port: Integer(port), mode: mode.to_sym, workers: Integer(workers), threads: Integer(threads) }
options[:log_requests] = log_path if variant == "access"

LINE = "GET /log 200 request served"

# Each variant's app: /log writes one info line, anything else is the bench app.
module LogApps
  def self.make(variant, log_path)
    case variant
    when "kino_logger"
      per_ractor(:kino, Kino::Logger::Device.new(log_path))
    when "shared_logger"
      logger = Logger.new(log_path)
      ->(env) { env["PATH_INFO"] == "/log" ? (logger.info(LINE) && BenchApp.ok("logged")) : BenchApp.call(env) }
    when "ractor_logger"
      per_ractor(:ruby, log_path.dup.freeze)
    else BenchApp
    end
  end

  # A shareable app that makes its logger once per ractor (in threaded
  # mode: one for the process): a Kino::Logger over the shared Device
  # (:kino), or a ::Logger opening the path (:ruby).
  def self.per_ractor(kind, target)
    Ractor.make_shareable(lambda do |env|
      return BenchApp.call(env) unless env["PATH_INFO"] == "/log"

      logger = (Ractor.current[:bench_logger] ||= kind == :kino ? Kino::Logger.new(target) : Logger.new(target))
      logger.info(LINE)
      BenchApp.ok("logged")
    end)
  end
end

# ::Logger (logger 1.5, Ruby 3.1) writes a header into a new file through a
# constant that is not shareable: made in a worker ractor on a new file it
# raises Ractor::IsolationError. The file exists before anyone logs.
File.open(log_path, "a") {} if log_path
Kino::Server.run(LogApps.make(variant, log_path), **options)

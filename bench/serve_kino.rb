# frozen_string_literal: true

# Starts Kino on the benchmark app for bench/run:
#   ruby bench/serve_kino.rb PORT MODE WORKERS THREADS [IO_THREADS] [DISPATCH]
# DISPATCH: comma-separated "lanes" and "batch=N" (lanes true, batch N).
# With KINO_BENCH_TLS_CERT and KINO_BENCH_TLS_KEY set it serves HTTPS.
require_relative "../lib/kino"
require_relative "app"

port, mode, workers, threads, io_threads, dispatch = ARGV
options = { port: Integer(port), mode: mode.to_sym, workers: Integer(workers), threads: Integer(threads) }
options[:io_threads] = Integer(io_threads) if io_threads
dispatch.to_s.split(",").each do |item|
  case item
  when "lanes" then options[:lanes] = true
  when /\Abatch=(\d+)\z/ then options[:batch] = Integer(Regexp.last_match(1))
  else abort "serve_kino.rb: unknown dispatch option #{item.inspect} (lanes, batch=N)"
  end
end
if ENV["KINO_BENCH_TLS_CERT"]
  options[:tls] = { cert: ENV.fetch("KINO_BENCH_TLS_CERT"), key: ENV.fetch("KINO_BENCH_TLS_KEY") }
end
Kino::Server.run(BenchApp, **options)

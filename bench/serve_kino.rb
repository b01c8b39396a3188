# frozen_string_literal: true

# Starts Kino on the benchmark app for bench/run:
#   ruby bench/serve_kino.rb PORT MODE WORKERS THREADS [IO_THREADS]
require_relative "../lib/kino"
require_relative "app"

port, mode, workers, threads, io_threads = ARGV
options = { port: Integer(port), mode: mode.to_sym, workers: Integer(workers), threads: Integer(threads) }
options[:io_threads] = Integer(io_threads) if io_threads
Kino::Server.run(BenchApp, **options)

# frozen_string_literal: true

# Starts Agoo on the benchmark app for bench/run:
#   ruby bench/lib/agoo_server.rb PORT WORKERS THREADS
# Rack::Handler::Agoo always uses 0 Ruby threads, so this calls
# Agoo::Server directly to get WORKERS processes x THREADS Ruby threads.
require "agoo"
require "fileutils"
require_relative "../app"

port, workers, threads = ARGV.map { |arg| Integer(arg) }
Agoo::Log.configure(dir: "", console: true, classic: true, colorize: false,
                    states: { INFO: true, DEBUG: false, connect: false, request: false,
                              response: false, eval: false, push: false })
root = File.expand_path("../vendor/agoo-root", __dir__) # empty: no static files
FileUtils.mkdir_p(root)
Agoo::Server.init(port, root, thread_count: threads, worker_count: workers,
                  bind: "http://127.0.0.1:#{port}")
Agoo::Server.handle(nil, "**", BenchApp)
$stdout.puts "agoo #{Agoo::VERSION}: #{workers} workers x #{threads} threads, listening: http://127.0.0.1:#{port}"
$stdout.flush
Agoo::Server.start
# Agoo's own TERM handler only stops its C loop; with Ruby threads the main
# thread must exit itself (Agoo's exit hook then shuts the server down).
%w[INT TERM].each { |signal| Signal.trap(signal) { exit } }
sleep # with Ruby threads, start returns: keep the main thread alive

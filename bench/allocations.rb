# frozen_string_literal: true

# Objects Ruby allocates per request inside Kino, by mode and endpoint:
# GC.stat(:total_allocated_objects) (all ractors) across a wrk run, divided
# by the requests served in it. The app's own allocations are included.
#
#   ruby bench/allocations.rb [threaded|ractor ...] [-- endpoints]
require "etc"
require_relative "../lib/kino"
require_relative "app"

modes, endpoints = ARGV.join(" ").split("--").map(&:split)
modes = %w[threaded ractor] if modes.nil? || modes.empty?
endpoints = %w[plaintext 10k cpu] if endpoints.nil? || endpoints.empty?
Warning[:experimental] = false

# /upload is POSTed a 64 KiB body (bench/upload.lua), as bench/run does.
def wrk(port, path, seconds)
  script = path == "upload" ? ["-s", File.join(__dir__, "upload.lua")] : []
  system("wrk", "-t1", "-c8", "-d#{seconds}s", *script, "http://127.0.0.1:#{port}/#{path}", out: File::NULL) or
    abort "wrk failed"
end

puts "| mode | endpoint | requests | objects/request |"
puts "|---|---|---|---|"
modes.each do |mode|
  server = Kino::Server.new(BenchApp, mode: mode.to_sym, workers: 1, threads: 1).start
  endpoints.each do |path|
    wrk(server.port, path, 1) # warm-up
    GC.start
    served = server.stats[:served]
    before = GC.stat(:total_allocated_objects)
    wrk(server.port, path, 3)
    allocated = GC.stat(:total_allocated_objects) - before
    requests = server.stats[:served] - served
    puts format("| %s | /%s | %d | %.2f |", mode, path, requests, allocated.fdiv(requests))
  end
  server.shutdown
end

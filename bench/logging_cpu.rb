#!/usr/bin/env ruby
# frozen_string_literal: true

# bench/logging_cpu.rb: CPU time per request of a threaded Kino on
# /plaintext with the access log off and on, in alternation: the ticks of
# every thread of the server (/proc/PID/task/*/stat, utime + stime) over a
# 6 s wrk run, divided by the requests served. Less sensitive to a noisy
# machine than req/s (doc/logging.md). Linux only.
#
#   ruby bench/logging_cpu.rb [ROUNDS]
require "tmpdir"
require_relative "lib/kino_process"

def threads_cpu(pid)
  Dir["/proc/#{pid}/task/*"].sum do |task|
    stat = File.read("#{task}/stat")
    fields = stat[(stat.rindex(")") + 2)..].split
    fields[11].to_i + fields[12].to_i
  rescue Errno::ENOENT
    0
  end
end

hz = 100.0 # USER_HZ: the unit of /proc ticks on Linux
Dir.mktmpdir do |dir|
  (Integer(ARGV[0] || 2) * 2).times do |i|
    variant = i.even? ? "off" : "access"
    port = Bench::KinoProcess.free_port
    pid = Bench::KinoProcess.spawn(port, File.join(__dir__, "serve_logging.rb"), port.to_s, "threaded", "2", "3",
                                   variant, File.join(dir, "access.log"))
    system("wrk -t2 -c64 -d2s http://127.0.0.1:#{port}/plaintext > /dev/null")
    before = threads_cpu(pid)
    out = `wrk -t2 -c64 -d6s http://127.0.0.1:#{port}/plaintext`
    ticks = threads_cpu(pid) - before
    requests = out[/(\d+) requests in/, 1].to_i
    printf("access log %-6s %8d requests  %6.2f us CPU per request\n", variant, requests, ticks / hz * 1e6 / requests)
    Bench::KinoProcess.stop(pid)
  end
end

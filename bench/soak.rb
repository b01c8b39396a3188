# frozen_string_literal: true

# A soak test: Kino on the bench app under steady load at about a share
# of its peak, sampling the process's RSS and open file descriptors. The
# peak is measured first (wrk, 64 connections, 10 s); the soak then runs
# wrk with a per-request delay (bench/delay.lua) on enough connections to
# offer RATE of that peak (calibrated by a 5 s run), for SECONDS, and
# prints a sample every STEP seconds (the last one just before the load
# ends) plus the change from the first sample under load to the last.
#
#   ruby bench/soak.rb [SECONDS=600] [RATE=0.7] [threaded|ractor] [ENDPOINT=plaintext] [STEP=30]
require "socket"
require_relative "lib/process_tree"
require_relative "lib/kino_process"

seconds = Integer(ARGV[0] || 600)
rate = Float(ARGV[1] || 0.7)
mode = ARGV[2] || "threaded"
endpoint = ARGV[3] || "plaintext"
step = Integer(ARGV[4] || 30)
delay_ms = 10 # bench/delay.lua: each connection waits this long between requests
server, port = Bench::KinoProcess.start(mode, workers: 2)

def wrk(args)
  out = IO.popen(["wrk", *args], &:read)
  raise "wrk failed: #{out}" unless $?.success?

  [out[/Requests\/sec:\s+([\d.]+)/, 1].to_f, out[/(\d+) requests in/, 1].to_i,
   out[/Socket errors:.*/].to_s, out[/Non-2xx or 3xx responses: (\d+)/, 1].to_i]
end

def sample(pid)
  memory = Bench::ProcessTree.memory(pid)
  [memory.rss_mib, Dir.children("/proc/#{pid}/fd").size]
end

url = "http://127.0.0.1:#{port}/#{endpoint}"
wrk(["-t2", "-c64", "-d3s", url]) # warm-up
peak, = wrk(["-t2", "-c64", "-d10s", url])
# connections x (1 request per delay_ms) offers the target rate if requests
# took no time; one 5 s calibration run corrects for the time they take
connections = [(peak * rate * delay_ms / 1000.0).round, 2].max
offered, = wrk(["-t2", "-c#{connections}", "-d5s", "-s", File.join(__dir__, "delay.lua"), url])
connections = [(connections * peak * rate / offered).round, 2].max if offered.positive?
puts format("mode %s, /%s: peak %.0f req/s; soak at %.0f%% = %d connections x 1 request per %d ms, %d s",
            mode, endpoint, peak, rate * 100, connections, delay_ms, seconds)

samples = [[0, *sample(server)]]
load = Thread.new do
  wrk(["-t2", "-c#{connections}", "-d#{seconds}s", "-s", File.join(__dir__, "delay.lua"), url])
end
started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
times = (step...seconds).step(step).to_a << seconds - 2
times.each do |t|
  sleep [t - (Process.clock_gettime(Process::CLOCK_MONOTONIC) - started), 0].max
  samples << [t, *sample(server)]
end
achieved, requests, socket_errors, non2xx = load.value

puts "| t (s) | RSS MiB | open fds |"
puts "|---|---|---|"
samples.each { |t, rss, fds| puts format("| %d | %.1f | %d |", t, rss, fds) }
first = samples[1] || samples[0]
last = samples[-1]
puts format("offered load achieved: %.0f req/s (%.0f%% of peak), %d requests, %s, non-2xx %d",
            achieved, 100 * achieved / peak, requests, socket_errors.empty? ? "no socket errors" : socket_errors,
            non2xx)
puts format("from t=%d s to t=%d s: RSS %+.1f MiB, open fds %+d", first[0], last[0], last[1] - first[1],
            last[2] - first[2])

# frozen_string_literal: true

# Quarantine and the elastic pool under load (doc/pool.md). Kino serves
# /work, a handler that waits 5 ms (Kino.sleep: as one waiting on a
# database would), with 1 thread per worker; wrk -t1 -c8 asks for /work.
#
# Quarantine, 2 workers:
#   none         nothing is stuck
#   stuck        one /stuck request holds a worker (it sleeps for an
#                hour), quarantine off: the other worker serves alone
#   quarantine   the same with quarantine_timeout 1: a new worker takes
#                the stuck one's place (wrk starts 2 s after the stuck
#                request)
# Elastic pool:
#   workers-1    1 worker
#   elastic-1-4  1 worker, max_workers 4 (grows while requests queue)
#   workers-4    4 workers
#
#   ruby bench/pool.rb [SECONDS=8] [REPEATS=3] [threaded|ractor|both]
#
# Prints a Markdown table: req/s and wrk's p99 per mode and case, medians
# of REPEATS runs. Take the machine's bench lock around it:
# flock /work/bench.lock ruby bench/pool.rb
require "rbconfig"
require "socket"
require "timeout"
require_relative "lib/wrk"
require_relative "lib/kino_process"

SECONDS = Integer(ARGV[0] || 8)
REPEATS = Integer(ARGV[1] || 3)
MODES = ARGV[2].nil? || ARGV[2] == "both" ? %w[threaded ractor] : [ARGV[2]]
ROOT = File.expand_path("..", __dir__)

# Each case: the server's options and whether a request is stuck.
CASES = {
  "none" => [{ workers: 2 }, false],
  "stuck" => [{ workers: 2 }, true],
  "quarantine" => [{ workers: 2, quarantine_timeout: 1 }, true],
  "workers-1" => [{ workers: 1 }, false],
  "elastic-1-4" => [{ workers: 1, max_workers: 4 }, false],
  "workers-4" => [{ workers: 4 }, false]
}.freeze

SERVER = <<~RUBY
  require "kino"
  module App
    def self.call(env)
      Kino.sleep(env["PATH_INFO"] == "/stuck" ? 3600 : 0.005)
      [200, { "content-type" => "text/plain" }, ["ok"]]
    end
  end
  mode, port, *pairs = ARGV # NAME=NUMBER
  options = pairs.to_h { |pair| name, value = pair.split("="); [name.to_sym, Integer(value)] }
  Kino::Server.run(App, mode: mode.to_sym, port: Integer(port), threads: 1, shutdown_timeout: 0.1, **options)
RUBY

def start_server(mode, options)
  port = TCPServer.open("127.0.0.1", 0) { |s| s.addr[1] }
  args = [mode, port.to_s, *options.map { |name, value| "#{name}=#{value}" }]
  pid = Process.spawn(RbConfig.ruby, "-I#{ROOT}/lib", "-e", SERVER, *args, out: File::NULL, err: File::NULL)
  Timeout.timeout(20) { sleep 0.1 until Bench::KinoProcess.listening?(port) }
  [pid, port]
end

# One wrk run of +kase+ in +mode+: Bench::Wrk::Result.
def measure(mode, kase)
  options, stuck_one = CASES.fetch(kase)
  pid, port = start_server(mode, options)
  if stuck_one
    stuck = TCPSocket.new("127.0.0.1", port)
    stuck.write("GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
    sleep 2 # past quarantine_timeout and the watcher's next look
  end
  output = IO.popen(["wrk", "-t1", "-c8", "-d#{SECONDS}s", "--latency", "http://127.0.0.1:#{port}/work"], &:read)
  Bench::Wrk.parse(output)
ensure
  stuck&.close
  if pid
    Process.kill("KILL", pid)
    Process.wait(pid)
  end
end

def median(values)
  values.compact.sort[values.compact.size / 2]
end

system(File.join(__dir__, "need"), "wrk") or exit 1
puts "Kino #{`#{RbConfig.ruby} -I#{ROOT}/lib -e 'require "kino/version"; print Kino::VERSION'`}, " \
     "#{RUBY_DESCRIPTION}; #{SECONDS} s x #{REPEATS}, wrk -t1 -c8 on /work (5 ms), 1 thread per worker"
puts "", "| mode | case | req/s | p99 (ms) |", "| --- | --- | ---: | ---: |"
MODES.each do |mode|
  CASES.each_key do |kase|
    runs = Array.new(REPEATS) { measure(mode, kase) }
    puts format("| %s | %s | %.0f | %.1f |", mode, kase, median(runs.map(&:rps)), median(runs.map(&:p99_ms)) || 0)
  end
end

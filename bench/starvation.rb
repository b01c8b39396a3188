# frozen_string_literal: true

# Attacks that once stopped Kino from answering anyone, each run against
# the default configuration of a mode while a normal client asks for
# /ping every 0.25 s. Prints, per attack, the normal client's median and
# slowest answer and how many probes got no answer within 5 s.
#
#   ruby bench/starvation.rb [SECONDS=10] [threaded|ractor|both]
#
# The attacks (doc/security.md, "Starvation"):
#   slow-bodies    8 connections send a 100,000-byte body one byte every 2 s
#   chunk-sizes    chunked bodies announcing 64 MiB and 2^64-16 bytes, then
#                  silence (the figure is how long their answer took)
#   slow-readers   8 clients with a 4 KiB receive buffer ask for 8 MiB and
#                  never read
#   crash-trickle  a request that kills its worker (NotImplementedError)
#                  every 0.2 s
#   idle-at-cap    max_connections 100 held by 100 idle keep-alive clients
require "socket"
require "timeout"
require_relative "lib/kino_process"

SECONDS = Float(ARGV[0] || 10)
MODES = ARGV[1].nil? || ARGV[1] == "both" ? %w[threaded ractor] : [ARGV[1]]
ROOT = File.expand_path("..", __dir__)

# The server: a shareable app with the endpoints the attacks need.
SERVER = <<~RUBY
  require "kino"
  module App
    BIG = ("x" * (8 << 20)).freeze
    def self.call(env)
      case env["PATH_INFO"]
      when "/echo" then [200, {}, [env["rack.input"].read.bytesize.to_s]]
      when "/big" then [200, {}, [BIG]]
      when "/crash" then raise NotImplementedError, "a worker-killing request"
      else [200, {}, ["pong"]]
      end
    end
  end
  mode, port, cap = ARGV
  options = { mode: mode.to_sym, port: Integer(port) }
  options[:max_connections] = Integer(cap) if cap
  Kino::Server.run(App, **options)
RUBY

def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

def start_server(mode, cap = nil)
  port = Bench::KinoProcess.free_port
  [Bench::KinoProcess.spawn(port, "-I#{ROOT}/lib", "-e", SERVER, mode, port.to_s, *cap&.to_s, timeout: 20), port]
end

def stop_server(pid)
  Bench::KinoProcess.stop(pid, signal: "KILL")
end

def connect(port)
  TCPSocket.new("127.0.0.1", port)
end

# One GET /ping on a new connection: seconds, or nil after 5 s.
def ping(port)
  t0 = now
  Timeout.timeout(5) do
    s = connect(port)
    s.write("GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    s.read.end_with?("pong") ? now - t0 : nil
  ensure
    s&.close
  end
rescue Timeout::Error, SystemCallError
  nil
end

# Probes every 0.25 s for SECONDS while the attack (a block run in a
# thread) goes on; returns "p50 / max / unanswered".
def probe_during(port)
  stop = false
  attack = Thread.new { yield -> { stop } }
  sleep 0.5
  times = []
  lost = 0
  deadline = now + SECONDS
  while now < deadline
    t = ping(port)
    t ? times << t : lost += 1
    sleep 0.25
  end
  stop = true
  attack.join
  times.sort!
  format("p50 %7.1f ms  max %7.1f ms  unanswered %d of %d", times[times.size / 2].to_f * 1000,
         times.last.to_f * 1000, lost, times.size + lost)
end

def slow_bodies(port)
  probe_during(port) do |stopped|
    socks = Array.new(8) { connect(port).tap { |s| s.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n") } }
    until stopped.call
      socks.each { |s| s.write("a") rescue nil } # rubocop:disable Style/RescueModifier
      sleep 2
    end
    socks.each(&:close)
  end
end

def chunk_sizes(port)
  %w[4000000 fffffffffffffff0].map do |size|
    s = connect(port)
    t0 = now
    s.write("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n#{size}\r\n")
    status = Timeout.timeout(40) { s.readpartial(100)[/\AHTTP\/1.1 (\d+)/, 1] }
    s.close
    format("%s: %s after %.1f ms", size, status, (now - t0) * 1000)
  end.join(", ")
end

def slow_readers(port)
  probe_during(port) do |stopped|
    socks = Array.new(8) do
      s = Socket.new(:INET, :STREAM)
      s.setsockopt(Socket::SOL_SOCKET, Socket::SO_RCVBUF, 4096)
      s.connect(Socket.sockaddr_in(port, "127.0.0.1"))
      s.write("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
      s
    end
    sleep 0.1 until stopped.call
    socks.each(&:close)
  end
end

def crash_trickle(port)
  probe_during(port) do |stopped|
    until stopped.call
      begin
        s = connect(port)
        s.write("GET /crash HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        s.close
      rescue SystemCallError
        nil
      end
      sleep 0.2
    end
  end
end

def idle_at_cap(port)
  probe_during(port) do |stopped|
    socks = Array.new(100) do
      s = connect(port)
      s.write("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
      s.readpartial(4096)
      s
    rescue SystemCallError
      nil
    end
    sleep 0.1 until stopped.call
    socks.compact.each(&:close)
  end
end

MODES.each do |mode|
  puts "mode #{mode} (default workers and threads), probes every 0.25 s for #{SECONDS} s:"
  { "slow-bodies" => nil, "chunk-sizes" => nil, "slow-readers" => nil, "crash-trickle" => nil,
    "idle-at-cap" => 100 }.each do |name, cap|
    pid, port = start_server(mode, cap)
    result = send(name.tr("-", "_"), port)
    puts format("  %-14s %s", name, result)
  ensure
    stop_server(pid) if pid
  end
end

# frozen_string_literal: true

# Slow clients against normal ones: start Kino on the bench app, time N
# sequential keep-alive requests from a normal client, then open SLOW
# connections that each dribble one byte at a time (one byte per
# connection every PAUSE seconds, round robin) and time the same N
# requests again while they are all still open. ATTACK is what they
# dribble: a request head (head), or, after a whole head, the body of a
# POST /upload with Content-Length: 100000 (body: under body_buffer, so
# the I/O thread gathers it). Either way the dribblers hold only their
# I/O-thread buffers; no worker is taken until a request is complete.
#
#   ruby bench/slow_clients.rb [SLOW=200] [N=2000] [PAUSE=0.05] [threaded|ractor] [head|body]
require "socket"
require_relative "lib/kino_process"

slow = Integer(ARGV[0] || 200)
count = Integer(ARGV[1] || 2000)
pause = Float(ARGV[2] || 0.05)
mode = ARGV[3] || "threaded"
attack = ARGV[4] || "head"
abort "bench/slow_clients.rb: ATTACK is head or body, not #{attack}" unless %w[head body].include?(attack)
_, port = Bench::KinoProcess.start(mode)

def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

def connect(port)
  TCPSocket.new("127.0.0.1", port).tap { |s| s.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1) }
end

# Latencies (ms, sorted) of +count+ sequential requests on one connection.
def timed_requests(port, count)
  socket = connect(port)
  request = "GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"
  Array.new(count) do
    t0 = now
    socket.write(request)
    response = +""
    response << socket.readpartial(4096) until response.end_with?("Hello, World!")
    (now - t0) * 1000
  end.sort
ensure
  socket&.close
end

def summary(latencies)
  pick = ->(q) { latencies[(q * (latencies.size - 1)).round] }
  format("p50 %.3f ms, p99 %.3f ms, max %.3f ms", pick.(0.5), pick.(0.99), latencies.last)
end

timed_requests(port, 200) # warm-up
quiet = timed_requests(port, count)

# what each dribbler sends whole first, and what it then dribbles (never
# all of it: they stay slow)
whole, dribble = if attack == "head"
                   ["", "GET /slow HTTP/1.1\r\nHost: x\r\nX-Padding: #{'p' * 400}\r\n\r\n"]
                 else
                   ["POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", "b" * 100_000]
                 end
dribblers = Array.new(slow) { connect(port).tap { |s| s.write(whole) } }
sent = 0
stop = false
writer = Thread.new do
  until stop || sent >= dribble.bytesize - 1
    dribblers.each { |s| s.write(dribble[sent]) }
    sent += 1
    sleep pause
  end
end
sleep 1 # every dribbler has started
busy = timed_requests(port, count)
open = dribblers.count { |s| !s.wait_readable(0) } # none answered or closed yet
stop = true
writer.join

puts "mode #{mode}: #{count} sequential keep-alive GET /plaintext requests"
puts "  alone:                          #{summary(quiet)}"
puts "  with #{slow} connections dribbling a #{attack}: #{summary(busy)}"
puts "  dribblers still open and unanswered afterwards: #{open} of #{slow} (#{sent} #{attack} bytes each so far)"
dribblers.each(&:close)

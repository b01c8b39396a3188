# frozen_string_literal: true

# Instructions per request, a figure free of timing noise: each server
# runs under valgrind --tool=callgrind (all threads counted) and serves
# N1, then (in a second run) N2 sequential keep-alive requests; the
# difference of the totals divided by N2 - N1 cancels start-up and
# shutdown. One worker thread each, so the numbers compare like for like.
# For Kino it also prints the instructions spent inside kino.so (the
# engine and the binding, summed from callgrind_annotate): the part this
# repository's C controls, steadier than the whole, which includes Ruby.
#
#   ruby bench/callgrind.rb [endpoint=plaintext] [N1=500] [N2=2500] [kino|puma|both]
require "socket"
require "rbconfig"
require "tmpdir"
require_relative "lib/endpoints" # Bench::BENCH_DIR
require_relative "lib/gems"

endpoint = ARGV[0] || "plaintext"
n1 = Integer(ARGV[1] || 500)
n2 = Integer(ARGV[2] || 2500)
which = ARGV[3] || "both"
BENCH = __dir__

def free_port
  TCPServer.open("127.0.0.1", 0) { |s| s.addr[1] }
end

# Sequential keep-alive requests, reconnecting whenever the server closes
# the connection (Puma does so periodically with one thread).
def drive(port, path, count)
  served = 0
  served += exchange(port, path, count - served) while served < count
end

# Requests on one connection until +count+ or the server closes it;
# returns how many were answered.
def exchange(port, path, count)
  request = if path == "upload" # a 64 KiB body, as bench/upload.lua sends
              "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n" \
                "Content-Length: 65536\r\n\r\n#{'x' * 65_536}"
            else
              "GET /#{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            end
  socket = TCPSocket.new("127.0.0.1", port)
  done = 0
  while done < count
    socket.write(request)
    buffer = +""
    buffer << socket.readpartial(65_536) until (head = buffer.index("\r\n\r\n")) &&
                                              buffer.bytesize >= head + 4 + buffer[/content-length: *(\d+)/i, 1].to_i
    done += 1
    break if buffer =~ /^connection: *close/i
  end
  done
rescue EOFError, Errno::ECONNRESET, Errno::EPIPE
  done
ensure
  socket&.close
end

# Total instructions (Ir) of a server run that served +count+ requests.
def instructions(command, env, port, path, count)
  Dir.mktmpdir do |dir|
    out = File.join(dir, "callgrind.out")
    pid = Process.spawn(env, "valgrind", "--tool=callgrind", "--callgrind-out-file=#{out}",
                        "--dump-instr=no", "--trace-children=no", *command,
                        out: File::NULL, err: File::NULL, pgroup: true)
    sleep 1
    sleep 0.5 until begin
      TCPSocket.new("127.0.0.1", port).close
      true
    rescue Errno::ECONNREFUSED
      false
    end
    drive(port, path, count)
    Process.kill("TERM", pid)
    Process.wait(pid)
    [File.read(out)[/^summary: (\d+)/, 1].to_i, in_object(out, "kino.so")]
  end
end

# Instructions of a callgrind output spent in functions of the shared
# object +name+ (self cost, so nothing is counted twice).
def in_object(out, name)
  IO.popen(["callgrind_annotate", "--inclusive=no", "--threshold=100", out], err: File::NULL, &:read)
    .each_line.sum { |line| line =~ /^\s*([\d,]+) .*\[\S*#{Regexp.escape(name)}\]$/ ? $1.delete(",").to_i : 0 }
end

def kino(port)
  [[RbConfig.ruby, File.join(BENCH, "serve_kino.rb"), port.to_s, "threaded", "1", "1"], {}]
end

def puma(port)
  env = Bench::Gems.env
  [[RbConfig.ruby, Bench::Gems.bin("puma"), "-w", "0", "-t", "1:1", "-b", "tcp://127.0.0.1:#{port}",
    "-e", "production", "-q", File.join(BENCH, "config.ru")], env]
end

error = Bench::Gems.ensure_installed([%w[rack >=3], %w[puma >=6]], Dir.tmpdir)
abort "bench: #{error}" if error
puts "| server | instructions per /#{endpoint} request | in kino.so | (#{n1} and #{n2} requests, callgrind) |"
puts "|---|---|---|---|"
servers = { "kino (threaded, 1 thread)" => method(:kino), "puma (single, 1 thread)" => method(:puma) }
servers.select { |name, _| which == "both" || name.start_with?(which) }.each do |name, server|
  totals = [n1, n2].map do |count|
    port = free_port
    command, env = server.call(port)
    instructions(command, env, port, endpoint, count)
  end
  per = (totals[1][0] - totals[0][0]).fdiv(n2 - n1)
  engine = (totals[1][1] - totals[0][1]).fdiv(n2 - n1)
  puts format("| %s | %.0f | %s | |", name, per, name.start_with?("kino") ? format("%.0f", engine) : "")
end

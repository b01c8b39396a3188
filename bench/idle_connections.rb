# frozen_string_literal: true

# Memory of idle keep-alive connections: start Kino on the bench app, open
# N connections that each make one request and then stay idle, and report
# the server's RSS/PSS before and after, per connection; then time one
# more request made while all of them are open.
#
#   ruby bench/idle_connections.rb [N=10000] [threaded|ractor] [tls]
#
# With "tls" the connections are HTTPS (a certificate made in a temp dir):
# the figure then includes what OpenSSL keeps per idle connection.
require "openssl"
require "socket"
require "tmpdir"
require_relative "lib/process_tree"
require_relative "lib/kino_process"
require_relative "lib/tls_cert"

count = Integer(ARGV[0] || 10_000)
mode = ARGV[1] || "threaded"
tls = ARGV[2] == "tls"
want = count + 256
server_want = (want / 0.8).ceil # max_connections defaults to 80% of the server's limit
soft, hard = Process.getrlimit(:NOFILE)
abort "need #{server_want} file descriptors; the hard limit is #{hard}" if hard < server_want
Process.setrlimit(:NOFILE, want, hard) if soft < want

env = {}
if tls
  dir = Dir.mktmpdir("kino-idle-tls")
  at_exit { FileUtils.remove_entry(dir) }
  cert, key = Bench::TLSCert.make(dir)
  env = { "KINO_BENCH_TLS_CERT" => cert, "KINO_BENCH_TLS_KEY" => key }
  CONTEXT = OpenSSL::SSL::SSLContext.new.tap { |c| c.verify_mode = OpenSSL::SSL::VERIFY_NONE }
end
server, port = Bench::KinoProcess.start(mode, env: env, rlimit_nofile: server_want)

def connect(port)
  tcp = TCPSocket.new("127.0.0.1", port)
  return tcp unless defined?(CONTEXT)

  OpenSSL::SSL::SSLSocket.new(tcp, CONTEXT).tap { |s| s.sync_close = true }.tap(&:connect)
end

def request(socket)
  socket.write("GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
  response = +""
  response << socket.readpartial(4096) until response.end_with?("Hello, World!")
end

probe = connect(port)
request(probe)
sleep 0.5
before = Bench::ProcessTree.memory(server)
sockets = Array.new(count) do |i|
  connect(port).tap { |s| request(s) }
rescue EOFError
  abort "connection #{i} was closed by the server"
end
sleep 1
after = Bench::ProcessTree.memory(server)
t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
request(probe)
latency = (Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000

puts "idle keep-alive #{tls ? 'HTTPS' : 'HTTP'} connections: #{count} (mode #{mode})"
puts format("server RSS %.1f -> %.1f MiB, PSS %.1f -> %.1f MiB", before.rss_mib, after.rss_mib,
            before.pss_mib, after.pss_mib)
puts format("per idle connection: %.2f KiB RSS, %.2f KiB PSS", (after.rss_mib - before.rss_mib) * 1024 / count,
            (after.pss_mib - before.pss_mib) * 1024 / count)
puts format("one more request with all of them open: %.2f ms", latency)
sockets.each(&:close)

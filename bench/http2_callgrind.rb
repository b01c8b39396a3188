#!/usr/bin/env ruby
# frozen_string_literal: true

# bench/http2_callgrind.rb: instructions per request of an HTTP/2 stream
# against an HTTP/1.1 request on the same Kino, a figure free of timing
# noise (the machine may be busy). Kino (threaded, 1 worker, 1 thread,
# bench/app.rb) runs under valgrind --tool=callgrind, all threads
# counted, and h2load sends it N1, then in a second run N2, GET
# /plaintext on one connection with M in flight (streams, or pipelined
# requests with --h1); the difference of the two runs divided by N2 - N1
# cancels start-up and shutdown. It prints the total per request, the
# part in kino.so (the engine and the binding), in libc and in libruby,
# and kino.so's costliest functions (self cost) for the HTTP/2 run.
#
#   ruby bench/http2_callgrind.rb [--n1 500] [--n2 3000] [--streams 10] [--top 15]
require "optparse"
require "socket"
require "tmpdir"
require "rbconfig"

module Bench
  module HTTP2Callgrind
    OBJECTS = { "kino.so" => "kino.so", "libc" => "libc.so", "libruby" => "libruby" }.freeze

    def self.options(argv)
      o = { n1: 500, n2: 3000, streams: 10, top: 15 }
      OptionParser.new do |opts|
        opts.banner = "Usage: bench/http2_callgrind.rb [options]   (see the top of this file)"
        opts.on("--n1 N", Integer, "requests of the first run (default 500)") { |v| o[:n1] = v }
        opts.on("--n2 N", Integer, "requests of the second run (default 3000)") { |v| o[:n2] = v }
        opts.on("--streams M", Integer, "in flight on the connection (default 10)") { |v| o[:streams] = v }
        opts.on("--top K", Integer, "kino.so functions listed (default 15)") { |v| o[:top] = v }
      end.parse!(argv)
      o
    end

    def self.free_port = TCPServer.open("127.0.0.1", 0) { |s| s.addr[1] }

    # Self instructions per function of one Kino run that served count
    # requests over h2c (or HTTP/1.1 with h1).
    def self.profile(count, h1:, streams:)
      Dir.mktmpdir do |dir|
        out = File.join(dir, "callgrind.out")
        port = free_port
        pid = Process.spawn("valgrind", "--tool=callgrind", "--callgrind-out-file=#{out}", "--dump-instr=no",
                            RbConfig.ruby, File.join(__dir__, "serve_kino.rb"), port.to_s, "threaded", "1", "1",
                            out: File::NULL, err: File::NULL, pgroup: true)
        wait_listening(port)
        args = ["h2load", "-n", count.to_s, "-c", "1", "-m", streams.to_s, "-t", "1"]
        args << "--h1" if h1
        report = IO.popen([*args, "http://127.0.0.1:#{port}/plaintext"], err: %i[child out], &:read)
        abort "bench: h2load did not get #{count} 2xx:\n#{report}" unless report.include?("status codes: #{count} 2xx")
        Process.kill("TERM", pid)
        Process.wait(pid)
        functions(out)
      end
    end

    def self.wait_listening(port)
      120.times do
        TCPSocket.new("127.0.0.1", port).close
        return
      rescue Errno::ECONNREFUSED
        sleep 0.5
      end
      abort "bench: Kino under callgrind did not start"
    end

    def self.functions(out)
      costs = Hash.new(0)
      listing = false
      IO.popen(["callgrind_annotate", "--inclusive=no", "--threshold=100", "--tree=none", "--auto=no", out],
               err: File::NULL).each_line do |line|
        listing ||= line.include?("file:function")
        next unless listing
        break if line.strip.empty? && !costs.empty?

        m = line.match(/^\s*([\d,]+) +\([^)]*\)\s+(.*)$/) or next
        costs[m[2].strip.sub(/\.(isra|constprop|part)\.\d+/, "")] += m[1].delete(",").to_i
      end
      costs
    end

    def self.per_request(first, second, requests)
      second.to_h { |name, ir| [name, (ir - first[name]).fdiv(requests)] }
    end

    def self.row(label, per)
      parts = OBJECTS.map { |_, tag| per.sum { |name, ir| name.include?(tag) ? ir : 0 } }
      format("| %s | %.0f | %.0f | %.0f | %.0f |", label, per.values.sum, *parts)
    end

    def self.run(argv)
      o = options(argv)
      per = { h2: nil, h1: nil }
      per.each_key do |proto|
        runs = [o[:n1], o[:n2]].map { |n| profile(n, h1: proto == :h1, streams: o[:streams]) }
        per[proto] = per_request(*runs, o[:n2] - o[:n1])
      end
      puts "instructions per GET /plaintext, one connection, #{o[:streams]} in flight " \
           "(runs of #{o[:n1]} and #{o[:n2]} requests)"
      puts "| protocol | total | kino.so | libc | libruby |"
      puts "| --- | ---: | ---: | ---: | ---: |"
      puts row("h2c", per[:h2])
      puts row("h1", per[:h1])
      puts format("h2 / h1 instructions: %.2f", per[:h2].values.sum / per[:h1].values.sum)
      puts "\nkino.so, h2c, self instructions per request:"
      per[:h2].select { |name, _| name.include?("kino.so") }.max_by(o[:top]) { |_, ir| ir }.each do |name, ir|
        puts format("%8.0f  %s", ir, name.sub(/ \[.*\]\z/, "").sub(%r{\A.*/}, ""))
      end
    end
  end
end

Bench::HTTP2Callgrind.run(ARGV) if $PROGRAM_NAME == __FILE__

#!/usr/bin/env ruby
# frozen_string_literal: true

# bench/http2.rb: HTTP/2 against HTTP/1.1 on the same Kino, the same
# endpoint and the same load, with h2load (Debian: nghttp2-client), which
# speaks both (--h1). One Kino (threaded, workers = CPUs, 3 threads each)
# serves GET /plaintext of bench/app.rb over cleartext and, on a second
# port, over TLS (a P-256 certificate made in a temp dir). Each repeat
# measures, in turn:
#
#   h2c       h2load -c C -m M http://...      (M streams per connection)
#   h1        h2load --h1 -c C -m M http://... (M requests pipelined)
#   h2c m1    the same with one request at a time per connection
#   h1 m1
#   h2 tls / h1 tls, the same two over HTTPS (ALPN h2 / http/1.1)
#   nginx h2c / nginx h2 tls, nginx (worker_processes = CPUs, the same
#             certificate) answering /plaintext itself, M streams
#
# and reports the median requests/s of each, the h2/h1 ratios and Kino's
# ratio to nginx over h2c and over TLS (--no-nginx leaves nginx out). On a
# shared machine take the benchmark lock around it:
#
#   make bench-h2                         (installs nghttp2-client when missing)
#   flock /work/bench.lock ruby bench/http2.rb [--duration S] [--repeat N]
#                                              [--connections C] [--streams M]
#                                              [--no-nginx]
require "etc"
require "open3"
require "optparse"
require "tmpdir"
require_relative "lib/kino_process"
require_relative "lib/targets"
require_relative "lib/tls_cert"

module Bench
  module HTTP2Bench
    def self.options(argv)
      o = { duration: 5, repeat: 3, connections: 16, streams: 10, nginx: true }
      OptionParser.new do |opts|
        opts.banner = "Usage: bench/http2.rb [options]   (HTTP/2 against HTTP/1.1; see the top of this file)"
        opts.on("--duration S", Integer, "seconds per measurement (default 5)") { |v| o[:duration] = v }
        opts.on("--repeat N", Integer, "repeats; medians are reported (default 3)") { |v| o[:repeat] = v }
        opts.on("--connections C", Integer, "h2load clients (default 16)") { |v| o[:connections] = v }
        opts.on("--streams M", Integer, "streams (h2) or pipelined requests (h1) per client (default 10)") do |v|
          o[:streams] = v
        end
        opts.on("--[no-]nginx", "measure nginx too (default on)") { |v| o[:nginx] = v }
      end.parse!(argv)
      o
    end

    # requests/s from one h2load run. A timed run (-D) counts the requests
    # still in flight when it stops as failed: at most one per stream
    # slot. More than that is a real failure, and the figure means
    # nothing then.
    def self.h2load(url, h1:, connections:, streams:, duration:)
      args = ["h2load", "-D", duration.to_s, "-c", connections.to_s, "-m", streams.to_s, "-t", "1"]
      args << "--h1" if h1
      out, status = Open3.capture2e(*args, url)
      abort "bench: #{args.join(' ')} #{url} failed:\n#{out}" unless status.success?
      failed = out[/(\d+) failed/, 1].to_i
      abort "bench: #{failed} requests failed:\n#{out}" if failed > connections * streams
      Float(out[/finished in [\d.]+m?s, ([\d.]+) req\/s/, 1])
    end

    def self.median(values) = values.sort[values.size / 2]

    def self.run(o)
      abort "bench: h2load is missing (Debian: nghttp2-client; make bench-h2 installs it)" unless
        system("command -v h2load >/dev/null 2>&1")
      workers = Etc.nprocessors
      Dir.mktmpdir do |dir|
        cert, key = TLSCert.make(dir)
        _, plain = KinoProcess.start("threaded", workers: workers)
        _, tls = KinoProcess.start("threaded", workers: workers,
                                   env: { "KINO_BENCH_TLS_CERT" => cert, "KINO_BENCH_TLS_KEY" => key })
        rows = {
          "h2c" => ["http://127.0.0.1:#{plain}/plaintext", false, o[:streams]],
          "h1" => ["http://127.0.0.1:#{plain}/plaintext", true, o[:streams]],
          "h2c m1" => ["http://127.0.0.1:#{plain}/plaintext", false, 1],
          "h1 m1" => ["http://127.0.0.1:#{plain}/plaintext", true, 1],
          "h2 tls" => ["https://127.0.0.1:#{tls}/plaintext", false, o[:streams]],
          "h1 tls" => ["https://127.0.0.1:#{tls}/plaintext", true, o[:streams]],
        }
        if o[:nginx]
          h2c, h2 = nginx(dir, cert, key, workers)
          rows["nginx h2c"] = ["http://127.0.0.1:#{h2c}/plaintext", false, o[:streams]]
          rows["nginx h2 tls"] = ["https://127.0.0.1:#{h2}/plaintext", false, o[:streams]]
        end
        results = Hash.new { |h, k| h[k] = [] }
        o[:repeat].times do |i|
          rows.each do |name, (url, h1, streams)|
            rps = h2load(url, h1: h1, connections: o[:connections], streams: streams, duration: o[:duration])
            results[name] << rps
            puts format("repeat %d  %-12s %10.0f req/s", i + 1, name, rps)
          end
        end
        report(results, o, workers)
      end
    end

    # nginx 1.22 (Debian 12) with HTTP/2 on two ports: cleartext by prior
    # knowledge and TLS with ALPN (the `http2` listen parameter), answering
    # /plaintext itself. Returns [h2c_port, tls_port] once both answer.
    def self.nginx(dir, cert, key, workers)
      h2c, tls = Array.new(2) { TCPServer.open("127.0.0.1", 0) { |s| s.addr[1] } }
      conf = File.join(dir, "nginx.conf")
      File.write(conf, Targets.nginx_conf(dir, workers, <<~SERVER, http: "http2_max_requests 10000000;"))
        listen 127.0.0.1:#{h2c} http2;
        listen 127.0.0.1:#{tls} ssl http2;
        ssl_certificate #{cert};
        ssl_certificate_key #{key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location = /plaintext { default_type text/plain; return 200 "Hello, World!"; }
        location / { return 404; }
      SERVER
      pid = Process.spawn(Targets.nginx_path, "-p", dir, "-c", conf, "-e", File.join(dir, "error.log"),
                          pgroup: true, in: File::NULL, %i[out err] => [File.join(dir, "nginx.out"), "w"])
      at_exit do
        Process.kill("TERM", pid)
        Process.wait(pid)
      rescue SystemCallError
        nil
      end
      deadline = Time.now + 15
      until [h2c, tls].all? { |port| KinoProcess.listening?(port) }
        abort "bench: nginx did not start (#{dir}/error.log)" if Time.now > deadline || Process.waitpid(pid, Process::WNOHANG)
        sleep 0.1
      end
      [h2c, tls]
    end

    def self.report(results, o, workers)
      med = results.transform_values { |v| median(v) }
      puts
      puts "Kino threaded, #{workers} workers x 3 threads; h2load -c #{o[:connections]} -m #{o[:streams]} " \
           "-D #{o[:duration]}, median of #{o[:repeat]}"
      med.each { |name, rps| puts format("  %-12s %10.0f req/s", name, rps) }
      puts format("  h2c / h1          %.2f", med["h2c"] / med["h1"])
      puts format("  h2c / h1 (m1)     %.2f", med["h2c m1"] / med["h1 m1"])
      puts format("  h2 / h1 over TLS  %.2f", med["h2 tls"] / med["h1 tls"])
      return unless med["nginx h2c"]

      puts format("  Kino / nginx, h2c      %.2f", med["h2c"] / med["nginx h2c"])
      puts format("  Kino / nginx, h2 TLS   %.2f", med["h2 tls"] / med["nginx h2 tls"])
    end
  end
end

Bench::HTTP2Bench.run(Bench::HTTP2Bench.options(ARGV)) if $PROGRAM_NAME == __FILE__

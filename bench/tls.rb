#!/usr/bin/env ruby
# frozen_string_literal: true

# bench/tls.rb: HTTPS throughput of Kino against nginx and Puma, all with
# the same certificate (P-256, made in a temp dir), under wrk:
#
#   plaintext    GET /plaintext over keep-alive connections
#   10k          GET /10k (10,240 bytes)
#   pipelined    16 GET /plaintext per write
#   handshakes   GET /plaintext with "Connection: close": every request a
#                new connection and a full TLS handshake (wrk resumes no
#                session), so requests/s = handshakes/s
#
# Each repeat runs every server in turn (drift hits them alike); the
# report is the median per server and endpoint, and the ratios of Kino to
# the others. Servers: kino (threaded, workers = CPUs, 3 threads), nginx
# (worker_processes = CPUs, ssl_protocols TLSv1.2 TLSv1.3, static answers:
# a ceiling, not a Ruby server), puma (cluster, -w CPUs -t 3:3,
# ssl://...?cert=&key=).
#
#   make bench-tls                 (installs wrk, nginx and puma when missing)
#   ruby bench/tls.rb [--duration S] [--repeat N] [--servers kino,nginx,puma]
require "etc"
require "fileutils"
require "net/http"
require "openssl"
require "optparse"
require "socket"
require "tmpdir"
require_relative "lib/endpoints"
require_relative "lib/targets"
require_relative "lib/wrk"
require_relative "lib/gems"
require_relative "lib/tls_cert"

module Bench
  module TLSBench
    ENDPOINTS = %w[plaintext 10k pipelined handshakes].freeze
    SERVERS = %w[kino nginx puma].freeze

    def self.options(argv)
      o = { duration: 10, repeat: 3, connections: 64, workers: Etc.nprocessors, io_threads: 1, servers: SERVERS,
            endpoints: ENDPOINTS }
      OptionParser.new do |opts|
        opts.banner = "Usage: bench/tls.rb [options]   (HTTPS: Kino, nginx, Puma; see the top of this file)"
        opts.on("--duration S", Integer, "seconds per measurement (default 10)") { |v| o[:duration] = v }
        opts.on("--repeat N", Integer, "repeats; medians are reported (default 3)") { |v| o[:repeat] = v }
        opts.on("--connections N", Integer, "wrk connections (default 64)") { |v| o[:connections] = v }
        opts.on("--servers LIST", Array, "of #{SERVERS.join(',')}") { |v| o[:servers] = v }
        opts.on("--io-threads N", Integer, "Kino's I/O threads (default 1)") { |v| o[:io_threads] = v }
        opts.on("--endpoints LIST", Array, "of #{ENDPOINTS.join(',')}") { |v| o[:endpoints] = v & ENDPOINTS }
      end.parse!(argv)
      o
    end

    # [argv, env] that start +name+ on +port+ with +cert+/+key+.
    def self.command(name, port, dir, cert, key, workers, io_threads)
      case name
      when "kino"
        [[RbConfig.ruby, File.join(BENCH_DIR, "serve_kino.rb"), port, "threaded", workers, 3, io_threads].map(&:to_s),
         { "KINO_BENCH_TLS_CERT" => cert, "KINO_BENCH_TLS_KEY" => key }]
      when "puma"
        [[RbConfig.ruby, Gems.bin("puma"), "-w", workers.to_s, "-t", "3:3", "-b",
          "ssl://127.0.0.1:#{port}?cert=#{cert}&key=#{key}&verify_mode=none", "-e", "production", "-q", RACKUP],
         Gems.env]
      when "nginx"
        conf = File.join(dir, "nginx-#{port}.conf")
        File.write(conf, nginx_config(dir, port, cert, key, workers))
        [[Targets.nginx_path, "-p", dir, "-c", conf, "-e", File.join(dir, "error.log")], {}]
      end
    end

    # nginx's HTTPS server block, in Targets.nginx_conf's frame (the same
    # one bench/run's plain nginx uses).
    def self.nginx_config(dir, port, cert, key, workers)
      Targets.nginx_conf(dir, workers, <<~SERVER)
        listen 127.0.0.1:#{port} ssl;
        ssl_certificate #{cert};
        ssl_certificate_key #{key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location = /plaintext { default_type text/plain; return 200 "Hello, World!"; }
        location = /10k { default_type text/plain; alias #{dir}/10k.txt; }
        location / { return 404; }
      SERVER
    end

    def self.free_port
      TCPServer.open("127.0.0.1", 0) { |s| s.addr[1] }
    end

    # Start, and wait until GET /plaintext over HTTPS answers the right body.
    def self.start(name, dir, cert, key, o, log)
      port = free_port
      argv, env = command(name, port, dir, cert, key, o[:workers], o[:io_threads])
      pid = Process.spawn(env, *argv, chdir: ROOT, pgroup: true, in: File::NULL, %i[out err] => [log, "a"])
      deadline = Time.now + 30
      loop do
        raise "#{name} did not start (see #{log})" if Time.now > deadline || Process.waitpid(pid, Process::WNOHANG)

        body = get(port, "/plaintext") rescue nil # rubocop:disable Style/RescueModifier
        return [pid, port] if body == "Hello, World!"

        sleep 0.2
      end
    end

    def self.get(port, path)
      http = Net::HTTP.new("127.0.0.1", port)
      http.use_ssl = true
      http.verify_mode = OpenSSL::SSL::VERIFY_NONE
      http.open_timeout = http.read_timeout = 2
      http.get(path).body
    end

    def self.stop(pid)
      Process.kill("TERM", -pid)
      Timeout.timeout(10) { Process.wait(pid) }
    rescue Timeout::Error
      Process.kill("KILL", -pid)
      Process.wait(pid)
    rescue Errno::ESRCH, Errno::ECHILD
      nil
    end

    def self.wrk(port, endpoint, o)
      url = "https://127.0.0.1:#{port}"
      if endpoint == "handshakes"
        argv = ["wrk", "-t#{Wrk::THREADS}", "-c#{o[:connections]}", "-d#{o[:duration]}s", "--latency",
                "-H", "Connection: close", "#{url}/plaintext"]
        output, = Wrk.capture(argv)
        return Wrk.parse(output)
      end
      e = Bench.endpoint(endpoint)
      Wrk.run("#{url}#{e.path}", e, duration: o[:duration], connections: o[:connections]).first
    end

    def self.median(values)
      v = values.compact.sort
      v.empty? ? nil : v[v.size / 2]
    end

    def self.run(argv)
      o = options(argv)
      abort "bench/tls.rb: wrk not found (make bench-tls installs it)" unless Wrk.version
      dir = Dir.mktmpdir("kino-bench-tls-")
      at_exit { FileUtils.remove_entry(dir, true) }
      File.chmod(0o755, dir)
      File.write(File.join(dir, "10k.txt"), Bench.endpoint("10k").body)
      cert, key = TLSCert.make(dir)
      log_dir = File.join(BENCH_DIR, "results", "logs")
      FileUtils.mkdir_p(log_dir)
      if o[:servers].include?("puma") && (error = Gems.ensure_installed(Targets::GEMS["puma-cluster"], log_dir))
        warn "bench/tls.rb: puma unavailable: #{error}"
        o[:servers] -= ["puma"]
      end
      rps = Hash.new { |h, k| h[k] = Hash.new { |hh, kk| hh[kk] = [] } }
      1.upto(o[:repeat]) do |r|
        o[:servers].each do |name|
          pid, port = start(name, dir, cert, key, o, File.join(log_dir, "tls-#{name}.log"))
          begin
            o[:endpoints].each do |endpoint|
              result = wrk(port, endpoint, o)
              errors = result.error || (result.errors.positive? && endpoint != "handshakes" ? "#{result.errors} errors" : nil)
              rps[name][endpoint] << (result.error ? nil : result.rps)
              $stderr.puts format("repeat %d %-6s %-10s %10.0f req/s%s", r, name, endpoint, result.rps || 0,
                                  errors ? " (#{errors})" : "")
            end
          ensure
            stop(pid)
          end
        end
      end
      report(rps, o)
    end

    def self.report(rps, o)
      puts "HTTPS, #{o[:workers]} workers (Kino: #{o[:io_threads]} I/O thread#{'s' if o[:io_threads] > 1}), wrk -t#{Wrk::THREADS} -c#{o[:connections]} -d#{o[:duration]}s, " \
           "median of #{o[:repeat]} (#{Wrk.version})"
      puts format("%-12s %s", "endpoint", o[:servers].map { |s| format("%12s", s) }.join)
      o[:endpoints].each do |endpoint|
        row = o[:servers].map { |s| median(rps[s][endpoint]) }
        puts format("%-12s %s", endpoint, row.map { |v| v ? format("%12.0f", v) : format("%12s", "-") }.join)
      end
      (o[:servers] - ["kino"]).each do |other|
        next unless o[:servers].include?("kino")

        ratios = o[:endpoints].map do |endpoint|
          k = median(rps["kino"][endpoint])
          x = median(rps[other][endpoint])
          "#{endpoint} #{k && x ? format('%.2f', k / x) : '-'}"
        end
        puts "kino / #{other}: #{ratios.join(', ')}"
      end
    end
  end
end

Bench::TLSBench.run(ARGV) if $PROGRAM_NAME == __FILE__

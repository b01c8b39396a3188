# frozen_string_literal: true

# What GC.compact before the fork buys in mode :cluster: the PSS of the
# whole process tree (master + workers) with and without it, after the
# workers have served traffic, medians over repeats.
#
#   ruby bench/cluster_memory.rb [--workers 4] [--repeat 3] [--requests 4000]
#
# The app loads Sinatra and Roda (when installed: make gems) and builds a
# large table of Ruby objects at boot, as a real app's code and data do,
# then allocates on every request so the workers' GC runs and touches the
# heap pages they share with the master. Three variants of
# Kino::ProcessPool.fork_gc: fork as loaded (:none), GC.start first (:gc,
# the default), or GC.start + GC.compact (:compact).
require "optparse"
require "rbconfig"
require "socket"
require "timeout"
require_relative "lib/process_tree"

ROOT = File.expand_path("..", __dir__)

# Child mode: serve the app in cluster mode, compacting or not.
if ARGV.first == "--serve"
  $LOAD_PATH.unshift(File.join(ROOT, "lib"))
  ENV["GEM_PATH"] = [File.join(ROOT, ".gems"), *Gem.path].join(":")
  Gem.paths = ENV
  require "kino"
  %w[sinatra/base roda].each do |lib|
    require lib
  rescue LoadError
    nil
  end
  workers, variant = Integer(ARGV[1]), ARGV[2]
  # A boot-time table: 200,000 small objects, as loaded code and config leave behind.
  table = Array.new(200_000) { |i| ["key#{i}", { id: i, name: "name #{i}", tags: %W[a#{i % 7} b#{i % 11}] }] }.to_h
  garbage = Array.new(300_000) { |i| "transient #{i}" } # freed before the fork: holes compaction closes
  garbage = nil # rubocop:disable Lint/UselessAssignment
  app = lambda do |env|
    rows = Array.new(200) { |i| table["key#{(env['QUERY_STRING'].to_i + i) % table.size}"][:name] + " " }
    [200, { "content-type" => "text/plain" }, [rows.join.bytesize.to_s]]
  end
  Kino::ProcessPool.fork_gc = variant.to_sym
  Kino::Server.run(app, mode: :cluster, workers: workers, threads: 2, port: 0)
  exit
end

options = { workers: 4, repeat: 3, requests: 4000 }
OptionParser.new do |o|
  o.on("--workers N", Integer) { |v| options[:workers] = v }
  o.on("--repeat N", Integer) { |v| options[:repeat] = v }
  o.on("--requests N", Integer) { |v| options[:requests] = v }
end.parse!

# Start the server, send traffic, measure the tree's PSS, stop it.
def measure(variant, options)
  out_r, out_w = IO.pipe
  pid = Process.spawn(RbConfig.ruby, __FILE__, "--serve", options[:workers].to_s, variant, out: out_w, err: out_w)
  out_w.close
  banner = +""
  Timeout.timeout(120) { banner << out_r.readpartial(4096) until banner.include?("Ctrl-C") }
  port = Integer(banner[%r{listening: http://[^ \n]*:(\d+)}, 1])
  sleep 1 # every worker booted
  threads = Array.new(8) do |t|
    Thread.new do
      (options[:requests] / 8).times do |i|
        socket = TCPSocket.new("127.0.0.1", port)
        socket.write("GET /?#{t * 100_000 + i * 37} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        socket.read
        socket.close
      end
    end
  end
  threads.each(&:join)
  sleep 0.5
  memory = Bench::ProcessTree.memory(pid)
  Process.kill("TERM", pid)
  Process.wait(pid)
  memory
ensure
  out_r&.close
end

def median(values) = values.sort[values.size / 2]

VARIANTS = {
  "none" => "fork as loaded",
  "gc" => "GC.start before the fork (Kino's default)",
  "compact" => "GC.start + GC.compact"
}.freeze
results = VARIANTS.keys.to_h { |v| [v, []] }
options[:repeat].times do
  VARIANTS.each_key { |variant| results[variant] << measure(variant, options) }
end
puts "Kino :cluster, #{options[:workers]} workers × 2 threads, #{options[:requests]} requests, " \
     "median of #{options[:repeat]} (#{RUBY_DESCRIPTION})"
results.each do |variant, list|
  pss = median(list.map(&:pss_mib))
  rss = median(list.map(&:rss_mib))
  puts format("  %-40s PSS %7.1f MiB  RSS %7.1f MiB  (%d processes)  PSS runs: %s",
              VARIANTS[variant], pss, rss, list.first.processes, list.map { |m| m.pss_mib.round(1) }.join(", "))
end

# frozen_string_literal: true

require "etc"
require "fileutils"
require "rbconfig"
require "tmpdir"
require_relative "endpoints"
require_relative "gems"

module Bench
  ROOT = File.expand_path("..", BENCH_DIR)
  RACKUP = File.join(BENCH_DIR, "config.ru")

  # A named server: the command that starts it on +port+, and its
  # environment. Optional: +chdir+ (default: the repository root),
  # +ready_path+ (default: /plaintext) and +ready_timeout+ (seconds,
  # default ServerProcess::READY_TIMEOUT), for apps other than bench/app.rb.
  Target = Struct.new(:name, :port, :argv, :env, :chdir, :ready_path, :ready_timeout, keyword_init: true)

  # How many workers and threads a server gets, and its port.
  Settings = Struct.new(:port, :workers, :threads, :io_threads, keyword_init: true)

  # The servers bench/run knows. Each builder returns a Target.
  module Targets
    DESCRIPTIONS = {
      "kino-threaded" => "Kino, threaded mode: workers = CPUs, 3 threads each (bench/serve_kino.rb)",
      "kino-ractor" => "Kino, ractor mode: workers = CPUs, 1 thread each (bench/serve_kino.rb)",
      "kino-ractor-lanes" => "kino-ractor with lanes true",
      "kino-ractor-batch" => "kino-ractor with batch 4",
      "kino-threaded-lanes" => "kino-threaded with lanes true",
      "kino-threaded-batch" => "kino-threaded with batch 4",
      "kino-cluster" => "Kino, cluster mode: workers = CPUs processes, 3 threads each (bench/serve_kino.rb)",
      "puma-cluster" => "Puma, cluster mode: -w CPUs -t 3:3",
      "puma-single" => "Puma, single mode: -w 0 -t 3:3",
      "falcon" => "Falcon: falcon serve --count CPUs (forked, one fiber reactor per process)",
      "agoo" => "Agoo: workers = CPUs, 3 Ruby threads each (bench/lib/agoo_server.rb)",
      "iodine" => "Iodine: iodine -w CPUs -t 3",
      "nginx" => "nginx: worker_processes = CPUs; static plaintext and 10k only (a ceiling, not Ruby)"
    }.freeze

    NAMES = DESCRIPTIONS.keys.freeze
    RACK = ["rack", "~> 3.0"].freeze

    # The gems each server needs in bench/vendor/gems: [name, requirement].
    GEMS = {
      "puma-cluster" => [RACK, ["puma", ">= 0"]],
      "puma-single" => [RACK, ["puma", ">= 0"]],
      "falcon" => [RACK, ["falcon", ">= 0"]],
      "agoo" => [RACK, ["agoo", ">= 0"]],
      "iodine" => [RACK, ["iodine", ">= 0"]]
    }.freeze

    # The endpoints server +name+ serves (nginx: only the static ones).
    def self.endpoints(name)
      name == "nginx" ? %w[plaintext 10k pipelined] : ENDPOINT_NAMES
    end

    # The Target called +name+, for +settings+ (built anew for every start,
    # as each start gets its own port).
    def self.build(name, settings)
      case name
      when "kino-threaded" then kino(name, settings, "threaded", settings.threads)
      when "kino-ractor" then kino(name, settings, "ractor", 1)
      when "kino-ractor-lanes" then kino(name, settings, "ractor", 1, "lanes")
      when "kino-ractor-batch" then kino(name, settings, "ractor", 1, "batch=4")
      when "kino-threaded-lanes" then kino(name, settings, "threaded", settings.threads, "lanes")
      when "kino-threaded-batch" then kino(name, settings, "threaded", settings.threads, "batch=4")
      when "kino-cluster" then kino(name, settings, "cluster", settings.threads)
      when "puma-cluster" then puma(name, settings, settings.workers)
      when "puma-single" then puma(name, settings, 0)
      when "falcon" then falcon(settings)
      when "agoo" then agoo(settings)
      when "iodine" then iodine(settings)
      when "nginx" then nginx(settings)
      else raise ArgumentError, "unknown server #{name}"
      end
    end

    # Kino from this checkout, via bench/serve_kino.rb; +extra+: its
    # dispatch options ("lanes", "batch=4").
    def self.kino(name, settings, mode, threads, extra = nil)
      argv = [RbConfig.ruby, File.join(BENCH_DIR, "serve_kino.rb"), settings.port, mode, settings.workers, threads,
              settings.io_threads || 1, *extra]
      Target.new(name: name, port: settings.port, argv: argv.map(&:to_s), env: {})
    end

    # Puma from bench/vendor/gems; +workers+ 0 is single mode.
    def self.puma(name, settings, workers)
      argv = [RbConfig.ruby, Gems.bin("puma"), "-w", workers, "-t", "#{settings.threads}:#{settings.threads}",
              "-b", "tcp://127.0.0.1:#{settings.port}", "-e", "production", "-q", RACKUP]
      Target.new(name: name, port: settings.port, argv: argv.map(&:to_s), env: Gems.env)
    end

    # Falcon's development server, forked, one process per worker.
    def self.falcon(settings)
      argv = [RbConfig.ruby, Gems.bin("falcon"), "serve", "--forked", "--count", settings.workers.to_s,
              "--bind", "http://127.0.0.1:#{settings.port}", "-c", RACKUP]
      Target.new(name: "falcon", port: settings.port, argv: argv, env: Gems.env)
    end

    # Agoo through our launcher (its Rack handler forces 0 Ruby threads).
    def self.agoo(settings)
      argv = [RbConfig.ruby, File.join(__dir__, "agoo_server.rb"), settings.port, settings.workers, settings.threads]
      Target.new(name: "agoo", port: settings.port, argv: argv.map(&:to_s), env: Gems.env)
    end

    # Iodine's own command line on the rackup file.
    def self.iodine(settings)
      argv = [RbConfig.ruby, Gems.bin("iodine"), "-b", "127.0.0.1", "-p", settings.port, "-w", settings.workers,
              "-t", settings.threads, RACKUP]
      Target.new(name: "iodine", port: settings.port, argv: argv.map(&:to_s), env: Gems.env)
    end

    # nginx on a generated configuration in a temporary directory (removed
    # at exit): plaintext via `return`, 10k as a static file.
    def self.nginx(settings)
      dir = Dir.mktmpdir("kino-bench-nginx-")
      at_exit { FileUtils.remove_entry(dir, true) }
      File.chmod(0o755, dir) # nginx workers may run as nobody
      File.write(File.join(dir, "10k.txt"), Bench.endpoint("10k").body)
      File.write(File.join(dir, "nginx.conf"), nginx_config(dir, settings))
      argv = [nginx_path, "-p", dir, "-c", File.join(dir, "nginx.conf"), "-e", File.join(dir, "error.log")]
      Target.new(name: "nginx", port: settings.port, argv: argv, env: {})
    end

    # /usr/sbin/nginx, else the first nginx in PATH.
    def self.nginx_path
      ["/usr/sbin", *ENV.fetch("PATH", "").split(":")].map { |dir| File.join(dir, "nginx") }
                                                     .find { |path| File.executable?(path) } || "nginx"
    end

    # The nginx.conf text: foreground, no access log, everything in +dir+.
    def self.nginx_config(dir, settings)
      nginx_conf(dir, settings.workers, <<~SERVER)
        listen 127.0.0.1:#{settings.port};
        location = /plaintext { default_type text/plain; return 200 "Hello, World!"; }
        location = /10k { default_type text/plain; alias #{dir}/10k.txt; }
        location / { return 404; }
      SERVER
    end

    # A whole nginx.conf around one server block (+server+, its
    # directives): foreground, no access log, every path in +dir+, plus
    # +http+ (more directives for the http block).
    def self.nginx_conf(dir, workers, server, http: "")
      temp_paths = %w[client_body proxy fastcgi uwsgi scgi].map { |kind| "#{kind}_temp_path #{dir}/#{kind};" }
      <<~CONF
        worker_processes #{workers};
        daemon off;
        pid #{dir}/nginx.pid;
        error_log #{dir}/error.log warn;
        events { worker_connections 4096; }
        http {
        access_log off;
        #{temp_paths.join("\n")}
        keepalive_requests 10000000;
        #{http}
        server {
        #{server}
        }
        }
      CONF
    end
  end
end

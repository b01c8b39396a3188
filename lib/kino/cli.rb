# frozen_string_literal: true

require "optparse"
require_relative "version"
require_relative "directives"

module Kino
  # `kino [options] [rackup file]`: serve a Rack app, --check it, or write
  # a sample config with --init. See `kino --help` and `man kino`.
  #
  # Only Ruby's optparse and Kino's pure-Ruby option tables are loaded up
  # front, so -h answers at once; the rest of Kino (and its native
  # extension) is loaded when there is an app to load, or for -v, which
  # says whether this build has TLS.
  #
  # Exit status: 0 on success, 1 when --check finds blockers or the server
  # cannot start, 2 for a bad command line or config file.
  class CLI
    USAGE = "Usage: kino [options] [rackup file]"
    DEFAULT_RACKUP = "config.ru"
    DEFAULT_PORT = 9292

    # A wrong command line or config file: one line on stderr, exit 2.
    class UsageError < StandardError; end

    # The app or the server failed (not the command line): one line, exit 1.
    class Failure < StandardError; end

    # One command-line flag: the server option it sets (nil for the others).
    Flag = Struct.new(:short, :long, :argument, :option, :help, keyword_init: true)

    FLAGS = [
      Flag.new(short: "-C", long: "--config", argument: "FILE",
               help: "config file (default: kino.rb, then config/kino.rb, if present)"),
      Flag.new(short: "-b", long: "--bind", argument: "URL", option: :bind,
               help: "address or URL to listen on: HOST, tcp://HOST:PORT, unix:///PATH, " \
                     "ssl://HOST:PORT; repeat for more (default: 127.0.0.1)"),
      Flag.new(short: "-p", long: "--port", argument: "PORT", option: :port,
               help: "port to listen on (default: 9292; 0 picks a free one)"),
      Flag.new(short: "-w", long: "--workers", argument: "N", option: :workers,
               help: "workers (default: the CPUs this process may use)"),
      Flag.new(short: "-t", long: "--threads", argument: "N", option: :threads,
               help: "threads per worker (default: 1 in ractor mode, 3 in threaded and cluster)"),
      Flag.new(short: "-m", long: "--mode", argument: "MODE", option: :mode,
               help: "auto, ractor, threaded or cluster (default: auto)"),
      Flag.new(long: "--max-workers", argument: "N", option: :max_workers,
               help: "elastic pool: grow to N workers while requests stay queued (default: off)"),
      Flag.new(long: "--scale-down-after", argument: "SECONDS", option: :scale_down_after,
               help: "elastic pool: idle seconds before the extra workers leave (default: 30)"),
      Flag.new(long: "--quarantine-timeout", argument: "SECONDS", option: :quarantine_timeout,
               help: "replace a worker held by one request for longer (default: off)"),
      Flag.new(long: "--quarantine-max", argument: "N", option: :quarantine_max,
               help: "workers in quarantine at once (default: workers)"),
      Flag.new(long: "--tls-cert", argument: "FILE",
               help: "serve HTTPS with this certificate (PEM, chain allowed); needs --tls-key"),
      Flag.new(long: "--tls-key", argument: "FILE",
               help: "the certificate's private key (PEM)"),
      Flag.new(long: "--log-requests", argument: "[=PATH]", option: :log_requests,
               help: "access log: to stdout, or appended to PATH (default: off)"),
      Flag.new(long: "--log-format", argument: "FORMAT", option: :log_format,
               help: "access log lines: text or json (default: text)"),
      Flag.new(long: "--[no-]lanes", option: :lanes,
               help: "give each worker thread a lane: a short queue of its own (default: off)"),
      Flag.new(long: "--batch", argument: "N", option: :batch,
               help: "requests a worker thread takes from the queue at once (default: 1)"),
      Flag.new(short: "-e", long: "--environment", argument: "ENV",
               help: "set RACK_ENV to ENV when it is unset"),
      Flag.new(long: "--init", argument: "[PATH]",
               help: "write a commented sample config to PATH (default: kino.rb)"),
      Flag.new(long: "--check",
               help: "explain whether the app can run in ractor mode (exit 1 if not)"),
      Flag.new(short: "-v", long: "--version", help: "print the version"),
      Flag.new(short: "-h", long: "--help", help: "print this help")
    ].freeze

    # Run `kino` with +argv+; returns the exit status.
    def self.start(argv = ARGV, out: $stdout, err: $stderr)
      @command = [$PROGRAM_NAME, *argv] # what a hot restart (SIGUSR2) runs again
      new(argv, out: out, err: err).run
    end

    # A command line to run; +out+ and +err+ get what it prints.
    def initialize(argv, out: $stdout, err: $stderr)
      @argv = argv.dup
      @out = out
      @err = err
      @action = :serve
      @flags = {}
    end

    # Parses the command line and does what it asks; returns the exit status.
    def run
      parse!
      case @action
      when :help then @out.puts(help)
      when :version then @out.puts(version)
      when :init then return init
      when :check then return check
      else serve
      end
      0
    rescue OptionParser::ParseError, UsageError => e
      @err.puts "kino: #{e.message} (see kino --help)"
      2
    rescue Failure => e
      @err.puts "kino: #{e.message}"
      1
    end

    # Reads the command line: the server options it sets (coerced and
    # validated), the rackup file, the config file, the environment and
    # the action. Returns self; raises UsageError or OptionParser::ParseError.
    def parse!
      rest = parser.parse(@argv)
      raise UsageError, "one rackup file at most (got #{rest.join(' ')})" if rest.size > 1

      @rackup_arg = rest.first
      raise UsageError, "invalid environment: \"\" (expected a name like production)" if @environment_arg&.empty?

      @flags = @flags.to_h { |name, value| [name, Directives.coerce(name, value)] }
      @flags[:bind] = @flags[:bind].first if @flags[:bind]&.size == 1
      Options.resolve(@flags.except(:tls)) # tls: once merged with the config file's (#plan)
      self
    rescue ArgumentError => e
      raise UsageError, e.message
    end

    # What serving would use: the server options (defaults < config file <
    # flags, port 9292 unless set), the rackup file (argument > config file
    # > config.ru) and the environment (flag > config file). Loads Kino and
    # the config file; sets nothing.
    def plan
      require_relative "../kino"
      config = load_config
      file = config&.server_options || {}
      flags = @flags.merge(tls: (file[:tls] || {}).merge(@flags[:tls])) if @flags[:tls]
      {
        options: { port: DEFAULT_PORT }.merge(file).merge(flags || @flags),
        rackup: @rackup_arg || config&.rackup || DEFAULT_RACKUP,
        environment: @environment_arg || config&.environment,
        config: config&.path
      }
    end

    # "kino 0.1.0" and whether this build serves HTTPS, with which library
    # (the native extension is loaded for that, if it is built).
    def version
      require_relative "../kino"
      tls = Kino::Native::TLS ? "TLS: #{Kino::Native::TLS}" : "TLS: not available (built without OpenSSL)"
      "kino #{VERSION} (#{tls})"
    rescue LoadError, NotImplementedError # not built; or a Ruby that cannot load it (ruby.wasm)
      "kino #{VERSION} (native extension not built)"
    end

    # The help text: usage, flags, and every config file directive.
    def help
      directives = Directives.names.map do |name|
        about = "#{Directives.doc(name).summary} (default: #{Directives.default_text(name)})"
        wrap(format("  %-18s %s", name, about), indent: 21)
      end
      [parser.help, "Config file directives (one per line, e.g. `workers 4`; kino --init writes a sample):",
       *directives, "", "Precedence: flags > config file > defaults. See man kino.", ""].join("\n")
    end

    private

    # The option parser for FLAGS; values are kept as Strings until parse!
    # coerces them.
    def parser
      OptionParser.new do |opts|
        opts.banner = "#{USAGE}\n\nServe a Rack app (./config.ru by default) with Kino #{VERSION}.\n\nOptions:"
        opts.summary_width = 24
        FLAGS.each do |flag|
          # "[=PATH]": optional, and only when attached (--log-requests=a.log),
          # so a rackup file after the flag stays the rackup file
          long = flag.argument&.start_with?("[=") ? "#{flag.long}#{flag.argument}" : [flag.long, flag.argument].compact.join(" ")
          spec = [flag.short, long, flag.help].compact
          opts.on(*spec) { |value| take(flag, value) }
        end
      end
    end

    # +line+ folded at +width+ columns, continuation lines indented.
    def wrap(line, indent:, width: 79)
      rows = [+""]
      line.scan(/\s*\S+/) do |word|
        rows << (+" " * indent) if rows.last.size + word.size > width && rows.last.strip != ""
        rows.last << (rows.last.strip.empty? && rows.size > 1 ? word.lstrip : word)
      end
      rows.join("\n")
    end

    # Records one parsed flag.
    def take(flag, value)
      case flag.long
      when "--config" then @config_arg = value
      when "--environment" then @environment_arg = value
      when "--init" then @action, @init_path = :init, value || "kino.rb"
      when "--check" then @action = :check
      when "--version" then @action = :version unless @action == :help
      when "--help" then @action = :help
      when "--bind" then @flags[:bind] = [*@flags[:bind], value] # -b may be repeated
      when "--tls-cert" then (@flags[:tls] ||= {})[:cert] = value
      when "--tls-key" then (@flags[:tls] ||= {})[:key] = value
      when "--log-requests" then @flags[:log_requests] = value || true
      else @flags[flag.option] = value
      end
    end

    # The config file (-C, else a default one), evaluated; nil when there
    # is none. A wrong file is a UsageError.
    def load_config
      raise UsageError, "config file not found: #{@config_arg}" if @config_arg && !File.file?(@config_arg)

      path = @config_arg || Configuration.default_path
      begin
        path && Configuration.load(path)
      rescue ConfigError => e
        raise UsageError, e.message
      end
    end

    # The app the plan names: sets RACK_ENV (only when unset), then loads
    # the rackup file. Kino must be loaded (#plan does it).
    def load_app(setup)
      raise UsageError, "rackup file not found: #{setup[:rackup]}" unless File.file?(setup[:rackup])

      ENV["RACK_ENV"] ||= setup[:environment] if setup[:environment]
      Builder.load_file(setup[:rackup])
    rescue Kino::Error => e
      raise Failure, e.message
    end

    class << self
      attr_reader :command
    end

    # Serve until INT or TERM (Kino::Server#run prints the banner).
    def serve
      setup = plan
      Restart.command = CLI.command if CLI.command
      app = preload?(setup[:options]) ? load_app(setup) : loader(setup)
      begin
        Server.new(app, **setup[:options]).run
      rescue Kino::Error => e # cannot listen, pidfile taken, mode :ractor refused
        raise Failure, e.message
      end
    end

    # Whether the app is loaded here, before the server starts: always,
    # except in :cluster mode with preload false.
    def preload?(options)
      options[:mode] != :cluster || options.fetch(:preload, true)
    end

    # What each :cluster worker process loads after the fork (preload
    # false): the rackup file, as #load_app would, RACK_ENV set first.
    def loader(setup)
      raise UsageError, "rackup file not found: #{setup[:rackup]}" unless File.file?(setup[:rackup])

      ENV["RACK_ENV"] ||= setup[:environment] if setup[:environment]
      Loader.rackup(setup[:rackup])
    end

    # --check: print Kino::Check's report; 0 when the app can run in
    # :ractor mode, 1 otherwise.
    def check
      app = load_app(plan)
      Check.print_report(app, @out) ? 0 : 1
    end

    # --init: write the sample config, never over an existing file.
    def init
      require_relative "sample_config"
      raise UsageError, "#{@init_path} already exists; not overwriting it" if File.exist?(@init_path)

      dir = File.dirname(@init_path)
      Dir.mkdir(dir) unless File.directory?(dir)
      File.open(@init_path, File::WRONLY | File::CREAT | File::EXCL) { |f| f.write(SampleConfig.text) }
      @out.puts "kino: wrote #{@init_path} (every line is commented out: uncomment what you change)"
      0
    rescue Errno::EEXIST
      raise UsageError, "#{@init_path} already exists; not overwriting it"
    rescue SystemCallError => e
      raise UsageError, "cannot write #{@init_path}: #{e.message}"
    end
  end
end

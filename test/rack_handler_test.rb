# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"

# The rackup gem is optional: without it, a stub of Rackup::Handler.register
# is enough to load and test the handler in process.
RACKUP_GEM = Gem::Specification.find_all_by_name("rackup", ">= 2").first
if RACKUP_GEM
  require "rackup/handler"
elsif !defined?(Rackup::Handler)
  module Rackup
    module Handler # the part of the rackup gem's API the handler uses
      def self.register(name, klass) = (@handlers ||= {})[name.to_sym] = klass
      def self.[](name) = (@handlers || {})[name.to_sym]
    end
  end
end
require "rackup/handler/kino"

# Kino as a Rack handler: host options mapped to Kino's (Host, Port,
# Threads, Workers, Mode, Config), their precedence (typed > config file >
# the host's defaults > Kino's), the server yielded before it runs, the
# Rack 2 handler, and `rackup -s kino` itself when the rackup gem is there.
class RackHandlerTest < Minitest::Test
  include TempDir
  include KinoProcess

  LIB = File.join(ROOT, "lib")

  # What rackup passes when nothing is typed (Rackup::Server#default_options).
  RACKUP = { environment: "development", pid: nil, Port: 9292, Host: "localhost", AccessLog: [],
             config: "config.ru" }.freeze

  # Kino options for +host_options+, in the test directory (where a
  # kino.rb may be).
  def mapped(host_options)
    Dir.chdir(@dir) { Kino::RackHandler.server_options(host_options) }
  end

  def write(name, text)
    File.write(File.join(@dir, name), text)
  end

  def test_registered_as_kino
    assert_equal Rackup::Handler::Kino, Rackup::Handler[:kino]
    assert_includes Rackup::Handler::Kino.valid_options.keys, "Threads=N"
  end

  def test_port_9292_and_kino_defaults_when_nobody_sets_them
    assert_equal({ port: 9292 }, mapped({}))
  end

  def test_host_options_map_and_strings_are_coerced
    options = RACKUP.merge(Host: "0.0.0.0", Port: "3000", Threads: "0:8", Workers: "2", Mode: "threaded",
                           daemonize: false, debug: false, AccessLog: [], Verbose: true)
    assert_equal({ bind: "0.0.0.0", port: 3000, threads: 8, workers: 2, mode: :threaded }, mapped(options))
    assert_equal({ port: 9292, threads: 4 }, mapped("Threads" => 4)) # string keys, Integer values
  end

  def test_unknown_host_options_are_ignored_and_bad_values_refused
    server = Dir.chdir(@dir) { Kino::RackHandler.build(->(_) {}, RACKUP.merge(Port: "0", Mode: "threaded")) }
    refute_predicate server, :running?
    assert_equal 0, server.options[:port]
    assert_equal "localhost", server.options[:bind]
    error = assert_raises(ArgumentError) { Kino::RackHandler.build(->(_) {}, Port: "http") }
    assert_match(/invalid port/, error.message)
  end

  def test_rackup_defaults_rank_below_the_config_file_and_typed_values_above
    write("kino.rb", %(port 4000\nbind "0.0.0.0"\nthreads 2\n))
    assert_equal({ port: 4000, bind: "0.0.0.0", threads: 2 }, mapped(RACKUP))
    assert_equal({ port: 5000, bind: "0.0.0.0", threads: 6 }, mapped(RACKUP.merge(Port: "5000", Threads: "6")))
    assert_equal({ port: 4000, bind: "127.0.0.1", threads: 2 }, mapped(RACKUP.merge(Host: "127.0.0.1")))
  end

  # Rails says what was typed in :user_supplied_options.
  def test_rails_user_supplied_options
    rails = { Host: "localhost", Port: 3000, environment: "development", daemonize: false, pid: "tmp/pids/server.pid",
              caching: nil, restart_cmd: "bin/rails server", early_hints: nil, user_supplied_options: [] }
    assert_equal({ port: 3000, bind: "localhost" }, mapped(rails), "Rails' defaults over Kino's")
    write("kino.rb", %(port 4000\n))
    assert_equal({ port: 4000, bind: "localhost" }, mapped(rails), "the config file over Rails' defaults")
    typed = rails.merge(Port: 3001, user_supplied_options: %i[Port])
    assert_equal({ port: 3001, bind: "localhost" }, mapped(typed), "typed over the config file")
  end

  def test_config_option_names_the_file
    write("other.rb", %(workers 3\n))
    assert_equal({ port: 9292, workers: 3 }, mapped(Config: "other.rb"))
    assert_raises(Kino::ConfigError) { mapped(Config: "missing.rb") }
  end

  def test_run_yields_the_server_before_it_starts_then_serves_until_shutdown
    yielded = Queue.new
    saved = $stdout
    $stdout = StringIO.new # the banner
    app = ->(_) { [200, {}, ["handled"]] }
    runner = Thread.new do
      Rackup::Handler::Kino.run(app, Host: "127.0.0.1", Port: 0, Workers: 1, Threads: 1, Mode: "threaded") do |server|
        yielded << [server, server.running?]
      end
    end
    server, running = Timeout.timeout(10) { yielded.pop }
    refute running, "yielded before it starts"
    Timeout.timeout(10) { Thread.pass until server.running? }
    assert_equal [200, "handled"], http_get(server.port)
    server.shutdown
    assert Timeout.timeout(10) { runner.join }
    assert_match(/listening: http:\/\/127\.0\.0\.1:#{server.port}/, $stdout.string)
  ensure
    $stdout = saved
    runner&.kill
  end

  # Rack 2 calls run(app, options_hash) and finds the handler by name.
  def test_rack2_handler_in_a_child_process
    script = <<~RUBY
      module Rack
        module Handler # Rack 2's registry, as far as handlers use it
          @handlers = {}
          def self.register(name, klass) = @handlers[name.to_s] = klass.to_s
          def self.get(name) = const_get(@handlers.fetch(name.to_s))
        end
      end
      require "rack/handler/kino"
      handler = Rack::Handler.get("kino")
      app = ->(_) { [200, {}, ["rack 2"]] }
      handler.run(app, { Host: "127.0.0.1", Port: "0", Workers: "1", Threads: "1", Mode: "threaded" }) do |server|
        puts "yielded \#{server.class}"
      end
    RUBY
    output = with_server([RbConfig.ruby, "-I", LIB, "-e", script], dir: @dir) do |port, banner|
      assert_match(/\Ayielded Kino::Server\n/, banner)
      assert_equal [200, "rack 2"], http_get(port)
    end
    assert_match(/TERM received/, output)
  end

  def test_rackup_dash_s_kino
    unless RACKUP_GEM
      skip "the rackup gem is not installed: add \"rackup\" => \">= 2.1\" to test/install_gems.rb to run this"
    end

    write("config.ru", %(run ->(env) { [200, { "content-type" => "text/plain" }, ["via rackup"]] }\n))
    cmd = [RbConfig.ruby, RACKUP_GEM.bin_file("rackup"), "-I", LIB, "-s", "kino", "-o", "127.0.0.1",
           "-p", free_port.to_s, "-O", "Mode=threaded", "-O", "Workers=1", "-O", "Threads=2", "config.ru"]
    with_server(cmd, dir: @dir) do |port, banner|
      assert_match(/mode: threaded, 1 worker × 2 threads/, banner)
      assert_equal [200, "via rackup"], http_get(port)
    end
  end
end

# frozen_string_literal: true

require_relative "helper"
require "tmpdir"

Warning[:experimental] = false

# Ractor mode: requests served inside worker ractors, crash supervision,
# mode selection, Kino.shareable_app, Kino.sleep, and every native method
# callable from a non-main ractor.
class RactorTest < Minitest::Test
  include KinoTest

  # A module app: shareable everywhere.
  module WhereAmI
    def self.call(env)
      case env["PATH_INFO"]
      when "/crash" then raise Exception, "worker-killing crash" # rubocop:disable Lint/RaiseException
      when "/error" then raise "ordinary error"
      when "/echo" then [200, {}, [env["rack.input"].read]]
      else [200, {}, ["#{Ractor.current == Ractor.main ? 'main' : 'worker'} #{Ractor.current.name}"]]
      end
    end
  end

  # Two requests that each wait until the other has started: they can
  # only both finish if they are served at the same time.
  module Rendezvous
    def self.call(env)
      dir, me, other = env["QUERY_STRING"].split("&")
      File.write(File.join(dir, me), "")
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
      until File.exist?(File.join(dir, other))
        return [500, {}, ["alone"]] if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      end
      [200, {}, [Ractor.current.name.to_s]]
    end
  end

  def value_of(ractor)
    ractor.respond_to?(:value) ? ractor.value : ractor.take
  end

  def test_auto_picks_ractor_for_a_shareable_app_and_serves_from_a_worker_ractor
    serve(WhereAmI, lint: false, mode: :auto, workers: 2, threads: nil, on_error: nil) do |server|
      assert_equal :ractor, server.mode
      assert_equal 1, server.threads
      assert_match(/\Aworker kino-worker-\d\z/, get(server.port).body)
      data = raw(server.port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
      assert_equal "hello", parse_responses(data).first.body
    end
  end

  def test_lint_wrapped_shareable_app_runs_in_ractors
    # Rack::Lint keeps a Hash constant that it never mutates but does not
    # freeze; frozen, Lint runs in worker ractors too.
    # Only making Lint shareable may be skipped (some Ruby or Rack cannot);
    # once it is, a failure to serve is a failure.
    app = begin
      Ractor.make_shareable(Rack::Lint::Wrapper::BODY_METHODS) if defined?(Rack::Lint::Wrapper::BODY_METHODS)
      Ractor.make_shareable(Rack::Lint.new(WhereAmI))
    rescue Ractor::Error => e
      skip "Rack::Lint cannot be made shareable on this Ruby (#{e.message})"
    end
    serve(app, lint: false, mode: :auto, workers: 2, on_error: nil) do |server|
      assert_equal :ractor, server.mode
      assert_equal 200, get(server.port).status
      data = raw(server.port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
      assert_equal "abc", parse_responses(data).first.body
    end
  end

  def test_two_requests_run_at_once_in_two_ractors
    Dir.mktmpdir do |dir|
      serve(Rendezvous, lint: false, mode: :ractor, workers: 2, threads: 1, on_error: nil) do |server|
        bodies = %w[a&b b&a].map do |pair|
          Thread.new { get(server.port, "/?#{dir}&#{pair}").body }
        end.map(&:value)
        assert_equal 2, bodies.uniq.size, bodies.inspect
        assert(bodies.all? { |body| body.start_with?("kino-worker-") }, bodies.inspect)
      end
    end
  end

  def test_a_crashed_worker_answers_500_and_is_replaced
    serve(WhereAmI, lint: false, mode: :ractor, workers: 2, quiet: true, on_error: nil) do |server|
      assert_equal 500, get(server.port, "/crash").status
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 5
      sleep 0.01 until server.stats[:respawns] == 1 || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      assert_equal 1, server.stats[:respawns]
      10.times { assert_equal 200, get(server.port).status }
      assert_equal 0, server.stats[:in_flight]
    end
  end

  def test_standard_error_is_a_500_and_the_worker_keeps_going
    serve(WhereAmI, lint: false, mode: :ractor, workers: 1, quiet: true, on_error: nil) do |server|
      assert_equal 500, get(server.port, "/error").status
      assert_equal 200, get(server.port).status
      assert_equal 0, server.stats[:respawns]
    end
  end

  def test_forced_ractor_with_an_unshareable_app_raises
    app = ->(_env) { [200, {}, [log_string]] }
    error = assert_raises(Kino::UnshareableAppError) { Kino::Server.new(app, mode: :ractor) }
    assert_match(/mode :ractor needs a Ractor-shareable app/, error.message)
    assert_match(/mode: :threaded/, error.message)
  end

  def test_auto_falls_back_to_threaded_with_one_warning
    cache = {}
    app = ->(_env) { [200, {}, [cache.size.to_s]] }
    _, err = capture_io { @server = Kino::Server.new(app) }
    assert_equal :threaded, @server.mode
    assert_equal 3, @server.threads
    assert_equal 1, err.lines.size
    assert_match(/not Ractor-shareable.*mode :threaded.*kino --check/, err)
  end

  def test_unshareable_on_error_hook_blocks_ractor_mode
    hook = ->(_error, _env) { log_string }
    assert_raises(Kino::UnshareableAppError) { Kino::Server.new(WhereAmI, mode: :ractor, on_error: hook) }
    _, err = capture_io { assert_equal :threaded, Kino::Server.new(WhereAmI, on_error: hook).mode }
    assert_match(/on_error/, err)
  end

  def test_shareable_on_error_hook_is_called_from_a_worker_ractor
    Dir.mktmpdir do |dir|
      path = File.join(dir, "errors").freeze
      hook = Ractor.make_shareable(nil.instance_eval { ->(error, env) { File.write(path, "#{error.message} #{env['PATH_INFO']}") } })
      serve(WhereAmI, lint: false, mode: :ractor, workers: 1, quiet: true, on_error: hook) do |server|
        assert_equal 500, get(server.port, "/error").status
      end
      assert_equal "ordinary error /error", File.read(path)
    end
  end

  def test_shareable_app_forms
    definer = Kino.shareable_app { ->(env) { [200, {}, [env["PATH_INFO"]]] } }
    assert Ractor.shareable?(definer)
    assert_equal [200, {}, ["/x"]], definer.call("PATH_INFO" => "/x")
    assert Ractor.shareable?(ShareableInModule::APP)
    assert_equal [200, {}, ["module"]], ShareableInModule::APP.call({})
    frozen = "captured"
    assert Ractor.shareable?(Kino.shareable_app { ->(_env) { [200, {}, [frozen]] } })
    unfrozen = +"mutable"
    assert_raises(Kino::UnshareableAppError) { Kino.shareable_app { ->(_env) { [200, {}, [unfrozen]] } } }
    assert_raises(ArgumentError) { Kino.shareable_app }
    assert_raises(ArgumentError) { Kino.shareable_app { 42 } }
  end

  def test_block_form_at_top_level_works_on_4_0_and_explains_itself_on_3_x
    if Ractor.respond_to?(:shareable_proc)
      assert Ractor.shareable?(Kino.shareable_app { |_env| [200, {}, ["ok"]] })
    else
      error = assert_raises(Kino::UnshareableAppError) { Kino.shareable_app { |_env| [200, {}, ["ok"]] } }
      assert_match(/Kino.shareable_app \{ ->\(env\)/, error.message)
    end
  end

  def test_kino_sleep_in_a_worker_ractor_and_interruption
    ractor = Ractor.new do
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      Kino.sleep(0.05)
      Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
    end
    assert_operator value_of(ractor), :>=, 0.05

    sleeper = Thread.new { Kino.sleep(30) }
    sleep 0.05
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    sleeper.kill.join
    assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0, :<, 1
  end

  # Every Kino::Native method, and the null input's, called from non-main
  # ractors: a server created, started, served, stopped and freed there.
  def test_every_native_method_from_a_non_main_ractor
    id, port = value_of(Ractor.new do
      server = Kino::Native.server_new({ port: 0 })
      Kino::Native.server_start(server)
      [server, Kino::Native.server_port(server)]
    end)
    worker = Ractor.new(id) { |server| Kino::Native.serve(server, RactorTest::WhereAmI, Kino::ErrorHandler.new, 0) }
    data = raw(port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    assert_equal "ok", parse_responses(data).first.body
    stats = value_of(Ractor.new(id) do |server|
      Kino::Native.sleep(0.001)
      counters = Kino::Native.server_stats(server)
      Kino::Native.server_drain(server)
      Kino::Native.server_outstanding(server)
      Kino::Native.server_abort(server)
      Kino::Native.server_stop(server)
      counters
    end)
    assert_equal 1, stats[:served]
    assert_nil value_of(worker)
    assert value_of(Ractor.new(id) { |server| Kino::Native.server_free(server) })
    null = value_of(Ractor.new do
      input = Kino::NULL_INPUT
      [input.read, input.read(1), input.gets, input.each.to_a, input.close]
    end)
    assert_equal ["", nil, nil, [], nil], null
  end

  private

  def log_string
    "x"
  end
end

# Kino.shareable_app with a block taking env, inside a module body: the
# block's self (the module) is shareable, so this works on Ruby 3.x too.
module ShareableInModule
  APP = Kino.shareable_app { |_env| [200, {}, ["module"]] }
end

# frozen_string_literal: true

require_relative "helper"

# Kino::Server's API: options and their validation, lifecycle, stats.
class ServerTest < Minitest::Test
  include KinoTest

  APP = ->(_env) { [200, {}, ["ok"]] }
  THREADED = { mode: :threaded }.freeze # APP is not shareable: skip the :auto warning

  def test_unknown_option_is_named
    error = assert_raises(ArgumentError) { Kino::Server.new(APP, prot: 80) }
    assert_match(/unknown option :prot/, error.message)
  end

  def test_invalid_values_name_the_option
    { workers: 0, threads: -1, io_threads: 0, queue_depth: 0, port: 70_000, bind: "",
      mode: :fast, queue_timeout: 0, request_timeout: -1, header_timeout: "5",
      max_body_size: -1, shutdown_timeout: -1, on_error: 5, workers_: 1 }.each do |name, value|
      error = assert_raises(ArgumentError, name.to_s) { Kino::Server.new(APP, **THREADED, name => value) }
      assert_includes error.message, name.to_s.chomp("_")
    end
  end

  def test_app_must_be_callable
    assert_raises(ArgumentError) { Kino::Server.new(Object.new) }
  end

  def test_defaults
    server = nil
    _, warning = capture_io { server = Kino::Server.new(APP) } # a lambda made in a test: not shareable
    assert_match(/mode :threaded/, warning)
    assert_equal Kino.available_parallelism, server.workers
    assert_equal 3, server.threads
    assert_equal :threaded, server.mode
    assert_equal "127.0.0.1", server.options[:bind]
    assert_equal 1024, server.options[:queue_depth]
    assert_equal 50 * 1024 * 1024, server.options[:max_body_size]
    assert_operator Kino.available_parallelism, :>=, 1
  end

  def test_explicit_threads_win_and_mode_accepts_strings
    server = Kino::Server.new(APP, threads: 7, mode: "threaded")
    assert_equal 7, server.threads
    assert_equal :threaded, server.mode
  end

  def test_stats_before_and_after_start
    server = Kino::Server.new(APP, workers: 2, threads: 2, **THREADED)
    assert_equal({ mode: :threaded, workers: 2, threads: 2, io_threads: 1, respawns: 0 },
                 server.stats.except(:log_dropped))
    assert_kind_of Integer, server.stats[:log_dropped]
    server.start
    get(server.port)
    stats = server.stats
    %i[mode workers threads io_threads queued in_flight served connections accepted rejected timeouts].each do |key|
      assert stats.key?(key), key.to_s
    end
    assert_equal 1, stats[:served]
    assert_equal 0, stats[:in_flight]
  ensure
    server&.shutdown
  end

  def test_start_twice_raises_and_shutdown_is_idempotent
    server = Kino::Server.new(APP, **THREADED).start
    assert_raises(Kino::Error) { server.start }
    assert_nil server.shutdown
    assert_nil server.shutdown
    assert_raises(Errno::ECONNREFUSED) { connect(server.port) }
  end

  def test_wait_returns_after_shutdown_from_another_thread
    server = Kino::Server.new(APP, **THREADED).start
    Thread.new { sleep 0.1; server.shutdown }
    assert_same server, server.wait
  end

  def test_shutdown_lets_in_flight_requests_finish
    started = Queue.new
    app = lambda do |_env|
      started << true
      sleep 0.3
      [200, {}, ["finished"]]
    end
    serve(app) do |server|
      socket = connect(server.port)
      socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      started.pop
      Thread.new { server.shutdown(timeout: 5) }
      sleep 0.05
      assert_raises(Errno::ECONNREFUSED) { connect(server.port) } # not accepting any more
      response = read_response(socket)
      assert_equal "finished", response.body
      assert_equal "close", response["connection"]
      socket.close
    end
  end

  def test_shutdown_timeout_answers_stragglers_with_500
    started = Queue.new
    app = ->(_env) { started << true; sleep 3; [200, {}, ["late"]] }
    serve(app, lint: false) do |server|
      socket = connect(server.port)
      socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      started.pop
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      server.shutdown(timeout: 0.2)
      assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0, :<, 2.5
      assert_equal 500, read_response(socket).status
      socket.close
    end
  end

  def test_bind_ipv6
    server = Kino::Server.new(APP, bind: "::1", **THREADED).start
    socket = TCPSocket.new("::1", server.port)
    socket.write("GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n")
    assert_equal "ok", read_response(socket).body
    assert_equal "http://[::1]:#{server.port}", server.url
    socket.close
  rescue Errno::EADDRNOTAVAIL, Errno::EAFNOSUPPORT
    skip "no IPv6 loopback here"
  ensure
    server&.shutdown
  end

  def test_port_in_use_raises_kino_error
    first = Kino::Server.new(APP, **THREADED).start
    error = assert_raises(Kino::Error) { Kino::Server.new(APP, port: first.port, **THREADED).start }
    assert_match(/cannot listen/, error.message)
  ensure
    first&.shutdown
  end

  def test_kino_sleep
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    Kino.sleep(0.05)
    elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
    assert_operator elapsed, :>=, 0.05
    assert_raises(ArgumentError) { Kino.sleep(-1) }
    assert_raises(ArgumentError) { Kino.sleep("1") }
  end
end

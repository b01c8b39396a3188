# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"
require "tmpdir"
require "rbconfig"

# Production plumbing: backpressure (503), request_timeout (504), graceful
# shutdown under load, supervision and lifecycle hooks, stats, pidfile and
# signals.
class ProductionTest < Minitest::Test
  include KinoTest
  include KinoProcess


  def test_a_full_queue_answers_503_after_queue_timeout
    app = lambda do |_env|
      sleep 0.3
      [200, {}, ["slow"]]
    end
    serve(app, workers: 1, threads: 1, queue_depth: 1, queue_timeout: 0.2) do |server|
      responses = Array.new(6) do
        Thread.new { parse_responses(raw(server.port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout: 10)).first }
      end.map(&:value)
      statuses = responses.map(&:status)
      assert_empty statuses - [200, 503], statuses.inspect
      assert_includes statuses, 503
      assert_includes statuses, 200
      assert_equal statuses.count(503), server.stats[:rejected]
      assert(responses.select { |r| r.status == 503 }.all? { |r| r["retry-after"] })
    end
  end

  def test_request_timeout_answers_504_and_the_late_response_is_dropped
    closed = Queue.new
    body = Class.new do
      define_method(:initialize) { |q| @q = q }
      define_method(:each) { |&b| b.call("late") }
      define_method(:close) { @q << :closed }
    end
    app = lambda do |env|
      sleep 1.0 if env["PATH_INFO"] == "/slow"
      [200, {}, body.new(closed)]
    end
    serve(app, workers: 1, threads: 1, request_timeout: 0.2) do |server|
      t0 = monotonic
      data = raw(server.port, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
      responses = parse_responses(data)
      assert_equal [504], responses.map(&:status)
      assert_operator monotonic - t0, :<, 0.9, "504 must come before the handler finishes"
      refute_includes data, "late"
      assert_equal :closed, closed.pop # the handler ran to the end and its body was closed
      assert_equal 1, server.stats[:timeouts]
      assert_equal "late", get(server.port, "/fast").body # the worker is free again
      closed.pop
    end
  end

  def test_request_timeout_is_off_by_default_and_never_cuts_a_started_stream
    stream = Class.new do
      def each
        5.times do
          yield "tick "
          sleep 0.1
        end
      end
    end
    slow = lambda do |_env|
      sleep 0.4
      [200, {}, ["ok"]]
    end
    serve(slow) do |server|
      assert_equal "ok", get(server.port).body
    end
    serve(->(_env) { [200, {}, stream.new] }, request_timeout: 0.2) do |server|
      assert_equal "tick " * 5, get(server.port, "/stream").body
      assert_equal 0, server.stats[:timeouts]
    end
  end

  def test_shutdown_during_a_burst_leaves_no_truncated_response_and_no_hung_client
    app = lambda do |env|
      sleep 0.01
      [200, { "content-type" => "text/plain" }, ["x" * 1000, env["PATH_INFO"]]]
    end
    outcomes = Queue.new
    serve(app, workers: 2, threads: 2) do |server|
      clients = Array.new(16) do |i|
        Thread.new do
          20.times do |n|
            data = raw(server.port, "GET /#{i}-#{n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout: 10)
            outcomes << classify(data, "/#{i}-#{n}")
          rescue Errno::ECONNREFUSED, Errno::ECONNRESET
            outcomes << :refused
          end
        end
      end
      sleep 0.15
      server.shutdown(timeout: 5)
      clients.each { |c| assert c.join(15), "a client hung" }
    end
    results = Array.new(outcomes.size) { outcomes.pop }
    assert_includes results, :complete
    assert_empty results - %i[complete closed_early refused], results.tally.inspect
  end

  # :complete (a whole 200 with its body), :closed_early (closed before
  # any response byte), or :truncated.
  def classify(data, path)
    return :closed_early if data.empty?

    response = parse_responses(data, partial: false).first
    return :truncated unless response

    response.status == 200 && response.body == ("x" * 1000) + path ? :complete : :truncated
  end

  def test_a_dead_worker_thread_is_replaced
    app = lambda do |env|
      raise Exception, "thread killer" if env["PATH_INFO"] == "/crash" # rubocop:disable Lint/RaiseException

      [200, {}, ["alive"]]
    end
    serve(app, workers: 1, threads: 1, quiet: true) do |server|
      assert_equal 500, get(server.port, "/crash").status
      assert wait_until { server.stats[:respawns] == 1 }
      assert_equal "alive", get(server.port).body
    end
  end

  def test_lifecycle_hooks
    events = Queue.new
    hooks = {
      after_boot: -> { events << [:after_boot] },
      on_worker_boot: ->(worker) { events << [:boot, worker] },
      on_worker_exit: ->(worker, error) { events << [:exit, worker, error&.message] }
    }
    app = lambda do |env|
      raise Exception, "bye" if env["PATH_INFO"] == "/crash" # rubocop:disable Lint/RaiseException

      [200, {}, ["ok"]]
    end
    serve(app, workers: 2, threads: 1, quiet: true, **hooks) do |server|
      assert wait_until { events.size >= 3 }
      seen = Array.new(3) { events.pop }
      assert_includes seen, [:after_boot]
      assert_equal [[:boot, 0], [:boot, 1]], seen.select { |e| e.first == :boot }.sort
      get(server.port, "/crash")
      assert wait_until { events.size >= 2 }
      crash = Array.new(2) { events.pop }
      assert(crash.any? { |e| e.first == :exit && e.last == "bye" }, crash.inspect)
      assert(crash.any? { |e| e.first == :boot }, crash.inspect) # the replacement
    end
    exits = Array.new(events.size) { events.pop }.select { |e| e.first == :exit }
    assert_equal [[:exit, 0, nil], [:exit, 1, nil]], exits.sort_by { |e| e[1] } # clean exits at shutdown
  end

  def test_hook_values_are_validated_and_a_raising_hook_does_not_stop_the_server
    assert_raises(ArgumentError) { Kino::Server.new(->(_e) {}, mode: :threaded, after_boot: :nope) }
    serve(->(_env) { [200, {}, ["ok"]] }, after_boot: -> { raise "hook failure" }, quiet: true) do |server|
      assert_equal "ok", get(server.port).body
    end
  end

  def test_stats_rows_and_queue_wait_histogram
    serve(->(_env) { [200, {}, ["ok"]] }, workers: 2, threads: 2) do |server|
      # a worker's row appears once its threads have started
      assert wait_until { server.stats[:per_worker].size == 2 }
      10.times { get(server.port) }
      stats = server.stats
      assert_equal 10, stats[:served]
      assert_equal 10, stats[:accepted]
      assert_equal [0, 1], stats[:per_worker].map { |row| row[:worker] }
      assert_equal 10, stats[:per_worker].sum { |row| row[:served] }
      assert(stats[:per_worker].all? { |row| row[:in_flight].zero? && row[:busy_ms] >= 0 })
      assert_equal 10, stats[:queue_wait_ms].values.sum
      assert_equal Float::INFINITY, stats[:queue_wait_ms].keys.last
      assert_match(/\Astats: mode=threaded .*served=10 .*queue_wait=/, server.stats_line)
    end
  end

  def test_pidfile_rules
    Dir.mktmpdir do |dir|
      path = File.join(dir, "kino.pid")
      pidfile = Kino::Pidfile.new(path).claim!
      assert_equal "#{Process.pid}\n", File.read(path)
      pidfile.release
      refute File.exist?(path)

      sleeper = Process.spawn("sleep", "30")
      File.write(path, "#{sleeper}\n")
      error = assert_raises(Kino::Error) { Kino::Pidfile.new(path).claim! }
      assert_match(/running process #{sleeper}/, error.message)
      Process.kill("KILL", sleeper)
      Process.wait(sleeper)
      Kino::Pidfile.new(path).claim! # the owner is dead: stale, replaced
      assert_equal Process.pid, File.read(path).to_i

      File.write(path, "not a pid file\n")
      assert_raises(Kino::Error) { Kino::Pidfile.new(path).claim! }
      assert_equal "not a pid file\n", File.read(path)

      target = File.join(dir, "target")
      File.write(target, "precious")
      File.unlink(path)
      File.symlink(target, path)
      Kino::Pidfile.new(path).claim!
      refute File.symlink?(path)
      assert_equal "precious", File.read(target)

      File.write(path, "999999999\n") # no longer ours: release leaves it
      Kino::Pidfile.new(path).release
      assert File.exist?(path)
    end
  end

  def test_a_live_pidfile_keeps_a_second_server_from_starting
    Dir.mktmpdir do |dir|
      path = File.join(dir, "server.pid")
      serve(->(_env) { [200, {}, ["ok"]] }, pidfile: path) do
        assert_equal Process.pid, File.read(path).to_i
        error = assert_raises(Kino::Error) { Kino::Server.new(->(_e) {}, mode: :threaded, pidfile: path).start }
        assert_match(/running process|held/, error.message)
      end
      refute File.exist?(path) # removed at shutdown
    end
  end

  # A child process running Kino::Server.run: USR1 prints the stats line,
  # TERM stops it gracefully (exit 0, pidfile gone), and a second INT while
  # a request is still running exits at once.
  def test_signals_in_a_child_process
    Dir.mktmpdir do |dir|
      pidfile = File.join(dir, "kino.pid")
      code = <<~RUBY
        app = ->(env) { sleep(env["PATH_INFO"] == "/slow" ? 30 : 0); [200, {}, ["ok"]] }
        Kino::Server.run(app, port: 0, workers: 1, threads: 2, mode: :threaded, pidfile: #{pidfile.dump})
      RUBY
      with_child(code) do |pid, port, out|
        assert_equal pid, File.read(pidfile).to_i
        assert_equal "ok", get(port).body
        Process.kill("USR1", pid)
        line = Timeout.timeout(5) do
          loop do
            l = out.gets or break ""
            break l if l.include?(" main: stats:")
          end
        end
        assert_match(/\Akino\[#{pid}\] main: stats: mode=threaded workers=1 threads=2 .*served=1 /, line)
        Process.kill("TERM", pid)
        _, status = Timeout.timeout(10) { Process.wait2(pid) }
        assert status.success?, status.inspect
        refute File.exist?(pidfile)
      end

      with_child(code) do |pid, port|
        slow = Thread.new { raw(port, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n", timeout: 10) }
        sleep 0.2
        Process.kill("INT", pid)
        sleep 0.2
        Process.kill("INT", pid)
        t0 = monotonic
        _, status = Timeout.timeout(10) { Process.wait2(pid) }
        assert_operator monotonic - t0, :<, 2
        refute status.success?
        slow.join(5)
      end
    end
  end

  def with_child(code)
    out_r, out_w = IO.pipe
    lib = File.expand_path("../lib", __dir__)
    pid = Process.spawn(RbConfig.ruby, "-I", lib, "-rkino", "-e", code, out: out_w, err: File::NULL)
    out_w.close
    banner = +""
    Timeout.timeout(10) { banner << out_r.readpartial(4096) until banner.include?("Ctrl-C") }
    port = banner[%r{listening: http://127\.0\.0\.1:(\d+)}, 1].to_i
    yield pid, port, out_r
  ensure
    kill_process(pid)
  end
end

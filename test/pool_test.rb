# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"
require "json"
require "tmpdir"

Warning[:experimental] = false

# Quarantine of stuck workers and the elastic pool (doc/pool.md), over real
# sockets in :threaded, :ractor and :cluster: a stuck handler never stops
# service, a queued burst grows the pool and idleness shrinks it, and a
# stuck worker never holds shutdown past shutdown_timeout.
class PoolTest < Minitest::Test
  include KinoTest
  include KinoProcess

  # Handlers that block until the test says so: a request with
  # ?gate=PORT connects to the Gate listening on PORT and waits for one
  # byte. Works the same in a thread, a ractor or a forked process.
  module Gated
    def self.call(env)
      port = env["QUERY_STRING"][/\Agate=(\d+)\z/, 1]
      if port
        socket = TCPSocket.new("127.0.0.1", Integer(port))
        socket.read(1)
        socket.close
      end
      [200, { "content-type" => "text/plain" }, ["#{env['PATH_INFO']} #{Process.pid}"]]
    end
  end

  # Holds the connections of Gated handlers until #open!.
  class Gate
    def initialize
      @server = TCPServer.new("127.0.0.1", 0)
      @held = []
      @lock = Mutex.new
      @open = false
      @thread = Thread.new do
        loop do
          client = @server.accept
          @lock.synchronize { @open ? release(client) : @held << client }
        end
      rescue IOError
        nil
      end
    end

    def port
      @server.addr[1]
    end

    # Handlers waiting at the gate now.
    def waiting
      @lock.synchronize { @held.size }
    end

    # Let every waiting handler and every later one through.
    def open!
      @lock.synchronize do
        @open = true
        @held.each { |client| release(client) }
        @held.clear
      end
    end

    def close
      open!
      @server.close
      @thread.join
    end

    private

    def release(client)
      client.write("g")
      client.close
    rescue IOError, SystemCallError
      nil
    end
  end

  def setup
    @gate = Gate.new
  end

  def teardown
    @gate.close
  end

  # Sends GET +path+ on a new connection; returns the socket to read the
  # answer from later.
  def send_get(port, path)
    socket = connect(port)
    socket.write("GET #{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    socket
  end

  def answer(socket, timeout: 20)
    parse_responses(read_all(socket, timeout: timeout)).first
  ensure
    socket.close
  end

  def slow_get(port, path)
    answer(send_get(port, path))
  end

  # A server around Gated with stderr captured; yields the server and
  # the captured output (a StringIO).
  def serve_gated(**options)
    saved = $stderr
    $stderr = StringIO.new
    server = Kino::Server.new(Gated, **options).start
    yield server, $stderr
  ensure
    server&.shutdown(timeout: 2)
    $stderr = saved
  end

  # The control plane's view of the pool: /stats' pool fields and
  # /metrics' pool samples ({"kino_active_workers" => 1, ...}).
  POOL_JSON = %w[active_workers max_workers quarantined quarantines scale_ups scale_downs].freeze
  POOL_METRICS = %w[kino_active_workers kino_max_workers kino_quarantined_workers kino_quarantines_total
                    kino_scale_ups_total kino_scale_downs_total].freeze

  def control_pool(server)
    port = server.control_url[/\d+\z/].to_i
    json = JSON.parse(get(port, "/stats").body)
    text = get(port, "/metrics").body
    [json.values_at(*POOL_JSON), POOL_METRICS.map { |name| text[/^#{name} (\d+)$/, 1]&.to_i }]
  end

  # Waits until /stats and /metrics both show +numbers+ (POOL_JSON's
  # order): the watcher hands them to the engine after each look.
  def assert_control_pool(server, numbers)
    seen = nil
    ok = wait_until { (seen = control_pool(server)) == [numbers, numbers] }
    assert ok, "control plane: expected #{POOL_JSON.zip(numbers).to_h}, saw /stats #{seen&.first}, /metrics #{seen&.last}"
  end

  # One request stuck at the gate, then a second one served all the same
  # (by the worker that took the stuck one's place); the rows and the
  # counters say so, and the stuck request still gets its own answer.
  def assert_quarantine_keeps_serving(mode, **options)
    serve_gated(mode: mode, workers: 1, threads: 1, quarantine_timeout: 0.5, control_bind: "127.0.0.1:0",
                **options) do |server, log|
      stuck = send_get(server.port, "/stuck?gate=#{@gate.port}")
      assert wait_until { @gate.waiting == 1 }, "the handler reached the gate"
      fast = slow_get(server.port, "/fast")
      assert_equal 200, fast&.status, "served while the only worker is stuck; log:\n#{log.string}"
      stats = server.stats
      assert_equal [1, 1, 1], stats.values_at(:quarantined, :quarantines, :active_workers)
      assert_equal [[0, false], [0, true]], stats[:per_worker].map { |r| [r[:worker], r[:quarantined]] }
      assert_equal 1, stats[:per_worker].last[:in_flight]
      assert_match(/worker 0 has been held by one request for \d+ s: quarantined/, log.string)
      assert_control_pool(server, [1, 1, 1, 1, 0, 0])
      @gate.open!
      assert_equal [200, "/stuck"], answer(stuck).then { |r| [r.status, r.body.split.first] }
      assert wait_until { server.stats[:quarantined].zero? }, "the quarantined worker left once its request ended"
      assert_control_pool(server, [1, 1, 0, 1, 0, 0])
      assert_equal [[0, false]], server.stats[:per_worker].map { |r| [r[:worker], r[:quarantined]] }
      assert_equal 200, slow_get(server.port, "/again").status
      log.string
    end
  end

  def test_threaded_stuck_handler_is_quarantined_and_service_goes_on
    assert_quarantine_keeps_serving(:threaded)
  end

  def test_threaded_quarantine_with_lanes_and_batches
    assert_quarantine_keeps_serving(:threaded, lanes: true, batch: 4)
  end

  def test_ractor_stuck_handler_is_quarantined_and_service_goes_on
    log = assert_quarantine_keeps_serving(:ractor)
    assert_match(/worker ractor 0 cannot be stopped from outside/, log)
  end

  # quarantine_max 1: the worker started in the first one's place gets
  # stuck too and is only reported; the rest keep their place.
  def test_quarantine_max_caps_the_replacements
    serve_gated(mode: :threaded, workers: 1, threads: 1, quarantine_timeout: 0.5, quarantine_max: 1) do |server, log|
      first = send_get(server.port, "/one?gate=#{@gate.port}")
      assert wait_until { @gate.waiting == 1 }
      second = send_get(server.port, "/two?gate=#{@gate.port}")
      assert wait_until { @gate.waiting == 2 }, "the replacement took the second request"
      assert wait_until { log.string.include?("quarantine_max") }, "the second stuck worker is reported:\n#{log.string}"
      stats = server.stats
      assert_equal [1, 1, 1], stats.values_at(:quarantined, :quarantines, :active_workers)
      assert_match(/worker 0 has been held by one request for \d+ s \(quarantine_timeout 0.5 s\), but 1 worker is in quarantine already/, log.string)
      @gate.open!
      assert_equal [200, 200], [answer(first).status, answer(second).status]
    end
  end

  # Shutdown with a stuck worker (in quarantine or not) ends within
  # shutdown_timeout and a little more: the stuck request gets a 500, a
  # thread is killed, a ractor is left behind (and said so).
  def assert_shutdown_is_not_held(mode, **options)
    saved = $stderr
    $stderr = StringIO.new
    server = Kino::Server.new(Gated, mode: mode, workers: 1, threads: 1, **options).start
    stuck = send_get(server.port, "/stuck?gate=#{@gate.port}")
    assert wait_until { @gate.waiting == 1 }
    started = monotonic
    server.shutdown(timeout: 1)
    took = monotonic - started
    assert_operator took, :<, 10, "shutdown_timeout 1 s"
    assert_equal 500, answer(stuck).status
    $stderr.string
  ensure
    $stderr = saved
  end

  def test_shutdown_with_a_stuck_thread_ends_within_shutdown_timeout
    assert_shutdown_is_not_held(:threaded, quarantine_timeout: 0.3)
  end

  def test_shutdown_with_a_wedged_ractor_ends_within_shutdown_timeout
    log = assert_shutdown_is_not_held(:ractor)
    assert_match(/worker ractor 0 still in a request after the drain: a ractor cannot be stopped/, log)
  end

  # A burst that stays queued grows the pool one worker at a time up to
  # max_workers; once idle for scale_down_after it shrinks back. In
  # :cluster a busy process still takes its share of waiting connections
  # (so that none starves), so a burst sent at once ends up queued in the
  # first process; there requests keep arriving until three processes
  # hold one each.
  def assert_elastic(mode)
    serve_gated(mode: mode, workers: 1, threads: 1, max_workers: 3, scale_down_after: 0.5,
                control_bind: "127.0.0.1:0") do |server, log|
      assert_equal [1, 3, 0, 0], server.stats.values_at(:active_workers, :max_workers, :scale_ups, :scale_downs)
      assert_control_pool(server, [1, 3, 0, 0, 0, 0])
      sent = Array.new(5) { |i| send_get(server.port, "/burst#{i}?gate=#{@gate.port}") }
      if mode == :cluster
        wait_until do
          next true if @gate.waiting == 3

          sent << send_get(server.port, "/more?gate=#{@gate.port}")
          sleep 0.3
          false
        end
      end
      assert wait_until { @gate.waiting == 3 }, "three workers hold a request each; log:\n#{log.string}"
      stats = server.stats
      assert_equal [3, 2, 0], stats.values_at(:active_workers, :scale_ups, :scale_downs)
      assert_control_pool(server, [3, 3, 0, 0, 2, 0])
      assert_equal 2, stats[:queued], "two requests still wait: max_workers is reached" unless mode == :cluster
      assert_equal 3, @gate.waiting, "no more than max_workers"
      @gate.open!
      assert_equal [200] * sent.size, sent.map { |socket| answer(socket)&.status }
      assert wait_until { server.stats[:active_workers] == 1 }, "back to workers after scale_down_after"
      assert_equal [1, 2, 2], server.stats.values_at(:active_workers, :scale_ups, :scale_downs)
      assert_control_pool(server, [1, 3, 0, 0, 2, 2])
      assert_equal 200, slow_get(server.port, "/after").status
    end
  end

  def test_threaded_pool_grows_under_a_queued_burst_and_shrinks_when_idle
    assert_elastic(:threaded)
  end

  def test_ractor_pool_grows_under_a_queued_burst_and_shrinks_when_idle
    assert_elastic(:ractor)
  end

  def test_cluster_pool_grows_under_a_queued_burst_and_shrinks_when_idle
    assert_elastic(:cluster)
  end

  # :cluster: the stuck process quarantines its own thread and serves on
  # with a new one, as :threaded does; its row says quarantined meanwhile.
  def test_cluster_stuck_thread_is_quarantined_inside_its_process
    serve_gated(mode: :cluster, workers: 1, threads: 1, quarantine_timeout: 0.5) do |server, log|
      pid = wait_until { (rows = server.stats[:per_worker]) && rows.first[:state] == :serving && rows.first[:pid] }
      stuck = send_get(server.port, "/stuck?gate=#{@gate.port}")
      assert wait_until { @gate.waiting == 1 }
      fast = slow_get(server.port, "/fast")
      assert_equal 200, fast&.status, "served while the only worker thread is stuck; log:\n#{log.string}"
      assert_equal pid.to_s, fast.body.split.last, "by the same process"
      stats = server.stats
      assert_equal [1, 1, 1], stats.values_at(:quarantined, :quarantines, :active_workers)
      assert_equal [[0, pid, true]], stats[:per_worker].map { |r| [r[:worker], r[:pid], r[:quarantined]] }
      @gate.open!
      assert_equal 200, answer(stuck).status
      assert wait_until { server.stats[:quarantined].zero? }, "the quarantined threads left"
      assert_equal [1, false], server.stats.then { |s| [s[:quarantines], s[:per_worker].first[:quarantined]] }
    end
  end

  # A handler that holds its process's interpreter lock in a C call
  # (libc sleep through Fiddle with need_gvl): the process cannot answer
  # the master, so it is KILLed and replaced.
  module Wedged
    def self.call(env)
      if env["PATH_INFO"] == "/wedge"
        libc = Fiddle.dlopen(nil)
        Fiddle::Function.new(libc["sleep"], [Fiddle::TYPE_INT], Fiddle::TYPE_INT, need_gvl: true).call(60)
      end
      [200, { "content-type" => "text/plain" }, [Process.pid.to_s]]
    end
  end

  def test_cluster_wedged_process_is_killed_and_replaced
    begin
      require "fiddle"
    rescue LoadError
      skip "no fiddle in this Ruby"
    end
    saved = $stderr
    $stderr = StringIO.new
    server = Kino::Server.new(Wedged, mode: :cluster, workers: 1, threads: 1, quarantine_timeout: 1).start
    old = wait_until { (rows = server.stats[:per_worker]) && rows.first[:state] == :serving && rows.first[:pid] }
    wedged = send_get(server.port, "/wedge")
    # a process takes waiting connections even when busy (so none starves):
    # ask once the master has replaced the wedged one
    assert wait_until { $stderr.string.include?("quarantined") }, "the master gave up on the wedged process"
    fast = slow_get(server.port, "/fast")
    assert_equal 200, fast&.status, "served while the worker process is wedged; log:\n#{$stderr.string}"
    refute_equal old.to_s, fast.body
    assert_match(/worker 0 has not answered for \d+ s: quarantined/, $stderr.string)
    assert_nil answer(wedged), "the wedged process was killed: its client sees the connection close"
    assert wait_until { server.stats[:quarantined].zero? }
    assert_equal 1, server.stats[:quarantines]
  ensure
    server&.shutdown(timeout: 2)
    $stderr = saved
  end

  # `kino` with the flags and a config file, in :ractor mode: the banner
  # says what is on, a stuck ractor is quarantined and service goes on,
  # and TERM still stops the process in about shutdown_timeout although
  # the stuck ractor cannot be stopped.
  def test_kino_with_a_stuck_ractor_serves_and_stops_on_term
    Dir.mktmpdir("kino-pool") do |dir|
      File.write(File.join(dir, "config.ru"), <<~RUBY)
        require "socket"
        module Gated
          def self.call(env)
            port = env["QUERY_STRING"][/\\Agate=(\\d+)\\z/, 1]
            TCPSocket.new("127.0.0.1", Integer(port)).read(1) if port
            [200, { "content-type" => "text/plain" }, ["ok"]]
          end
        end
        run Gated
      RUBY
      File.write(File.join(dir, "kino.rb"), "shutdown_timeout 1\nscale_down_after 5\nquarantine_max 2\n")
      cmd = [RbConfig.ruby, KINO, "-p", "0", "-m", "ractor", "-w", "1", "--max-workers", "2",
             "--quarantine-timeout", "0.5"]
      stuck = started = nil
      output = with_server(cmd, dir: dir, signal: nil, timeout: 45) do |port, banner, pid|
        assert_match(/- pool: up to 2 workers under a backlog, quarantine after 0.5 s on one request/, banner)
        stuck = send_get(port, "/stuck?gate=#{@gate.port}")
        assert wait_until { @gate.waiting == 1 }
        assert_equal [200, "ok"], http_get(port, "/fast")
        started = monotonic
        Process.kill("TERM", pid)
      end
      assert_operator monotonic - started, :<, 15, "exited in about shutdown_timeout (1 s)"
      assert_equal 500, answer(stuck).status
      assert_match(/worker ractor 0 cannot be stopped from outside/, output)
    end
  end

  def test_pool_stats_when_both_are_off
    serve_gated(mode: :threaded, workers: 2, threads: 2, control_bind: "127.0.0.1:0") do |server, _|
      assert_equal 200, slow_get(server.port, "/").status
      stats = wait_until { (s = server.stats)[:per_worker].size == 2 && s }
      assert_equal({ active_workers: 2, max_workers: 2, scale_ups: 0, scale_downs: 0, quarantined: 0, quarantines: 0 },
                   stats.slice(:active_workers, :max_workers, :scale_ups, :scale_downs, :quarantined, :quarantines))
      assert_equal [[2, 2, 0, 0, 0, 0]] * 2, control_pool(server), "set at the start, without a watcher"
      assert_equal [false, false], stats[:per_worker].map { |r| r[:quarantined] }
      refute server.instance_variable_get(:@pool).instance_variable_get(:@watcher), "no watcher thread"
    end
  end

  def test_max_workers_below_workers_is_refused
    error = assert_raises(ArgumentError) { Kino::Server.new(Gated, workers: 3, max_workers: 2) }
    assert_match(/invalid max_workers: 2 \(expected at least workers/, error.message)
    error = assert_raises(ArgumentError) { Kino::Server.new(Gated, workers: 2, max_workers: 1, mode: :threaded) }
    assert_match(/at least workers \(2\)/, error.message)
  end
end

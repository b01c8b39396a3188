# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"
require "json"
require "tmpdir"

# The control plane: probes, stats, metrics, the bearer token, its limits,
# and that it answers while every worker is stuck in the app.
# (test/deploy/promtool_test.rb runs promtool on /metrics.)
class ControlTest < Minitest::Test
  include KinoTest
  include KinoProcess

  APP = ->(_env) { [200, { "content-type" => "text/plain" }, ["ok"]] }

  def control_port(server)
    server.control_url[/\d+\z/].to_i
  end

  def control_get(server, path, headers = {})
    get(control_port(server), path, headers)
  end

  # Whether the server closed +socket+ within +timeout+ without sending a byte.
  def closed_without_a_byte?(socket, timeout)
    socket.wait_readable(timeout) && socket.read_nonblock(1, exception: false).nil?
  rescue Errno::ECONNRESET
    true
  end

  def test_probes_stats_and_metrics
    serve(APP, control_bind: "127.0.0.1:0", workers: 2) do |server|
      assert_match(%r{\Ahttp://127\.0\.0\.1:\d+\z}, server.control_url)
      assert_includes server.banner, "- control: #{server.control_url}"
      3.times { assert_equal 200, get(server.port).status }

      live = control_get(server, "/live")
      assert_equal [200, "live\n"], [live.status, live.body]
      assert_equal "close", live["connection"]
      assert_equal [200, "ready\n"], control_get(server, "/ready").then { |r| [r.status, r.body] }

      stats = control_get(server, "/stats")
      assert_equal "application/json", stats["content-type"]
      json = JSON.parse(stats.body)
      assert_equal "running", json["state"]
      assert_equal Kino::VERSION, json["version"]
      assert_equal "threaded", json["mode"]
      ruby = server.stats
      %w[workers threads io_threads respawns served accepted connections queued in_flight rejected timeouts errors
         hijacked].each do |key|
        assert json.key?(key), key
      end
      assert_equal 3, json["served"]
      assert_equal ruby[:workers], json["workers"]
      assert_equal ruby[:queue_wait_ms].keys.map { |k| k.infinite? ? "Infinity" : k.to_s }, json["queue_wait_ms"].keys
      assert_equal 3, json["queue_wait_ms"].values.sum
      assert_equal ruby[:per_worker].map { |w| w[:worker] }, json["per_worker"].map { |w| w["worker"] }
      assert_equal 3, json["per_worker"].sum { |w| w["served"] }

      metrics = control_get(server, "/metrics")
      assert_equal "text/plain; version=0.0.4; charset=utf-8", metrics["content-type"]
      text = metrics.body
      assert_match(/^kino_requests_served_total 3$/, text)
      assert_match(/^kino_ready 1$/, text)
      assert_match(/^kino_connections_hijacked_total 0$/, text)
      assert_match(/^kino_queue_wait_seconds_bucket\{le="\+Inf"\} 3$/, text)
      assert_match(/^kino_queue_wait_seconds_count 3$/, text)
      assert_match(/^kino_worker_requests_served_total\{worker="0"\} \d+$/, text)
      assert_match(/^kino_worker_requests_served_total\{worker="1"\} \d+$/, text)
      assert_match(/^kino_info\{version="#{Regexp.escape(Kino::VERSION)}",mode="threaded"\} 1$/, text)
      text.lines.grep_v(/^#/).each { |line| assert_match(/\A[a-z_]+(\{[^}]*\})? [0-9.e+-]+\n\z/, line) }
      families = text.scan(/^# TYPE (\S+) (\S+)$/)
      families.each { |name, type| assert(!(type == "counter") || name.end_with?("_total"), name) }

      assert_equal 404, control_get(server, "/nope").status
      assert_equal 405, parse_responses(raw(control_port(server), "POST /live HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")).first.status
      head = parse_responses(raw(control_port(server), "HEAD /stats HTTP/1.1\r\nHost: x\r\n\r\n"), head: true).first
      assert_equal 200, head.status
      assert_equal "", head.body
    end
  end

  # With lanes, /stats has lane_depths (one per worker thread, as
  # Kino::Server#stats) and every row its lane; /metrics a lane depth per
  # worker. Without lanes there is no lane_depths, and the rows say 0.
  def test_lane_depths_in_stats_and_metrics
    serve(APP, control_bind: "127.0.0.1:0", workers: 2, threads: 2, lanes: true) do |server|
      threads = [1, 2].map { |i| Thread.new { 5.times { get(server.port, "/#{i}") } } }
      threads.each(&:join)
      json = JSON.parse(control_get(server, "/stats").body)
      assert_equal server.stats[:lane_depths].size, json["lane_depths"].size
      assert_equal 4, json["lane_depths"].size, "one per worker thread"
      assert(json["lane_depths"].all? { |n| n.is_a?(Integer) && n >= 0 })
      assert_equal [0, 1], json["per_worker"].map { |w| w["worker"] }
      assert(json["per_worker"].all? { |w| w["lane"].is_a?(Integer) })
      text = control_get(server, "/metrics").body
      assert_match(/^# TYPE kino_worker_lane_depth gauge$/, text)
      assert_match(/^kino_worker_lane_depth\{worker="0"\} \d+$/, text)
      assert_match(/^kino_worker_lane_depth\{worker="1"\} \d+$/, text)
    end
    serve(APP, control_bind: "127.0.0.1:0", workers: 1) do |server|
      wait_ready(server) # its rows exist once its threads serve (start returns before)
      json = JSON.parse(control_get(server, "/stats").body)
      refute json.key?("lane_depths")
      assert_equal [0], json["per_worker"].map { |w| w["lane"] }
      assert_equal [1, 1, 0, 0], json.values_at("active_workers", "max_workers", "quarantined", "quarantines")
    end
  end

  # A module app: shareable, so :ractor mode can run it.
  module Shareable
    def self.call(_env)
      [200, { "content-type" => "text/plain" }, ["ok"]]
    end
  end

  # /ready says 503 "booting" until a worker has run its on_worker_boot
  # hook and serves -- in :ractor mode inside the ractors -- then 200.
  def test_ready_waits_for_the_workers_boot
    %i[ractor threaded].each do |mode|
      Dir.mktmpdir do |dir|
        gate = File.join(dir, "gate").freeze
        hook = Ractor.make_shareable(nil.instance_eval { ->(_worker) { sleep 0.01 until File.exist?(gate) } })
        serve(Shareable, lint: false, mode: mode, workers: 2, on_error: nil, on_worker_boot: hook,
                         control_bind: "127.0.0.1:0") do |server|
          booting = control_get(server, "/ready")
          assert_equal [503, "booting\n"], [booting.status, booting.body], mode
          assert_equal "booting", JSON.parse(control_get(server, "/stats").body)["state"], mode
          assert_match(/^kino_ready 0$/, control_get(server, "/metrics").body, mode)
          File.write(gate, "")
          ready = wait_ready(server)
          assert_equal [200, "ready\n"], [ready.status, ready.body], mode
          assert_equal "running", JSON.parse(control_get(server, "/stats").body)["state"], mode
          assert_equal 200, get(server.port).status, mode
        end
      end
    end
  end

  # /ready once a worker serves (Server#start returns before the
  # workers' threads enter their serve loop).
  def wait_ready(server)
    ready = nil
    wait_until { (ready = control_get(server, "/ready")).status == 200 }
    ready
  end

  def test_token_guards_stats_and_metrics_but_not_probes
    serve(APP, control_bind: "127.0.0.1:0", control_token: "s3cret-token") do |server|
      assert_equal 200, control_get(server, "/live").status
      assert_equal 200, wait_ready(server).status
      %w[/stats /metrics].each do |path|
        denied = control_get(server, path)
        assert_equal 401, denied.status
        assert_equal "Bearer", denied["www-authenticate"]
        assert_equal 401, control_get(server, path, "Authorization" => "Bearer s3cret-toke").status
        assert_equal 401, control_get(server, path, "Authorization" => "Bearer s3cret-token2").status
        assert_equal 401, control_get(server, path, "Authorization" => "Basic s3cret-token").status
        assert_equal 200, control_get(server, path, "Authorization" => "Bearer s3cret-token").status
        assert_equal 200, control_get(server, path, "authorization" => "bearer s3cret-token").status
      end
    end
  end

  def test_ready_is_503_while_draining
    release = Queue.new
    slow = lambda { |_env|
      release.pop
      [200, {}, ["done"]]
    }
    serve(slow, control_bind: "127.0.0.1:0") do |server|
      port = control_port(server)
      client = Thread.new { get(server.port) }
      sleep 0.01 until server.stats[:in_flight] == 1
      stopper = Thread.new { server.shutdown(timeout: 10) }
      ready = nil
      Timeout.timeout(10) do
        loop do
          ready = get(port, "/ready")
          break if ready.status == 503

          sleep 0.01
        end
      end
      assert_equal [503, "draining\n"], [ready.status, ready.body]
      assert_equal 200, get(port, "/live").status
      assert_equal "draining", JSON.parse(get(port, "/stats").body)["state"]
      assert_match(/^kino_ready 0$/, get(port, "/metrics").body)
      release << true
      assert_equal 200, client.value.status
      stopper.join
      assert_raises(Errno::ECONNREFUSED) { TCPSocket.new("127.0.0.1", port) }
    end
  end

  def test_limits_oversized_head_and_slow_clients
    serve(APP, control_bind: "127.0.0.1:0") do |server|
      port = control_port(server)
      big = raw(port, "GET /live HTTP/1.1\r\nHost: x\r\nX: #{'a' * 5000}\r\n\r\n")
      assert_equal 431, parse_responses(big).first.status
      # 16 silent connections fill its slots; a 17th waits in the backlog
      # and is answered once the silent ones time out (5 s), not refused:
      # when its answer comes, a silent one has been closed (else they
      # would all stay open 5 s more)
      silent = Array.new(16) { TCPSocket.new("127.0.0.1", port) }
      response = parse_responses(raw(port, "GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", timeout: 20)).first
      assert_equal 200, response&.status
      assert silent.any? { |s| closed_without_a_byte?(s, 1) }, "answered before a silent connection made way"
      silent.each { |s| assert closed_without_a_byte?(s, 10), "a silent connection outlived its deadline" }
    ensure
      silent&.each(&:close)
    end
  end

  def test_unix_socket_control_plane
    Dir.mktmpdir do |dir|
      path = File.join(dir, "control.sock")
      serve(APP, control_bind: "unix://#{path}") do |server|
        assert_equal "unix://#{path}", server.control_url
        assert_equal 200, get(server.port).status # a worker serves: /ready is 200 from now on
        socket = UNIXSocket.new(path)
        socket.write("GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
        assert_equal 200, parse_responses(read_all(socket)).first.status
        socket.close
      end
      refute File.exist?(path)
    end
  end

  def test_invalid_control_options
    ["", "nohost", "h:99999", 5].each do |bad|
      error = assert_raises(ArgumentError) { Kino::Server.new(APP, mode: :threaded, control_bind: bad) }
      assert_match(/control_bind/, error.message)
    end
    ["", "two words", 5].each do |bad|
      error = assert_raises(ArgumentError) { Kino::Server.new(APP, mode: :threaded, control_token: bad) }
      assert_match(/control_token/, error.message)
    end
  end

  # Every worker spins in Ruby code (holding the GVL whenever it runs): the
  # control plane, a C thread, still answers at once.
  def test_answers_while_every_worker_is_stuck
    Dir.mktmpdir do |dir|
      File.write(File.join(dir, "config.ru"), <<~RUBY)
        run ->(env) { x = 0; loop { x += 1 } }
      RUBY
      cmd = [RbConfig.ruby, KINO, "-m", "threaded", "-w", "1", "-t", "2", "-p", "0", "-C", File.join(dir, "kino.rb")]
      File.write(File.join(dir, "kino.rb"), "control_bind \"127.0.0.1:0\"\nshutdown_timeout 1\n")
      with_server(cmd, dir: dir) do |port, banner|
        cport = banner[%r{control: http://127\.0\.0\.1:(\d+)}, 1].to_i
        stuck = Array.new(2) do
          s = TCPSocket.new("127.0.0.1", port)
          s.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
          s
        end
        Timeout.timeout(10) { sleep 0.02 until JSON.parse(get(cport, "/stats").body)["in_flight"] == 2 }
        5.times do
          assert_equal 200, get(cport, "/live").status
          assert_match(/^kino_requests_in_flight 2$/, get(cport, "/metrics").body)
        end
      ensure
        stuck&.each(&:close)
      end
    end
  end
end

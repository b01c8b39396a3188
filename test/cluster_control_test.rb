# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"
require "json"

# The control plane of :cluster mode lives in the master and shows what
# the worker processes counted, added up (the master publishes
# snapshots into it, kino_control.c section 4): one per_worker row per
# process, /ready once a worker serves, answers while every worker is
# stopped, and a control socket the workers do not hold.
class ClusterControlTest < Minitest::Test
  include TempDir
  include KinoTest
  include KinoProcess

  def setup
    File.write(File.join(@dir, "config.ru"), <<~RUBY)
      gate = ENV["KINO_TEST_GATE"]
      sleep 0.02 until gate.nil? || File.exist?(gate) # preload false: each worker waits here
      run ->(env) { [200, { "content-type" => "text/plain" }, ["\#{Process.pid}"]] }
    RUBY
    File.write(File.join(@dir, "kino.rb"), "control_bind \"127.0.0.1:0\"\nshutdown_timeout 5\n")
  end

  def cluster(*flags, env: {}, signal: "TERM", &block)
    cmd = [RbConfig.ruby, KINO, "-m", "cluster", "-w", "2", "-t", "2", "-p", "0", "-C", "kino.rb", *flags]
    with_server(cmd, dir: @dir, env: env, signal: signal) do |port, banner, pid, out|
      @cport = banner[%r{control: http://127\.0\.0\.1:(\d+)}, 1].to_i
      block.call(port, pid, out)
    end
  end

  def stats
    JSON.parse(get(@cport, "/stats").body)
  end

  # Wait until the /stats JSON satisfies the block; returns it.
  def stats_until(timeout = 20)
    json = nil
    Timeout.timeout(timeout) do
      sleep 0.05 until yield(json = stats)
    end
    json
  rescue Timeout::Error
    flunk "never: #{json.inspect}"
  end

  def test_stats_and_metrics_add_up_the_worker_processes
    cluster do |port, pid|
      stats_until { |s| s["per_worker"].all? { |w| w["state"] == "serving" } }
      7.times { assert_equal 200, http_get(port).first }
      json = stats
      assert_equal %w[cluster running], json.values_at("mode", "state")
      assert_equal 7, json["served"]
      assert_equal 7, json["queue_wait_ms"].values.sum
      assert_operator json["stats_age_ms"], :<, 5000
      rows = json["per_worker"]
      assert_equal [0, 1], rows.map { |w| w["worker"] }
      assert_equal child_pids(pid), rows.map { |w| w["pid"] }.sort, "one row per worker process"
      assert_equal 7, rows.sum { |w| w["served"] }
      assert_equal 7, rows.sum { |w| w["accepted"] }

      metrics = get(@cport, "/metrics").body
      assert_match(/^kino_requests_served_total 7$/, metrics)
      assert_match(/^kino_info\{version="[^"]+",mode="cluster"\} 1$/, metrics)
      assert_match(/^kino_queue_wait_seconds_count 7$/, metrics)
      assert_equal 7, metrics.scan(/^kino_worker_requests_served_total\{worker="[01]"\} (\d+)$/).flatten.sum(&:to_i)
      assert_equal 2, metrics.scan(/^kino_worker_serving\{worker="[01]"\} 1$/).size
    end
  end

  # /ready: 503 "booting" until a worker process serves (here: until the
  # app, loaded in each worker, may finish loading), then 200; 503
  # "draining" from TERM on.
  def test_ready_once_a_worker_serves_and_not_while_draining
    gate = File.join(@dir, "gate")
    File.write(File.join(@dir, "kino.rb"), "preload false\n", mode: "a")
    cluster(env: { "KINO_TEST_GATE" => gate }, signal: nil, &lambda { |port, pid, _out|
      booting = get(@cport, "/ready")
      assert_equal [503, "booting\n"], [booting.status, booting.body]
      assert_equal 200, get(@cport, "/live").status
      assert_equal %w[booting booting], stats["per_worker"].map { |w| w["state"] }
      File.write(gate, "")
      Timeout.timeout(20) { sleep 0.05 until get(@cport, "/ready").status == 200 }
      assert_equal 200, http_get(port).first
      slow = TCPSocket.new("127.0.0.1", port) # held open: the drain waits for it
      Process.kill("TERM", pid)
      Timeout.timeout(10) { sleep 0.02 until get(@cport, "/ready").status == 503 }
      assert_equal "draining\n", get(@cport, "/ready").body
      slow.close
    })
  end

  # Both workers stopped (SIGSTOP): the control plane still answers,
  # each row unresponsive with its last counters (never fewer).
  def test_answers_while_every_worker_is_stopped
    cluster do |port, pid|
      stats_until { |s| s["per_worker"].all? { |w| w["state"] == "serving" } }
      5.times { http_get(port) }
      assert_equal 5, stats["served"]
      workers = child_pids(pid)
      workers.each { |child| Process.kill("STOP", child) }
      begin
        assert_equal 200, get(@cport, "/live").status
        json = stats_until { |s| s["per_worker"].all? { |w| w["state"] == "unresponsive" } }
        assert_equal 5, json["served"]
        assert_equal 5, json["per_worker"].sum { |w| w["served"] }
        assert_match(/^kino_worker_serving\{worker="0"\} 0$/, get(@cport, "/metrics").body)
      ensure
        workers.each { |child| Process.kill("CONT", child) }
      end
      stats_until { |s| s["per_worker"].all? { |w| w["state"] == "serving" } }
    end
  end

  # The master's control socket (and its other private descriptors) are
  # closed in each worker process: the only sockets and pipes a worker
  # shares with the master are the app's listener and what both got from
  # this test (stdout, stderr).
  def test_workers_do_not_hold_the_control_socket
    cluster do |port, pid|
      # both workers booted (their fds are final); whether each answers
      # the master's stats question in time is another test's business
      stats_until { |s| s["per_worker"].size == 2 && s["per_worker"].none? { |w| w["state"] == "booting" } }
      ours = fd_targets(Process.pid) + fd_targets(pid, only: [1, 2])
      control = listening_inode(@cport)
      listener = listening_inode(port)
      master = fd_targets(pid)
      assert_includes master, "socket:[#{control}]"
      child_pids(pid).each do |child|
        worker = fd_targets(child)
        refute_includes worker, "socket:[#{control}]", "worker #{child} holds the control socket"
        shared = (worker & master) - ours
        assert_equal ["socket:[#{listener}]"], shared.grep(/\A(socket|pipe):/), "worker #{child} shares #{shared}"
      end
    end
  end

  def fd_targets(pid, only: nil)
    Dir.children("/proc/#{pid}/fd").filter_map do |fd|
      next if only && !only.include?(fd.to_i)

      File.readlink("/proc/#{pid}/fd/#{fd}")
    rescue Errno::ENOENT
      nil
    end
  end

  # The inode of the socket listening on 127.0.0.1:+port+ (/proc/net/tcp).
  def listening_inode(port)
    File.readlines("/proc/net/tcp").drop(1).each do |line|
      fields = line.split
      local, state, inode = fields[1], fields[3], fields[9]
      return inode.to_i if state == "0A" && local.split(":").last.to_i(16) == port
    end
    flunk "nothing listens on port #{port}"
  end
end

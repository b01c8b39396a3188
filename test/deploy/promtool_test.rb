# frozen_string_literal: true

require_relative "../helper"
require_relative "../process_helper"
require "json"
require "open3"
require "tmpdir"

# /metrics against Prometheus' own checker: `promtool check metrics` must
# find neither a parse error (exit 1) nor a lint problem (exit 3), with
# traffic of every kind counted (served, 4xx from the engine, a respawn).
class PromtoolTest < Minitest::Test
  include KinoTest
  include KinoProcess

  def promtool_check(metrics)
    out, status = Open3.capture2e({ "LD_PRELOAD" => nil }, "promtool", "check", "metrics", stdin_data: metrics)
    assert status.success?, "promtool check metrics (exit #{status.exitstatus}):\n#{out}\n#{metrics}"
  end

  # The counter samples of a scrape: {"name{labels}" => value}, for the
  # families typed counter (and a histogram's buckets, count and sum).
  def counter_samples(metrics)
    counters = metrics.scan(/^# TYPE (\S+) counter$/).flatten
    histograms = metrics.scan(/^# TYPE (\S+) histogram$/).flatten
    metrics.lines.grep_v(/^#/).to_h { |line| line.split }.select do |sample, _|
      name = sample[/\A[a-z_]+/]
      counters.include?(name) || histograms.any? { |h| name.start_with?("#{h}_") }
    end.transform_values(&:to_f)
  end

  # :cluster: a worker process killed (no final report) and replaced
  # leaves every counter, total and per worker, where it was or higher.
  def test_cluster_counters_never_go_back_when_a_worker_is_killed
    Dir.mktmpdir do |dir|
      File.write(File.join(dir, "config.ru"), "run ->(env) { [200, {}, [Process.pid.to_s]] }\n")
      File.write(File.join(dir, "kino.rb"), "control_bind \"127.0.0.1:0\"\n")
      cmd = [RbConfig.ruby, KINO, "-m", "cluster", "-w", "2", "-t", "2", "-p", "0", "-C", "kino.rb"]
      with_server(cmd, dir: dir) do |port, banner|
        cport = banner[%r{control: http://127\.0\.0\.1:(\d+)}, 1].to_i
        stats = -> { JSON.parse(get(cport, "/stats").body) }
        Timeout.timeout(20) { sleep 0.05 until stats.call["per_worker"].all? { |w| w["state"] == "serving" } }
        pids = {}
        Timeout.timeout(20) do # requests until both workers served some
          until pids.size == 2
            pids[http_get(port).last] = true
          end
        end
        before = get(cport, "/metrics").body
        promtool_check(before)
        victim = stats.call["per_worker"].max_by { |w| w["served"] }
        Process.kill("KILL", victim["pid"])
        Timeout.timeout(20) do
          sleep 0.05 until stats.call["per_worker"].all? { |w| w["state"] == "serving" && w["pid"] != victim["pid"] }
        end
        after = get(cport, "/metrics").body
        promtool_check(after)
        assert_match(/^kino_worker_respawns_total 1$/, after)
        was = counter_samples(before)
        now = counter_samples(after)
        assert_includes was.keys, "kino_worker_requests_served_total{worker=\"#{victim['worker']}\"}"
        was.each do |sample, value|
          assert now.key?(sample), "#{sample} is gone after the respawn"
          assert_operator now[sample], :>=, value, "#{sample} went down from #{value} to #{now[sample]}"
        end
      end
    end
  end

  def test_metrics_pass_promtool_check_metrics
    crash = lambda { |env|
      raise NoMemoryError, "worker-killing crash" if env["PATH_INFO"] == "/crash" # ends the worker thread
      [200, {}, ["ok"]]
    }
    serve(crash, quiet: true, control_bind: "127.0.0.1:0", control_token: "t0ken", workers: 2, lanes: true,
                 max_workers: 3, quarantine_timeout: 30) do |server|
      5.times { assert_equal 200, get(server.port).status }
      raw(server.port, "BAD\r\n\r\n")
      get(server.port, "/crash")
      Timeout.timeout(10) { sleep 0.01 until server.stats[:respawns] == 1 }
      cport = server.control_url[/\d+\z/].to_i
      metrics = get(cport, "/metrics", "Authorization" => "Bearer t0ken").body
      assert_match(/^kino_worker_respawns_total 1$/, metrics)
      assert_match(/^kino_engine_errors_total [1-9]$/, metrics) # the 400, and the crash's 500
      assert_match(/^kino_max_workers 3$/, metrics) # the pool's numbers and the lanes (doc/pool.md)
      %w[kino_active_workers kino_quarantined_workers kino_quarantines_total kino_scale_ups_total
         kino_scale_downs_total].each { |name| assert_match(/^#{name} \d+$/, metrics) }
      assert_match(/^kino_worker_lane_depth\{worker="1"\} \d+$/, metrics)
      out, status = Open3.capture2e({ "LD_PRELOAD" => nil }, "promtool", "check", "metrics", stdin_data: metrics)
      assert status.success?, "promtool check metrics (exit #{status.exitstatus}):\n#{out}\n#{metrics}"
    end
  end
end

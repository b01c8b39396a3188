# frozen_string_literal: true

require_relative "../helper"
require "open3"

# /metrics against Prometheus' own checker: `promtool check metrics` must
# find neither a parse error (exit 1) nor a lint problem (exit 3), with
# traffic of every kind counted (served, 4xx from the engine, a respawn).
class PromtoolTest < Minitest::Test
  include KinoTest

  def test_metrics_pass_promtool_check_metrics
    crash = lambda { |env|
      raise NoMemoryError, "worker-killing crash" if env["PATH_INFO"] == "/crash" # ends the worker thread
      [200, {}, ["ok"]]
    }
    serve(crash, quiet: true, control_bind: "127.0.0.1:0", control_token: "t0ken", workers: 2) do |server|
      5.times { assert_equal 200, get(server.port).status }
      raw(server.port, "BAD\r\n\r\n")
      get(server.port, "/crash")
      Timeout.timeout(10) { sleep 0.01 until server.stats[:respawns] == 1 }
      cport = server.control_url[/\d+\z/].to_i
      metrics = get(cport, "/metrics", "Authorization" => "Bearer t0ken").body
      assert_match(/^kino_worker_respawns_total 1$/, metrics)
      assert_match(/^kino_engine_errors_total [1-9]$/, metrics) # the 400, and the crash's 500
      out, status = Open3.capture2e({ "LD_PRELOAD" => nil }, "promtool", "check", "metrics", stdin_data: metrics)
      assert status.success?, "promtool check metrics (exit #{status.exitstatus}):\n#{out}\n#{metrics}"
    end
  end
end

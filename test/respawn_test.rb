# frozen_string_literal: true

require_relative "helper"

# Worker replacement: a request that kills its worker costs one
# replacement, never a back-off (issue 12 item 4); only workers that die
# while booting are replaced after a growing delay.
class RespawnTest < Minitest::Test
  include KinoTest

  # NotImplementedError is a ScriptError, not a StandardError: it ends the
  # worker that runs it. A module, so it serves in :ractor mode too.
  module Killer
    def self.call(env)
      raise NotImplementedError, "worker killer" if env["PATH_INFO"] == "/kill"

      [200, { "content-type" => "text/plain" }, ["alive"]]
    end
  end

  # A normal client keeps being answered while another hits the killing
  # path over and over (every worker dies many times over); every killed
  # worker is replaced and counted. A back-off on those replacements
  # (0.1 s doubling up to 5 s, as it once was) leaves the normal client
  # waiting seconds.
  def trickle(mode, **options)
    serve(Killer, lint: false, quiet: true, mode: mode, on_error: nil, **options) do |server|
      stop = false
      kills = 0
      attacker = Thread.new do
        until stop
          kills += 1 if get(server.port, "/kill")&.status == 500
          sleep 0.02
        end
      end
      answered = []
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 4
      while Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline
        started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        response = get(server.port, "/")
        answered << [response&.status, response&.body, Process.clock_gettime(Process::CLOCK_MONOTONIC) - started]
      end
      stop = true
      attacker.join(10)
      failed = answered.reject { |status, body, _| status == 200 && body == "alive" }
      assert_empty failed, "every normal request is answered"
      slowest = answered.map(&:last).max
      assert_operator slowest, :<, 1.5, "no normal request waits for a back-off (slowest #{slowest.round(3)} s)"
      assert_operator kills, :>=, 20, "the attack ran"
      assert wait_until { server.stats[:respawns] >= kills }, "#{server.stats[:respawns]} respawns for #{kills} kills"
    end
  end

  def test_worker_killing_requests_do_not_stop_threaded_mode
    trickle(:threaded, workers: 1, threads: 1)
  end

  def test_worker_killing_requests_do_not_stop_ractor_mode
    trickle(:ractor, workers: 1, threads: 1)
  end

  # A worker whose boot hook kills it every time is retried with a growing
  # delay, not in a tight loop (the delay starts at 0.1 s and doubles).
  def test_a_worker_that_dies_booting_backs_off
    hook = ->(_worker) { raise NotImplementedError, "broken boot hook" }
    serve(->(_env) { [200, {}, ["x"]] }, quiet: true, workers: 1, threads: 1, on_worker_boot: hook) do |server|
      sleep 1.0
      assert_operator server.stats[:respawns], :<=, 6, "respawns within 1 s: 0.1 + 0.2 + 0.4 s of back-off at least"
      assert_operator server.stats[:respawns], :>=, 2
    end
  end

  def test_backoff_grows_only_for_boot_deaths
    backoff = Kino::Backoff.new
    assert_equal [0.1, 0.2, 0.4], Array.new(3) { backoff.delay(:a, true) }
    assert_equal 0.0, backoff.delay(:a, false)
    assert_equal 0.1, backoff.delay(:a, true)
    assert_equal 5.0, Array.new(10) { backoff.delay(:b, true) }.last
    assert_equal 0.0, backoff.delay(:c, false)
  end
end

# frozen_string_literal: true

require_relative "helper"

# Server#stats lists every worker, however many there are.
class WorkerStatsTest < Minitest::Test
  include KinoTest

  # More worker threads than the binding's first guess (256 rows): each
  # still gets its row once it has started.
  def test_every_worker_has_a_row
    workers = 260
    serve(->(_env) { [200, {}, ["ok"]] }, workers: workers, threads: 1) do |server|
      rows = []
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 30
      loop do
        rows = server.stats[:per_worker]
        break if rows.size >= workers || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

        sleep 0.05
      end
      assert_equal (0...workers).to_a, rows.map { |row| row[:worker] }
      assert_equal "ok", get(server.port).body
    end
  end
end

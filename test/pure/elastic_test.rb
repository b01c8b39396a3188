# frozen_string_literal: true

require_relative "helper"
require "kino/elastic"

# Kino::Elastic: when an elastic pool grows and shrinks, look by look.
class PureElasticTest < Minitest::Test
  def elastic(after: 1.0)
    Kino::Elastic.new(workers: 2, max: 4, after: after, threads: 3)
  end

  def test_grows_only_on_a_backlog_seen_twice_in_a_row_and_never_past_max
    e = elastic
    assert_nil e.decide(0.0, queued: 5, in_flight: 6, active: 2)
    assert_equal :grow, e.decide(0.25, queued: 5, in_flight: 6, active: 2)
    assert_nil e.decide(0.5, queued: 5, in_flight: 9, active: 3), "the backlog is counted again from the start"
    assert_equal :grow, e.decide(0.75, queued: 5, in_flight: 9, active: 3)
    assert_nil e.decide(1.0, queued: 5, in_flight: 12, active: 4)
    assert_nil e.decide(1.25, queued: 5, in_flight: 12, active: 4), "max_workers reached"
    e = elastic
    assert_nil e.decide(0.0, queued: 1, in_flight: 6, active: 2)
    assert_nil e.decide(0.25, queued: 0, in_flight: 6, active: 2)
    assert_nil e.decide(0.5, queued: 1, in_flight: 6, active: 2), "a momentary backlog is not a reason"
  end

  def test_shrinks_after_being_idle_for_after_seconds_one_worker_per_look
    e = elastic(after: 1.0)
    assert_nil e.decide(10.0, queued: 0, in_flight: 0, active: 4)
    assert_nil e.decide(10.5, queued: 0, in_flight: 6, active: 4), "the base workers could carry 6"
    assert_equal :shrink, e.decide(11.0, queued: 0, in_flight: 0, active: 4)
    assert_equal :shrink, e.decide(11.25, queued: 0, in_flight: 0, active: 3)
    assert_nil e.decide(11.5, queued: 0, in_flight: 0, active: 2), "never below workers"
  end

  # More in flight than 2 workers x 3 threads, or a backlog, at 0.9 s.
  def test_load_beyond_the_base_or_a_backlog_restarts_the_idle_clock
    [{ queued: 0, in_flight: 7 }, { queued: 1, in_flight: 6 }].each do |load|
      e = elastic(after: 1.0)
      assert_nil e.decide(0.0, queued: 0, in_flight: 0, active: 3)
      assert_nil e.decide(0.9, **load, active: 3)
      assert_nil e.decide(1.5, queued: 0, in_flight: 0, active: 3), load.inspect
      assert_equal :shrink, e.decide(2.5, queued: 0, in_flight: 0, active: 3)
    end
  end

  def test_rebase_moves_the_floor
    e = elastic(after: 0.0)
    e.rebase(3)
    assert_nil e.decide(0.0, queued: 0, in_flight: 0, active: 3)
    assert_equal :shrink, e.decide(0.0, queued: 0, in_flight: 0, active: 4)
  end
end

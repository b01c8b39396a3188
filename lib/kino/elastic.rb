# frozen_string_literal: true

module Kino
  # Decides when an elastic pool (max_workers) grows or shrinks, from what
  # the pool's watcher sees at each look (Pool::TICK apart). It only
  # decides; the pool starts or retires the worker.
  #
  # Grow: requests were queued at two looks in a row (so a backlog that
  # outlives one look, never a momentary one), and fewer than +max+
  # workers serve. One worker per decision; the backlog must be seen twice
  # again before the next, which gives the new worker time to boot.
  #
  # Shrink: more than +workers+ serve, and for +after+ seconds nothing was
  # queued at any look and no more requests were in flight than the base
  # +workers+ alone could hold (+threads+ each). Then one worker per look
  # until the pool is back to +workers+ or the load returns.
  class Elastic
    attr_reader :workers, :max

    def initialize(workers:, max:, after:, threads:)
      @max = max
      @after = after
      @threads = threads
      @backlog = 0
      @idle_since = nil
      rebase(workers)
    end

    # The pool now keeps +workers+ without a backlog (:cluster's TTIN and
    # TTOU change it).
    def rebase(workers)
      @workers = workers
      @capacity = workers * @threads
    end

    # :grow, :shrink or nil, for a look at +now+ (seconds, monotonic) that
    # saw +queued+ requests waiting and +in_flight+ being served by
    # +active+ workers.
    def decide(now, queued:, in_flight:, active:)
      if queued.positive?
        @idle_since = nil
        @backlog += 1
        return nil unless @backlog >= 2 && active < @max

        @backlog = 0
        return :grow
      end
      @backlog = 0
      unless active > @workers && in_flight <= @capacity
        @idle_since = nil
        return nil
      end
      @idle_since ||= now
      now - @idle_since >= @after ? :shrink : nil
    end
  end
end

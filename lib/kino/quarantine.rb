# frozen_string_literal: true

module Kino
  # Decides which workers to quarantine (quarantine_timeout), from what the
  # pool's watcher sees at each look. It only decides and reports; the
  # pool stops giving the worker requests and starts one in its place.
  #
  # A worker is stuck when one request has held it (any of its threads)
  # for +timeout+ seconds or more, or -- a :cluster worker process -- when
  # it has not answered the master for that long (its interpreter lock is
  # held by a C call). At most +max+ workers are in quarantine at once:
  # past that a stuck worker is reported, once, and keeps its place.
  class Quarantine
    # What a look saw of one serving worker: the longest time a request
    # has held one of its threads, and how long it has not answered
    # (seconds; 0.0 when it answers, as threads and ractors always do).
    Seen = Struct.new(:held, :silent)

    attr_reader :timeout, :max

    def initialize(timeout:, max:)
      @timeout = timeout
      @max = max
      @reported = {} # worker => true: said "stuck but not replaced" once
    end

    # The workers to quarantine now, as [worker, why] pairs, given +seen+
    # (worker number => Seen, serving workers only) and the number of
    # workers already in quarantine. Stuck workers past the cap are
    # logged once (until they are no longer stuck).
    def pick(seen, in_quarantine)
      stuck = seen.filter_map { |worker, look| (why = why(look)) && [worker, why] }
      @reported.select! { |worker, _| stuck.any? { |w, _| w == worker } }
      room = [@max - in_quarantine, 0].max
      picked = stuck.first(room)
      stuck.drop(room).each { |worker, why| refuse(worker, why) }
      picked
    end

    private

    def why(look)
      if look.silent >= @timeout
        format("has not answered for %.0f s", look.silent)
      elsif look.held >= @timeout
        format("has been held by one request for %.0f s", look.held)
      end
    end

    def refuse(worker, why)
      return if @reported[worker]

      @reported[worker] = true
      Log.warn("main", "worker #{worker} #{why} (quarantine_timeout #{@timeout} s), but #{@max} " \
                       "worker#{'s' if @max != 1} #{@max == 1 ? 'is' : 'are'} in quarantine already " \
                       "(quarantine_max): it keeps its place")
    end
  end
end

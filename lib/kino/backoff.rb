# frozen_string_literal: true

module Kino
  # Decides how long a pool waits before replacing a worker that died.
  #
  # A worker that died while booting (its on_worker_boot hook or its
  # setup failed: out of descriptors, a broken hook, a fork that cannot
  # load the app) would fail again at once, so its replacement waits 0.1 s,
  # then 0.2 s, 0.4 s ... up to 5 s, per slot. A worker that died while
  # serving -- a request raised an Exception that is not a StandardError,
  # or a child process was killed -- is replaced at once and resets its
  # slot's delay: a trickle of worker-killing requests must cost one
  # replacement each, never an outage while the queue grows.
  class Backoff
    FIRST = 0.1
    MAX = 5.0
    STEP = 0.05 # how often a waiting pool checks whether it is stopping

    def initialize
      @delay = Hash.new(0.0)
    end

    # The wait before replacing +slot+: the next step of its back-off when
    # it died +booting+, else 0 (and its back-off starts over).
    def delay(slot, booting)
      @delay[slot] = booting ? [[@delay[slot] * 2, FIRST].max, MAX].min : 0.0
    end

    # Sleeps delay(slot, booting) seconds, or less once the block (when
    # given) returns true: a pool that is stopping does not wait.
    def wait(slot, booting)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + delay(slot, booting)
      loop do
        left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
        break if left <= 0 || (block_given? && yield)

        sleep [left, STEP].min
      end
    end
  end
end

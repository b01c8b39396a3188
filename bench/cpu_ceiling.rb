# frozen_string_literal: true

# The ceiling for /cpu on this machine: N ractors computing fib(20) (the
# bench app's /cpu work) in a bare loop for SECONDS, no server and no
# sockets. No server can answer /cpu faster than this, whatever its
# overhead.
#
#   ruby bench/cpu_ceiling.rb [N=CPUs] [SECONDS=5]
require "etc"
require_relative "app"

Warning[:experimental] = false
count = Integer(ARGV[0] || Etc.nprocessors)
seconds = Float(ARGV[1] || 5)
clock = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
started = clock.call
workers = Array.new(count) do
  Ractor.new(seconds) do |limit|
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    done = 0
    while Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0 < limit
      BenchApp.fib(20)
      done += 1
    end
    done
  end
end
total = workers.sum { |w| w.respond_to?(:value) ? w.value : w.take } # Ruby 4.0: value
printf("%d ractors: %.0f fib(20)/s\n", count, total / (clock.call - started))

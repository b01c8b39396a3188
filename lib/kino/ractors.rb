# frozen_string_literal: true

module Kino
  # The workers of :ractor mode: +workers+ Ractors, each running +threads+
  # native serve loops (the same loop as :threaded mode, kino_ruby.c). Only
  # the shareable app, the shareable error handler and integers cross into
  # a worker ractor; the env is built inside it.
  #
  # The supervisor (Pool) waits for any worker to end with Ractor.select --
  # the same call on Ruby 3.x (where it takes the ractor's final value)
  # and 4.0 (where it waits for termination). A worker that crashed (an
  # Exception from the app that is not a StandardError, or Thread#kill)
  # has already answered its in-flight requests with 500 on the way out;
  # the supervisor starts a new one and counts it in #respawns.
  #
  # A crashed worker does not end with an exception: it returns a
  # description of it. Ruby 3.3's Ractor.select spins, holding the main
  # ractor's GVL, once a selected ractor has died with an exception, so the
  # exception never leaves the ractor.
  class RactorPool < Pool
    include Slots

    def initialize(...)
      super
      setup_slots
      @bell = nil
    end

    # Once the server is stopped every worker leaves its serve loop after
    # its current request; wait up to +grace+ seconds for that. A ractor
    # cannot be killed from outside: one still in app code (wedged, or in
    # quarantine) is left to end with the process, and said so, and the
    # supervisor stops waiting for it: at exit Ruby terminates every
    # ractor, and on Ruby 3.3 a Ractor.select waiting for one that ends
    # that way spins with the GVL held, so the process never exited (TERM
    # with a request stuck in the app).
    def stop(grace: 1.0)
      @stopping = true
      stop_watch
      ring
      return self if @supervisor.nil? || @supervisor.join(grace)

      left = @membership.synchronize { @live.keys.map { |slot| worker_of(slot) } }.uniq.sort
      Log.warn("main", "worker ractor#{'s' if left.size > 1} #{left.join(', ')} still in a request after " \
                       "the drain: a ractor cannot be stopped from outside, so it is left behind (it ends " \
                       "with the process)")
      @abandoned = true
      ring
      @supervisor.join(grace)
      self
    end
    # The body of a worker ractor: threads - 1 helper threads and this
    # one run the serve loop. A helper that dies takes the ractor with it
    # (abort_on_exception), so the ractor is the unit that is replaced.
    # Runs the (shareable) on_worker_boot hook first. Returns nil when the
    # server stopped, else [booting, "Class: message"] of the crash, where
    # booting says it happened before the serve loops ran (the hook, or the
    # binding's setup, which raises Kino::Error).
    def self.work(server_id, app, handler, threads, index, boot_hook)
      Thread.current[:kino_mode] = :ractor
      Thread.current.report_on_exception = false
      serving = false
      Hooks.call(boot_hook, :on_worker_boot, index)
      serving = true
      helpers = Array.new(threads - 1) do
        Thread.new do
          Thread.current[:kino_mode] = :ractor
          Thread.current.report_on_exception = false
          Native.serve(server_id, app, handler, index)
        end.tap { |thread| thread.abort_on_exception = true }
      end
      Native.serve(server_id, app, handler, index)
      helpers.each(&:join)
      nil
    rescue Exception => e # rubocop:disable Lint/RescueException
      [!serving || e.is_a?(Kino::Error), "#{e.class}: #{e.message}"].freeze
    end

    private

    def slots_per_worker
      1
    end

    def spawn(slot)
      @live[slot] = quietly do
        Ractor.new(@server_id, @app, @handler, @threads, worker_of(slot), @hooks[:on_worker_boot],
                   name: "kino-worker-#{worker_of(slot)}") do |id, app, handler, threads, i, boot|
          Kino::RactorPool.work(id, app, handler, threads, i, boot)
        end
      end
      ring # the supervisor waits for this one too from now on
    end

    # The next worker to end: [slot, WorkerCrash or nil, booting]; nil
    # once every worker has ended, or once #stop gave up on those left.
    # The supervisor waits for any worker and for the bell, which a new
    # worker rings (#ring) so that the wait starts again with it included.
    def next_exit
      loop do
        return nil if @abandoned
        @bell ||= quietly { Ractor.new { Ractor.receive } } # before the list: a later spawn rings it
        ractors = @membership.synchronize { @live.values }
        if ractors.empty?
          ring
          return nil
        end
        ractor, crash = wait_any(ractors + [@bell])
        if ractor.equal?(@bell)
          @bell = nil
          next # (and out, when #stop abandoned the rest)
        end
        slot = @membership.synchronize { @live.key(ractor).tap { |s| @live.delete(s) if s } }
        next unless slot
        return [slot, nil, false] unless crash # a normal return: the server stopped, or it retired

        return [slot, WorkerCrash.new(crash[1]), crash[0]]
      end
    end

    # Ends the supervisor's current wait (see #next_exit).
    def ring
      @bell&.send(:ring)
    rescue Ractor::ClosedError
      nil # rung already
    end

    # The next worker to end and what it returned. RemoteError only if
    # something escaped RactorPool.work (counted as a crash while serving).
    def wait_any(ractors)
      Ractor.select(*ractors)
    rescue Ractor::RemoteError => e
      [e.ractor, [false, "#{e.cause.class}: #{e.cause&.message}"]]
    end

    # A ractor cannot be stopped from outside: say so when one is
    # quarantined.
    def quarantine(number, why)
      super
      Log.warn("main", "worker ractor #{number} cannot be stopped from outside (a ractor cannot be " \
                       "killed): it leaves when its request ends, or with the process")
    end

    def describe(slot)
      "worker ractor #{worker_of(slot)}"
    end

    # Ruby prints "Ractor is experimental" on the first Ractor.new; Kino
    # users chose ractors on purpose.
    def quietly
      previous = Warning[:experimental]
      Warning[:experimental] = false
      yield
    ensure
      Warning[:experimental] = previous
    end
  end
end

# frozen_string_literal: true

module Kino
  # The workers of :threaded mode (and of each :cluster child): workers ×
  # threads plain Ruby threads in the main ractor, each running the native
  # serve loop (kino_ruby.c). Threads of one worker share its number in
  # the stats and hooks; each thread is a slot of the pool (Slots). A
  # thread that dies -- an Exception that is not a StandardError, or
  # Thread#kill -- is replaced by the supervisor (Pool), and counted in
  # #respawns.
  class ThreadPool < Pool
    include Slots

    def initialize(...)
      super
      setup_slots
      @events = Queue.new
    end

    # Wait up to +grace+ seconds for the threads to leave the serve loop
    # (the server is stopped, so they do once their request is done),
    # then kill the ones still running app code -- those in quarantine
    # too.
    def stop(grace: 1.0)
      @stopping = true
      stop_watch
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + grace
      @membership.synchronize { @live.values }.each do |thread|
        left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
        thread.join([left, 0].max) || thread.kill.join(1)
      end
      @events << :stop
      @supervisor&.join
      self
    end

    private

    def slots_per_worker
      @threads
    end

    # A thread is booting until it enters the serve loop: its
    # on_worker_boot hook, and the binding's own setup, which raises
    # Kino::Error (the app's StandardErrors never leave Native.serve).
    # A thread whose worker was retired while it booted ends there.
    def spawn(slot)
      worker = worker_of(slot)
      @live[slot] = Thread.new do
        Thread.current.name = "kino-worker-#{worker}"
        Thread.current.report_on_exception = false
        Thread.current[:kino_mode] = :threaded
        error = nil
        serving = false
        begin
          Hooks.call(@hooks[:on_worker_boot], :on_worker_boot, worker)
          serving = true
          Native.serve(@server_id, @app, @handler, worker) unless @retired[slot]
        rescue Exception => e # rubocop:disable Lint/RescueException
          error = e
        ensure
          @events << [slot, error, !serving || error.is_a?(Kino::Error)]
        end
      end
    end

    def next_exit
      event = @events.pop
      return nil if event == :stop

      @membership.synchronize { @live.delete(event[0]) } # the thread is ending
      event
    end
  end
end

# frozen_string_literal: true

module Kino
  # The workers of :threaded mode: workers × threads plain Ruby threads in
  # the main ractor, each running the native serve loop (kino_ruby.c).
  # Threads of one worker share its number in the stats and hooks. A thread
  # that dies -- an Exception that is not a StandardError -- is replaced at
  # once by a supervisor thread; #respawns counts those.
  class ThreadPool
    attr_reader :respawns

    def initialize(server_id, app, workers:, threads:, handler:, hooks:)
      @server_id = server_id
      @app = app
      @workers = workers
      @threads_per_worker = threads
      @handler = handler
      @hooks = hooks
      @threads = []
      @events = Queue.new
      @respawns = 0
      @stopping = false
      @backoff = Backoff.new
    end

    def start
      (@workers * @threads_per_worker).times { |slot| @threads[slot] = spawn(slot) }
      @supervisor = Thread.new { supervise }
      @supervisor.name = "kino-supervisor"
      self
    end

    # Wait up to +grace+ seconds for the threads to leave the serve loop
    # (the server is stopped, so they do once their request is done),
    # then kill the ones still running app code.
    def stop(grace: 1.0)
      @stopping = true
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + grace
      @threads.each do |thread|
        left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
        thread.join([left, 0].max) || thread.kill.join(1)
      end
      @events << :stop
      @supervisor&.join
      self
    end

    private

    def spawn(slot)
      worker = slot / @threads_per_worker
      @backoff.started(slot)
      Thread.new do
        Thread.current.name = "kino-worker-#{worker}"
        Thread.current.report_on_exception = false
        Thread.current[:kino_mode] = :threaded
        error = nil
        begin
          Hooks.call(@hooks[:on_worker_boot], :on_worker_boot, worker)
          Native.serve(@server_id, @app, @handler, worker)
        rescue Exception => e # rubocop:disable Lint/RescueException
          error = e
        ensure
          @events << [slot, error]
        end
      end
    end

    def supervise
      while (event = @events.pop) != :stop
        slot, error = event
        worker = slot / @threads_per_worker
        Hooks.call(@hooks[:on_worker_exit], :on_worker_exit, worker, error)
        next if @stopping || error.nil?

        warn "kino: worker #{worker} died (#{error.class}: #{error.message}); starting a new one"
        @respawns += 1
        @backoff.wait(slot)
        @threads[slot] = spawn(slot) unless @stopping
      end
    end
  end

  # Keeps a worker that dies as soon as it starts (out of descriptors, a
  # broken boot hook) from being replaced in a tight loop: a worker that
  # lived less than a second is replaced after 0.1 s, then 0.2 s, ... up to
  # 5 s; one that lived longer is replaced at once.
  class Backoff
    QUICK = 1.0
    MAX = 5.0

    def initialize
      @started = {}
      @delay = Hash.new(0.0)
    end

    def started(slot)
      @started[slot] = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    # Sleep as long as +slot+'s recent history asks, before replacing it.
    def wait(slot)
      lived = Process.clock_gettime(Process::CLOCK_MONOTONIC) - @started.fetch(slot, 0)
      @delay[slot] = lived < QUICK ? [[@delay[slot] * 2, 0.1].max, MAX].min : 0.0
      sleep @delay[slot] if @delay[slot].positive?
    end
  end

  # Calls lifecycle hooks. A hook that raises is reported on stderr and
  # never stops the server or a worker.
  module Hooks
    def self.call(hook, name, *args)
      hook&.call(*args)
    rescue StandardError => e
      $stderr.write("kino: #{name} hook raised #{e.class}: #{e.message}\n")
    end
  end
end

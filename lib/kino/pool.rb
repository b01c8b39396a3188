# frozen_string_literal: true

module Kino
  # What a worker crash looks like to on_worker_exit when the crash itself
  # cannot reach the supervisor (it happened in a worker ractor or a child
  # process): its description.
  class WorkerCrash < Error; end

  # The shape every pool of workers shares -- ThreadPool (:threaded),
  # RactorPool (:ractor) and ProcessPool (:cluster): the same constructor,
  # #start (every worker, then a supervisor thread), #respawns, and the
  # supervisor's loop.
  #
  # The supervisor takes each worker that ends, calls on_worker_exit, and
  # unless the pool is stopping or the worker ended cleanly, starts a new
  # one in its slot: at once when the worker died while serving, after
  # Backoff's growing delay when it died while booting.
  #
  # A subclass provides #slots (the slots to start), #spawn(slot) (start
  # and remember the worker of a slot), #next_exit (block until a worker
  # ends: [slot, error or nil, booting], or nil once the pool has stopped)
  # and #stop.
  class Pool
    attr_reader :respawns

    # +workers+ × +threads+ serve the app of server +server_id+; +handler+
    # reports app errors; +hooks+ holds on_worker_boot, on_worker_exit (and
    # for ProcessPool before_fork). Worker numbers start at +first_worker+.
    def initialize(server_id, app, workers:, threads:, handler:, hooks:, first_worker: 0)
      @server_id = server_id
      @app = app
      @workers = workers
      @threads = threads
      @handler = handler
      @hooks = hooks
      @first_worker = first_worker
      @respawns = 0
      @stopping = false
      @backoff = Backoff.new
    end

    # Starts every worker, then the supervisor; returns self.
    def start
      slots.each { |slot| spawn(slot) }
      @supervisor = Thread.new { supervise }
      @supervisor.name = "kino-supervisor"
      @supervisor.report_on_exception = false
      self
    end

    private

    def supervise
      while (ended = next_exit)
        slot, error, booting = ended
        Hooks.call(@hooks[:on_worker_exit], :on_worker_exit, worker_of(slot), error)
        next if @stopping || error.nil? || !keep?(slot)

        why = error.is_a?(WorkerCrash) ? error.message : "#{error.class}: #{error.message}"
        Log.warn("main", "#{describe(slot)} died #{booting ? 'while booting' : 'serving'} (#{why}); starting a new one")
        @respawns += 1
        Native.server_note_respawn(@server_id) # for the control plane's metrics
        @backoff.wait(slot, booting) { @stopping }
        spawn(slot) unless @stopping
      end
    end

    # Whether a worker that died in +slot+ is replaced (ProcessPool keeps
    # fewer slots after #shrink).
    def keep?(_slot)
      true
    end

    # The worker number of +slot+ (what hooks and stats rows say).
    def worker_of(slot)
      @first_worker + slot
    end

    # How the warning names the worker of +slot+.
    def describe(slot)
      "worker #{worker_of(slot)}"
    end
  end
end

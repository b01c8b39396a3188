# frozen_string_literal: true

module Kino
  # What a worker crash looks like to on_worker_exit when the crash itself
  # cannot reach the supervisor (it happened in a worker ractor or a child
  # process): its description.
  class WorkerCrash < Error; end

  # The shape every pool of workers shares -- ThreadPool (:threaded),
  # RactorPool (:ractor) and ProcessPool (:cluster): the same constructor,
  # #start (every worker, then a supervisor thread, and a watcher thread
  # when quarantine or the elastic pool is on), #respawns, #tally, and the
  # supervisor's and watcher's loops.
  #
  # The supervisor takes each worker that ends, calls on_worker_exit, and
  # unless the pool is stopping or the worker ended cleanly, starts a new
  # one in its slot: at once when the worker died while serving, after
  # Backoff's growing delay when it died while booting.
  #
  # The watcher (doc/pool.md) looks at the pool every TICK: it quarantines
  # workers that one request has held for quarantine_timeout (Quarantine
  # decides) and grows or shrinks an elastic pool (Elastic decides).
  # Every change to the set of workers -- a start, a replacement, a
  # retirement -- happens under @membership, from the supervisor or the
  # watcher.
  #
  # A subclass provides #slots (the slots to start), #spawn(slot) (start
  # and remember the worker of a slot), #next_exit (block until a worker
  # ends: [slot, error or nil, booting], or nil once the pool has stopped)
  # and #stop; for the watcher #look (a View, or nil), #quarantine(worker,
  # why), #scale_up, #scale_down, #active_count and #quarantined_count.
  class Pool
    # How often the watcher looks at the pool (quarantine, elastic).
    TICK = 0.25

    # What one look of the watcher saw: requests +queued+, requests
    # +in_flight+ in serving workers, and +seen+ (worker number =>
    # Quarantine::Seen) for each serving worker.
    View = Struct.new(:queued, :in_flight, :seen)

    attr_reader :respawns

    # +workers+ × +threads+ serve the app of server +server_id+; +handler+
    # reports app errors; +hooks+ holds on_worker_boot, on_worker_exit (and
    # for ProcessPool before_fork). Worker numbers start at +first_worker+.
    # +tuning+: quarantine_timeout, quarantine_max, max_workers,
    # scale_down_after (Options; absent: both off).
    def initialize(server_id, app, workers:, threads:, handler:, hooks:, first_worker: 0, tuning: {})
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
      @membership = Mutex.new # one change at a time to the set of workers
      @tally = { scale_ups: 0, scale_downs: 0, quarantines: 0 }
      @tuning = tuning
      setup_watch(tuning)
    end

    # Starts every worker, the supervisor, and the watcher when quarantine
    # or the elastic pool is on; returns self.
    def start
      @membership.synchronize { slots.each { |slot| spawn(slot) } }
      publish
      @supervisor = Thread.new { supervise }
      @supervisor.name = "kino-supervisor"
      @supervisor.report_on_exception = false
      @watcher = (Thread.new { watcher_loop } if @quarantine || @elastic)
      @watcher&.name = "kino-watch"
      @watcher&.report_on_exception = false
      self
    end

    # The pool's part of Kino::Server#stats: active_workers (serving, not
    # counting those in quarantine), max_workers (what an elastic pool may
    # grow to; else workers), scale_ups and scale_downs (elastic),
    # quarantined (workers in quarantine now) and quarantines (since the
    # start).
    def tally
      @membership.synchronize do
        { active_workers: active_count, max_workers: [@tuning[:max_workers] || @workers, @workers].max,
          quarantined: quarantined_count }.merge(@tally)
      end
    end

    # Hands #tally to the engine, where the control plane's /stats and
    # /metrics read it without asking Ruby (they answer while every
    # worker holds the GVL): at the start, after each look of the watcher
    # and after each worker that ends; not once the pool stops (the
    # server may be gone).
    def publish
      Native.server_set_pool(@server_id, tally) unless @stopping
    end

    private

    def setup_watch(tuning)
      if tuning[:quarantine_timeout]
        @quarantine = Quarantine.new(timeout: tuning[:quarantine_timeout],
                                     max: tuning[:quarantine_max] || @workers)
      end
      max = tuning[:max_workers]
      return unless max && max > @workers

      @elastic = Elastic.new(workers: @workers, max: max, after: tuning[:scale_down_after] || 30.0,
                             threads: @threads)
    end

    def supervise
      while (ended = next_exit)
        slot, error, booting = ended
        Hooks.call(@hooks[:on_worker_exit], :on_worker_exit, worker_of(slot), error)
        if @stopping || error.nil? || !keep?(slot)
          @membership.synchronize { forget(slot) }
          publish
          next
        end

        why = error.is_a?(WorkerCrash) ? error.message : "#{error.class}: #{error.message}"
        Log.warn("main", "#{describe(slot)} died #{booting ? 'while booting' : 'serving'} (#{why}); starting a new one")
        @respawns += 1
        Native.server_note_respawn(@server_id) # for the control plane's metrics
        @backoff.wait(slot, booting) { @stopping }
        @membership.synchronize { !@stopping && keep?(slot) ? spawn(slot) : forget(slot) } # retired meanwhile?
        publish
      end
    end

    # The watcher: every TICK, a look at the pool (#look), then quarantine
    # of stuck workers and one step of the elastic pool. Runs until the
    # pool stops; an error in one look is logged (once while it repeats)
    # and the next look goes on.
    def watcher_loop
      until @stopping
        sleep TICK
        begin
          view = look
          @membership.synchronize { react(view) unless @stopping || view.nil? }
          publish
        rescue StandardError => e
          said = "the pool's watcher failed: #{e.class}: #{e.message}"
          Log.error("main", said) unless said == @said # once, not four times a second
          @said = said
        end
      end
    end

    def react(view)
      @quarantine&.pick(view.seen, quarantined_count)&.each do |worker, why|
        Log.warn("main", "worker #{worker} #{why}: quarantined (it takes no more requests and leaves " \
                         "once that request ends); starting a new worker in its place")
        quarantine(worker, why)
        @tally[:quarantines] += 1
      end
      case @elastic&.decide(Process.clock_gettime(Process::CLOCK_MONOTONIC), queued: view.queued,
                                                                            in_flight: view.in_flight,
                                                                            active: active_count)
      when :grow
        scale_up
        @tally[:scale_ups] += 1
      when :shrink
        scale_down
        @tally[:scale_downs] += 1
      end
    end

    # Ends the watcher (the pool is stopping).
    def stop_watch
      @watcher&.join
    end

    # Whether a worker that died in +slot+ is replaced (ProcessPool keeps
    # fewer slots after #shrink; a retired worker is never replaced).
    def keep?(_slot)
      true
    end

    # Drop what the pool remembers of +slot+, whose worker ended and is
    # not replaced.
    def forget(_slot); end

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

# frozen_string_literal: true

module Kino
  # The body of one :cluster worker process, from the fork to exit!: never
  # returns, never runs the at_exit handlers it inherited.
  #
  # Boot: own signal handlers (the master's were inherited), the app
  # (loaded here when it is a Loader: preload false), on_worker_boot, the
  # engine's I/O threads on the inherited listener, the ThreadPool of
  # ProcessPool#child_pool, then "ready\n" to the master. Anything that fails
  # before "ready" exits 1: the master counts it as a boot failure.
  #
  # Then a thread answers the master's stats questions until the control
  # socket closes; TERM, INT or the master's end (the socket closing)
  # drains the engine as Kino::Server#shutdown does, sends the master a
  # final stats report (question number 0) and exits 0.
  class ClusterWorker
    # Signals the master uses, or that would stop or kill a child by
    # default when sent to the whole process group. (HUP, which the master
    # forwards, reopens this process's log files.)
    IGNORED = %w[TTIN TTOU USR1 USR2 URG].freeze

    # +pool+: the master's ProcessPool as this process inherited it at the
    # fork, read for its settings only (nothing of it runs here); +worker+:
    # this process's worker number; +control+: its socket to the master.
    def initialize(pool, worker, control)
      @pool = pool
      @server_id = pool.server_id
      @worker = worker
      @control = control
      @writing = Mutex.new
    end

    def run
      wake_r, @wake = IO.pipe
      trap_signals
      pool = boot
      answerer = Thread.new { answer_stats(pool) }
      answerer.report_on_exception = false
      wake_r.read(1) # a signal, or the master's end
      Server.drain_engine(@server_id, pool, @pool.shutdown_timeout) { report(0, own_stats(pool)) }
      exit!(0)
    rescue Exception => e # rubocop:disable Lint/RescueException
      Log.error("worker-#{@worker}", "worker process #{@worker} (pid #{Process.pid}) failed: #{e.class}: #{e.message}")
      Log.flush(1.0) # exit! does not wait for the flusher
      exit!(1)
    end

    private

    def trap_signals
      %w[TERM INT].each { |signal| Signal.trap(signal) { stop } }
      IGNORED.each { |signal| Signal.trap(signal, "IGNORE") if Signal.list.key?(signal) }
      Signal.trap("HUP") { Thread.new { Log.info("worker-#{@worker}", "HUP: reopened #{Native.log_reopen_all} log file(s)") } }
    end

    # Wake the main thread (a pipe write is safe in a trap handler).
    def stop
      @wake.write_nonblock("x", exception: false)
    rescue IOError
      nil
    end

    def boot
      $PROGRAM_NAME = "kino worker #{@worker}"
      app = @pool.app.is_a?(Loader) ? @pool.app.load : @pool.app
      Hooks.call(@pool.boot_hook, :on_worker_boot, @worker)
      Native.server_keep_listeners(@server_id) # the master's: never closed or unlinked here
      Native.server_start(@server_id)
      pool = @pool.child_pool(app, @worker).start
      @control.write("ready\n")
      pool
    end

    # Answers "stats SEQ" lines until the master closes the socket, then
    # stops the worker.
    def answer_stats(pool)
      while (line = @control.gets)
        seq = line[/\Astats (\d+)\n\z/, 1] or next
        report(Integer(seq), own_stats(pool))
      end
    rescue IOError, SystemCallError
      nil
    ensure
      stop
    end

    # One frame to the master (Frames): [seq, stats].
    def report(seq, stats)
      frame = Frames.dump([seq, stats])
      @writing.synchronize { @control.write(frame) }
    rescue IOError, SystemCallError
      nil # the master is gone
    end

    def own_stats(pool)
      live = Native.server_stats(@server_id)
      rows = live.delete(:threads_detail)
      live.merge(pool.tally.slice(:quarantined, :quarantines)).merge(per_worker: rows, respawns: pool.respawns)
    end
  end
end

# frozen_string_literal: true

module Kino
  # What on_worker_exit receives when a worker ractor crashed: the crash
  # itself cannot leave the ractor, its description can.
  class WorkerCrash < Error; end

  # The workers of :ractor mode: +workers+ Ractors, each running +threads+
  # native serve loops (the same loop as :threaded mode, kino_ruby.c). Only
  # the shareable app, the shareable error handler and integers cross into
  # a worker ractor; the env is built inside it.
  #
  # A supervisor thread in the main ractor waits for any worker to end
  # with Ractor.select -- the same call on Ruby 3.x (where it takes the
  # ractor's final value) and 4.0 (where it waits for termination). A
  # worker that crashed (an Exception from the app that is not a
  # StandardError, or Thread#kill) has already answered its in-flight
  # requests with 500 on the way out; the supervisor starts a new one and
  # counts it in #respawns.
  #
  # A crashed worker does not end with an exception: it returns a
  # description of it. Ruby 3.3's Ractor.select spins, holding the main
  # ractor's GVL, once a selected ractor has died with an exception, so the
  # exception never leaves the ractor.
  class RactorPool
    attr_reader :respawns

    def initialize(server_id, app, workers:, threads:, handler:, hooks:)
      @server_id = server_id
      @app = app
      @workers = workers
      @threads = threads
      @handler = handler
      @hooks = hooks
      @ractors = []
      @respawns = 0
      @stopping = false
      @backoff = Backoff.new
    end

    def start
      @ractors = Array.new(@workers) { |index| spawn(index) }
      @supervisor = Thread.new { supervise }
      @supervisor.name = "kino-supervisor"
      @supervisor.report_on_exception = false
      self
    end

    # Once the server is stopped every worker leaves its serve loop after
    # its current request; wait up to +grace+ seconds for that. A ractor
    # cannot be killed from outside: one still in app code is left to end
    # with the process.
    def stop(grace: 1.0)
      @stopping = true
      @supervisor&.join(grace)
      self
    end

    # The body of a worker ractor: threads - 1 helper threads and this
    # one run the serve loop. A helper that dies takes the ractor with it
    # (abort_on_exception), so the ractor is the unit that is replaced.
    # Runs the (shareable) on_worker_boot hook first. Returns nil when the
    # server stopped, or "Class: message" of the crash.
    def self.work(server_id, app, handler, threads, index, boot_hook)
      Thread.current[:kino_mode] = :ractor
      Thread.current.report_on_exception = false
      Hooks.call(boot_hook, :on_worker_boot, index)
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
      "#{e.class}: #{e.message}"
    end

    private

    def spawn(index)
      @backoff.started(index)
      quietly do
        Ractor.new(@server_id, @app, @handler, @threads, index, @hooks[:on_worker_boot],
                   name: "kino-worker-#{index}") do |id, app, handler, threads, i, boot|
          Kino::RactorPool.work(id, app, handler, threads, i, boot)
        end
      end
    end

    def supervise
      until @ractors.compact.empty?
        ractor, error = wait_any
        index = @ractors.index(ractor)
        next unless index

        @ractors[index] = nil
        Hooks.call(@hooks[:on_worker_exit], :on_worker_exit, index, error && WorkerCrash.new(error))
        next if @stopping || error.nil? # a normal return: the server stopped

        warn "kino: worker ractor #{index} died (#{error}); starting a new one"
        @respawns += 1
        @backoff.wait(index)
        @ractors[index] = spawn(index) unless @stopping
      end
    end

    # The next worker to end and what it died of (nil when the server
    # stopped). RemoteError only if something escaped RactorPool.work.
    def wait_any
      Ractor.select(*@ractors.compact)
    rescue Ractor::RemoteError => e
      [e.ractor, "#{e.cause.class}: #{e.cause&.message}"]
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

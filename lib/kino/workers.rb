# frozen_string_literal: true

module Kino
  # The workers of :threaded mode: workers × threads plain Ruby threads in
  # the main ractor, each running the native serve loop (kino_ruby.c). A
  # thread that dies -- an Exception that is not a StandardError -- is
  # replaced at once by a supervisor thread; #respawns counts those.
  class ThreadPool
    attr_reader :respawns

    def initialize(server_id, app, size:, handler:, mode: :threaded)
      @server_id = server_id
      @app = app
      @handler = handler
      @size = size
      @mode = mode
      @threads = []
      @events = Queue.new
      @respawns = 0
      @stopping = false
    end

    def start
      @size.times { |slot| @threads[slot] = spawn(slot) }
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
      thread = Thread.new(slot) do |index|
        Thread.current.name = "kino-worker-#{index}"
        Thread.current.report_on_exception = false
        Thread.current[:kino_mode] = @mode
        error = nil
        begin
          Native.serve(@server_id, @app, @handler)
        rescue Exception => e # rubocop:disable Lint/RescueException
          error = e
        ensure
          @events << [index, error]
        end
      end
      thread
    end

    def supervise
      while (event = @events.pop) != :stop
        slot, error = event
        next if @stopping || error.nil?

        warn "kino: worker #{slot} died (#{error.class}: #{error.message}); starting a new one"
        @respawns += 1
        @threads[slot] = spawn(slot)
      end
    end
  end
end

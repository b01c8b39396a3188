# frozen_string_literal: true

module Kino
  # In :cluster mode the control plane lives in the master, whose own
  # engine never serves: its /stats and /metrics show what this thread
  # publishes (Native.control_publish), the worker processes' counters
  # added up (Server#stats, ProcessPool#stats). The control thread writes
  # one byte per question on a pipe; this thread reads them, gathers,
  # and publishes the snapshot with the number of questions it answers
  # (kino.h, kino_control_publish). It also publishes every EVERY
  # seconds, so that the counters of a worker that is killed without a
  # final report were seen recently. When the master cannot gather (it
  # never runs the app, so this is rare) the control plane still answers,
  # from its own thread, with the last snapshot and its age.
  class ControlPublisher
    EVERY = 5.0

    def self.start(control, server)
      new(control, server).tap(&:start)
    end

    def initialize(control, server)
      @control = control
      @server = server
      @questions = IO.for_fd(Native.control_question_fd(control), autoclose: false)
      @wake_r, @wake = IO.pipe
      @answered = 0
    end

    def start
      @thread = Thread.new { run }
      @thread.name = "kino-control-publisher"
      @thread.report_on_exception = false
      self
    end

    # End the thread (after its gather in progress, if any), before the
    # control plane is freed.
    def stop
      @wake.write_nonblock("x", exception: false)
      @thread&.join
      [@wake, @wake_r].each(&:close)
    rescue IOError
      nil
    end

    private

    def run
      publish
      loop do
        ready, = IO.select([@questions, @wake_r], nil, nil, EVERY)
        break if ready&.include?(@wake_r)

        read_questions if ready
        publish
      end
    end

    # Count the bytes waiting: that many more questions are answered by
    # the next snapshot.
    def read_questions
      loop do
        got = @questions.read_nonblock(4096, exception: false)
        break unless got.is_a?(String)

        @answered += got.bytesize
      end
    end

    def publish
      Native.control_publish(@control, @server.stats, @answered)
    rescue StandardError => e
      Log.warn("main", "control plane: cannot publish the statistics (#{e.class}: #{e.message})")
    end
  end
end

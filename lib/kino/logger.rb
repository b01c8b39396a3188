# frozen_string_literal: true

require "logger"

module Kino
  # A ::Logger whose writes go through Kino's log sink (kino_log.c): the
  # formatted line is copied into a lock-free queue and written by one C
  # flusher thread, so logging never takes a lock or makes a write(2) on
  # the request path. Lines from many threads and ractors never interleave
  # mid-line.
  #
  #   logger = Kino::Logger.new                  # stdout
  #   logger = Kino::Logger.new("log/app.log")   # append to a file
  #   logger.info("hello")
  #
  # Rails (config/environments/production.rb):
  #
  #   config.logger = Kino::Logger.new
  #   config.logger = ActiveSupport::TaggedLogging.new(Kino::Logger.new)
  #   config.logger = ActiveSupport::BroadcastLogger.new(Kino::Logger.new, Kino::Logger.new("log/production.log"))
  #
  # In :ractor mode a Logger (it holds its level and formatter) stays in
  # the ractor that made it, but its Device is frozen and shareable: make
  # one Device and a Kino::Logger.new(device) in each ractor.
  class Logger < ::Logger
    # +target+: a path, nil for stdout, or a Kino::Logger::Device. Other
    # arguments as for ::Logger.new (level:, progname:, formatter:, ...).
    def initialize(target = nil, *args, **options)
      super(nil, *args, **options)
      @logdev = target.is_a?(Device) ? target : Device.new(target)
    end

    # The Device lines go to.
    def device
      @logdev
    end

    # Reopen the file (after logrotate moved it away). Returns self.
    def reopen(_logdev = nil)
      @logdev.reopen
      self
    end

    # The sink a Kino::Logger writes to: a file (appended to) or stdout.
    # Frozen and Ractor-shareable: one Device may serve every worker
    # ractor. write queues the bytes as one record (a newline is added
    # when missing) and never blocks; close writes what is queued and
    # makes later writes no-ops; reopen opens the path again.
    class Device
      attr_reader :path

      def initialize(path = nil)
        @path = path&.to_s&.dup&.freeze
        @sink = Native.log_open(@path)
        Ractor.make_shareable(self)
      end

      # Queue +message+; returns its size in bytes (what IO#write does).
      def write(message)
        message = message.to_s
        Native.log_write(@sink, message)
        message.bytesize
      end

      def <<(message)
        write(message)
        self
      end

      def close
        Native.log_close(@sink)
        nil
      end

      def reopen(_log = nil)
        Native.log_reopen(@sink) if @path
        self
      end

      # Wait up to +timeout+ seconds until queued lines are written.
      def flush(timeout = 2.0)
        Native.log_flush(timeout)
        self
      end
    end
  end
end

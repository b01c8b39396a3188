# frozen_string_literal: true

module Kino
  # Kino's own messages -- the banner, warnings, error reports, respawns,
  # the stats line -- with one prefix, through the C log sink (kino_log.c):
  #
  #   Kino.log.info("main", "listening on http://127.0.0.1:9292")
  #   Kino.log.warn("worker-3", "something odd")       # stderr
  #   Kino.log.error(Kino.log.source, report)         # stderr, source of this thread
  #
  # prints "kino[4242] main: listening on ...". Every line of a multi-line
  # message gets the prefix. Info goes to stdout, warn and error to
  # stderr. The call never blocks and never takes a lock: the line is
  # queued for the flusher thread (or dropped and counted in
  # stats[:log_dropped] when the queue is full).
  #
  # When $stdout or $stderr is not the process's fd 1 or 2 (a test's
  # StringIO, an app that set $stderr = some_io), the message is written
  # to that object instead, prefix included: Kino follows a Ruby-level
  # redirect. A module without state: usable from any ractor.
  module Log
    INFO = 0
    WARN = 1
    ERROR = 2

    module_function

    def info(source, message)
      emit(INFO, source, message)
    end

    def warn(source, message)
      emit(WARN, source, message)
    end

    def error(source, message)
      emit(ERROR, source, message)
    end

    # Wait up to +timeout+ seconds until every line queued so far is
    # written; true when it is.
    def flush(timeout = 2.0)
      Native.log_flush(timeout)
    end

    # Lines dropped so far (queue full, or a destination that failed).
    def dropped
      Native.log_dropped
    end

    # The source naming the calling thread: "worker-3" in a worker thread
    # or ractor (their names end in the worker number), else "main".
    def source
      name = Thread.current.name
      name = Ractor.current.name if name.nil? && !Ractor.current.equal?(Ractor.main)
      name&.match(/\Akino-(worker-\d+)/) ? Regexp.last_match(1) : "main"
    end

    def emit(level, source, message)
      message = message.to_s
      io = level == INFO ? $stdout : $stderr
      if direct?(io, level == INFO ? 1 : 2)
        io.flush # what Ruby buffered for that fd goes first, in order
        Native.log_message(level, source.to_s, message)
      else
        prefix = "kino[#{Process.pid}] #{source}: "
        io.write(message.each_line.map { |line| "#{prefix}#{line.chomp}\n" }.join)
      end
      nil
    rescue StandardError
      nil # a log line must never take the caller down
    end

    def direct?(io, fd)
      io.is_a?(IO) && !io.closed? && io.fileno == fd
    rescue StandardError
      false
    end

    private_class_method :emit, :direct?
  end

  # Kino.log: the Kino::Log module (see there).
  def self.log
    Log
  end

  # env["rack.errors"]: what the app writes there becomes Kino's lines on
  # stderr, "kino[pid] worker-N: ...". Frozen and shareable: one per
  # worker, made in the worker's own ractor.
  class ErrorStream
    def self.for_worker(number)
      Ractor.make_shareable(new("worker-#{number}"))
    end

    def initialize(source)
      @source = source.dup.freeze
      freeze
    end

    def write(*strings)
      text = strings.join
      Log.error(@source, text) unless text.empty?
      text.bytesize
    end

    def <<(string)
      write(string.to_s)
      self
    end

    def puts(*args)
      args = [""] if args.empty?
      write(args.flatten.map { |a| a.to_s.end_with?("\n") ? a.to_s : "#{a}\n" }.join)
      nil
    end

    def print(*args)
      write(args.join)
      nil
    end

    def flush
      self
    end

    # ::Logger.new(env["rack.errors"]) (Sinatra's logging, Rack::Logger)
    # takes an object with write and close as an IO, anything else as a
    # file name. Closing rack.errors means nothing.
    def close; end

    def sync
      true
    end

    def sync=(_value); end
  end
end

# frozen_string_literal: true

module Kino
  # Where a server's access log goes (log_requests) and how its lines look
  # (log_format): the sink and format the C engine writes with. The
  # engine writes one line per request itself (kino.c, section 8).
  class AccessLog
    def self.open(options)
      new(options[:log_requests], options[:log_format])
    end

    # +target+: nil/false (off), true (stdout) or a path (appended to).
    def initialize(target, format)
      @owned = target.is_a?(String)
      @sink = if @owned then Native.log_open(target)
              elsif target then Native::LOG_STDOUT
              else 0
              end
      @format = if format.to_s == "json" then Native::LOG_JSON
                elsif target == true && color? then Native::LOG_TEXT_COLOR
                else Native::LOG_TEXT
                end
    end

    # The options Native.server_new takes.
    def native
      { log_sink: @sink, log_format: @format }
    end

    # Write every queued line; close the file when Kino opened it.
    def close
      @owned ? Native.log_close(@sink) : Native.log_flush(2.0)
      nil
    end

    private

    # Tint lines by status only on a terminal, and not under NO_COLOR.
    def color?
      $stdout.tty? && ENV.fetch("NO_COLOR", "").empty?
    end
  end
end

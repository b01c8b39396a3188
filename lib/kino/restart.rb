# frozen_string_literal: true

require "rbconfig"

module Kino
  # Hot restart (SIGUSR2): the process executes its own command line again,
  # in place (same pid, so the pidfile and a supervisor's view stay right),
  # handing its listening sockets to the new program through the
  # environment (Inherit). Connections that arrive meanwhile wait in the
  # listeners' backlog; the new program accepts them once it is up.
  module Restart
    # The command line to run again: [program, *arguments], recorded by
    # the CLI (or, for embedded servers, the first time one runs).
    def self.command
      @command ||= [$PROGRAM_NAME, *ARGV].freeze
    end

    def self.command=(argv)
      @command = argv.dup.freeze
    end

    # Replace this process with a new run of #command that adopts +pairs+
    # ([[Listener, fd]]). Never returns; raises SystemCallError when the
    # command cannot be executed.
    def self.exec(pairs)
      env = { Inherit::RESTART_VAR => Inherit.restart_value(pairs) }
      keep = pairs.to_h { |_, fd| [fd, fd] } # clears close-on-exec on each
      $stdout.flush
      $stderr.flush
      Kernel.exec(env, RbConfig.ruby, *command, keep)
    end
  end
end

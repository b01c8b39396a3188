# frozen_string_literal: true

require "rbconfig"

module Kino
  # Hot restart (SIGUSR2): the process executes its own command line again,
  # in place (same pid, so the pidfile and a supervisor's view stay right),
  # handing its listening sockets to the new program through the
  # environment (Inherit). Connections that arrive meanwhile wait in the
  # listeners' backlog; the new program accepts them once it is up.
  module Restart
    # The control plane's listener handed to the new program:
    # "FD:CONTROL_BIND", the control_bind it served.
    CONTROL_VAR = "KINO_CONTROL_FD"

    # The command line to run again: [program, *arguments], recorded by
    # the CLI (or, for embedded servers, the first time one runs).
    def self.command
      @command ||= [$PROGRAM_NAME, *ARGV].freeze
    end

    def self.command=(argv)
      @command = argv.dup.freeze
    end

    # Replace this process with a new run of #command that adopts +pairs+
    # ([[Listener, fd]]) and +control+ ([fd, control_bind]: the control
    # plane's listener, Native.control_keep_listener), if any. Never
    # returns; raises SystemCallError when the command cannot be executed.
    def self.exec(pairs, control: nil)
      env = { Inherit::RESTART_VAR => Inherit.restart_value(pairs) }
      keep = pairs.to_h { |_, fd| [fd, fd] } # clears close-on-exec on each
      if control
        env[CONTROL_VAR] = control.join(":")
        keep[control.first] = control.first
      end
      $stdout.flush
      $stderr.flush
      Kernel.exec(env, RbConfig.ruby, *command, keep)
    end

    # The control plane listener the program this one replaced handed
    # over, when it served the same +control_bind+: its fd, else nil (one
    # for another address is closed, and its unix socket file removed:
    # the configuration changed). Reads and clears the environment, so
    # that processes this one starts do not take it for theirs.
    def self.control_fd(control_bind, env = ENV)
      value = env.delete(CONTROL_VAR) or return nil
      fd, _, served = value.partition(":")
      return nil unless fd.match?(/\A\d+\z/)
      return Integer(fd, 10) if control_bind && served == control_bind

      drop_control(Integer(fd, 10), served)
      nil
    end

    def self.drop_control(fd, served)
      path = served.delete_prefix("unix://") if served.start_with?("unix://") && !served.start_with?("unix://@")
      File.delete(path) if path && File.socket?(path)
      IO.for_fd(fd).close
    rescue SystemCallError, ArgumentError
      nil
    end
    private_class_method :drop_control
  end
end

# frozen_string_literal: true

require_relative "http_probe"

module Bench
  # One run of a Target: spawned in its own process group with its output
  # appended to a log file, polled until it serves, and stopped (TERM, then
  # KILL) with every process of the group.
  class ServerProcess
    READY_TIMEOUT = 30
    STOP_TIMEOUT = 10
    PORT_TIMEOUT = 10

    attr_reader :pid

    def initialize(target, log_path)
      @target = target
      @port = target.port
      @log_path = log_path
      @pid = nil
      @status = nil
    end

    # Start the server; returns nil once it answers GET /plaintext (the
    # target's ready_path) with 200, else why it did not (the caller still
    # calls #stop).
    def start
      return "port #{@port} is in use" unless wait_port_free

      @log_offset = append_log("== #{Time.now} #{@target.argv.join(' ')}\n")
      @pid = Process.spawn(@target.env, *@target.argv, chdir: @target.chdir || ROOT, pgroup: true, in: File::NULL,
                                                       %i[out err] => [@log_path, "a"])
      wait_until_ready
    rescue SystemCallError => e
      e.message
    end

    # Is the root process still running?
    def alive?
      return false unless @pid

      @status ||= Process.waitpid2(@pid, Process::WNOHANG)&.last
      @status.nil?
    end

    # Why the server ended: how it exited, and the most telling line it
    # logged since #start.
    def exit_reason
      how = if @status&.signaled? then "killed by SIG#{Signal.signame(@status.termsig)}"
            else "exited with status #{@status&.exitstatus}"
            end
      excerpt = log_excerpt
      excerpt ? "#{how}: #{excerpt}" : how
    end

    # TERM the process group, KILL it after STOP_TIMEOUT, reap the root,
    # then wait until the port is free again. Safe to call twice.
    def stop
      return unless @pid

      signal_group("TERM")
      unless wait_for_group(STOP_TIMEOUT)
        signal_group("KILL")
        wait_for_group(5)
      end
      $stderr.puts "bench: port #{@port} still busy after stopping #{@target.name}" unless wait_port_free
      @pid = nil
    end

    private

    # Poll until ready, the process exits, or READY_TIMEOUT passes.
    def wait_until_ready
      timeout = @target.ready_timeout || READY_TIMEOUT
      path = @target.ready_path || "/plaintext"
      deadline = now + timeout
      while now < deadline
        return exit_reason unless alive?
        return nil if HttpProbe.port_open?(@port) && HttpProbe.ok?(@port, path)

        sleep 0.1
      end
      "not ready after #{timeout} s (see #{@log_path})"
    end

    # Wait up to +timeout+ s for the root to exit and the group to empty.
    def wait_for_group(timeout)
      deadline = now + timeout
      while now < deadline
        return true if !alive? && !group_exists?

        sleep 0.05
      end
      false
    end

    # Does any process remain in the server's process group?
    def group_exists?
      Process.kill(0, -@pid)
      true
    rescue Errno::ESRCH
      false
    rescue Errno::EPERM
      true
    end

    def signal_group(signal)
      Process.kill(signal, -@pid)
    rescue Errno::ESRCH
      nil
    end

    # Wait until nothing listens on the port (connect refused).
    def wait_port_free
      deadline = now + PORT_TIMEOUT
      until HttpProbe.port_free?(@port)
        return false if now > deadline

        sleep 0.1
      end
      true
    end

    # Append +text+ to the log; returns the offset where the run starts.
    def append_log(text)
      File.open(@log_path, "a") do |log|
        log.write(text)
        log.size
      end
    end

    # The last error-looking line logged since #start (the exception
    # message for a Ruby backtrace), else nil.
    def log_excerpt
      lines = File.read(@log_path).byteslice(@log_offset..).to_s.scrub.lines.map(&:strip)
      line = lines.grep(/error|exception|fatal|failed|emerg/i).last
      line && (line[/:in [`'][^']*': (.+)\z/, 1] || line)
    rescue SystemCallError
      nil
    end

    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end
  end
end

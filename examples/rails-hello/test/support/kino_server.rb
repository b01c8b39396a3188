# frozen_string_literal: true

require "net/http"
require "rbconfig"

# The example served by the `kino` of this checkout, in its own process
# group, on a port Kino picks (port 0; read back from the banner). Its
# output goes to a log file that failures quote.
class KinoServer
  ROOT = File.expand_path("../../../..", __dir__)
  APP_DIR = File.expand_path("../..", __dir__)
  BOOT_TIMEOUT = 90
  STOP_TIMEOUT = 30

  attr_reader :port, :pid, :log_path

  # +args+: kino's command-line flags; +env+: extra environment.
  def initialize(args, env:, log_path:)
    @args = args
    @env = env
    @log_path = log_path
  end

  # Starts the server and waits until GET /hello answers 200.
  def start
    argv = [RbConfig.ruby, "-I#{ROOT}/lib", "#{ROOT}/bin/kino", *@args, "-p", "0"]
    @pid = Process.spawn(@env, *argv, chdir: APP_DIR, pgroup: true, in: File::NULL,
                                      %i[out err] => [@log_path, "w"])
    wait_until_ready
    self
  end

  # TERM, and KILL for the whole group if it has not exited within
  # STOP_TIMEOUT. Returns the exit status.
  def stop
    return unless @pid

    signal("TERM")
    deadline = now + STOP_TIMEOUT
    until (status = Process.waitpid2(@pid, Process::WNOHANG)&.last)
      if now > deadline
        signal("KILL", group: true)
        status = Process.waitpid2(@pid).last
        break
      end
      sleep 0.05
    end
    signal("KILL", group: true) # nothing of the group may outlive the test
    @pid = nil
    status
  end

  # The server's output so far (the end of it).
  def log_tail(lines = 40)
    File.exist?(@log_path) ? File.readlines(@log_path).last(lines).join : "(no log)"
  end

  private

  def wait_until_ready
    deadline = now + BOOT_TIMEOUT
    until now > deadline
      raise "kino exited while booting (#{$?.inspect}):\n#{log_tail}" if Process.waitpid(@pid, Process::WNOHANG)

      @port ||= File.read(@log_path)[%r{listening: http://127\.0\.0\.1:(\d+)}, 1]&.to_i
      return if @port && ready?

      sleep 0.1
    end
    raise "kino did not serve GET /hello within #{BOOT_TIMEOUT} s:\n#{log_tail}"
  end

  def ready?
    Net::HTTP.start("127.0.0.1", @port, open_timeout: 5, read_timeout: 30) { |http| http.get("/hello") }.code == "200"
  rescue SystemCallError, IOError, Net::ReadTimeout, Net::OpenTimeout
    false
  end

  def signal(name, group: false)
    Process.kill(name, group ? -@pid : @pid)
  rescue Errno::ESRCH
    nil
  end

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end
end

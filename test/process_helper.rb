# frozen_string_literal: true

require "open3"
require "rbconfig"
require "socket"
require "timeout"

# Child-process helpers for the command-line suites (cli, install, gem,
# rack handler): run a command to completion, or start a server, wait for
# its banner, yield its port, stop it with a signal and check the exit
# status. No fixed sleeps: everything waits on output or exit.
module KinoProcess
  ROOT = File.expand_path("..", __dir__)
  KINO = File.join(ROOT, "bin", "kino")

  # [stdout, stderr, status] of +cmd+ (an Array) run in +dir+ with +env+.
  def run_command(cmd, dir: Dir.pwd, env: {}, timeout: 60)
    Timeout.timeout(timeout) { Open3.capture3(env, *cmd, chdir: dir) }
  end

  # `ruby bin/kino ARGS` from this checkout, run to completion.
  def kino(*args, dir:, env: {})
    run_command([RbConfig.ruby, KINO, *args], dir: dir, env: env)
  end

  # Starts +cmd+ in +dir+, waits for the banner, yields (port, banner, pid,
  # the pipe the rest of its output arrives on),
  # then sends +signal+ (unless nil) and asserts the exit status is +status+ (0 by
  # default). Output (stdout and stderr together) is in the failure
  # messages. The port comes from the banner's "listening:" line.
  def with_server(cmd, dir:, env: {}, signal: "TERM", status: 0, timeout: 20)
    out_r, out_w = IO.pipe
    pid = Process.spawn(env, *cmd, chdir: dir, out: out_w, err: out_w)
    out_w.close
    banner = read_until(out_r, "Ctrl-C", timeout)
    port = banner[%r{listening: https?://[^ \n]*:(\d+)}, 1].to_i
    yield port, banner, pid, out_r
    Process.kill(signal, pid) if signal # nil: the block stops it
    _, exit_status = Timeout.timeout(timeout) { Process.wait2(pid) }
    rest = out_r.read
    assert_equal status, exit_status.exitstatus, "exit status #{exit_status.inspect}; output:\n#{banner}#{rest}"
    banner + rest
  ensure
    kill_process(pid) unless exit_status
    out_r&.close
  end

  # Everything +io+ says until +marker+ appears; fails with the output when
  # the process ends first or +timeout+ passes.
  def read_until(io, marker, timeout)
    text = +""
    Timeout.timeout(timeout) do
      text << io.readpartial(4096) until text.include?(marker)
    end
    text.force_encoding(Encoding::UTF_8)
  rescue EOFError, Timeout::Error => e
    flunk "no #{marker.inspect} in the output (#{e.class}):\n#{text}"
  end

  # A plain GET over a fresh connection: [status, body].
  def http_get(port, path = "/")
    socket = TCPSocket.new("127.0.0.1", port)
    socket.write("GET #{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    response = Timeout.timeout(10) { socket.read }
    head, body = response.split("\r\n\r\n", 2)
    [head[/\AHTTP\/1\.1 (\d+)/, 1].to_i, body]
  ensure
    socket&.close
  end

  # The pids of the processes whose parent is +pid+ (Linux /proc), sorted.
  def child_pids(pid)
    Dir.glob("/proc/[0-9]*/stat").filter_map do |path|
      fields = File.read(path).split(") ").last.split
      File.basename(File.dirname(path)).to_i if fields[1].to_i == pid
    rescue Errno::ENOENT, Errno::ESRCH
      nil
    end.sort
  end

  # For ensure blocks: KILL +pid+ and reap it, unless it is nil or already
  # reaped (the test waited for it), so no test leaves a server running.
  def kill_process(pid)
    return unless pid

    Process.kill("KILL", pid)
    Process.wait(pid)
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  end

  # A port that was free a moment ago (for hosts that cannot take port 0).
  def free_port
    server = TCPServer.new("127.0.0.1", 0)
    server.addr[1]
  ensure
    server&.close
  end
end

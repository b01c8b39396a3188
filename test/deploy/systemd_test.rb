# frozen_string_literal: true

require_relative "../helper"
require_relative "../process_helper"
require "tmpdir"

# systemd without systemd running: systemd-socket-activate hands Kino its
# listening sockets (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, from fd 3),
# and a datagram socket this test binds stands in for the service
# manager's NOTIFY_SOCKET (a path, and an abstract "@name").
class SystemdTest < Minitest::Test
  include KinoTest
  include KinoProcess

  NO_PRELOAD = { "LD_PRELOAD" => nil }.freeze

  def setup
    @dir = Dir.mktmpdir
    File.write(File.join(@dir, "config.ru"), "run ->(env) { [200, {}, [\"#{'ok'} \#{env['REMOTE_ADDR']}\"]] }\n")
  end

  def teardown
    FileUtils.remove_entry(@dir)
  end

  # A datagram socket bound where NOTIFY_SOCKET will point; yields the
  # value for NOTIFY_SOCKET and a reader that returns the next message.
  def notify_socket(abstract: false)
    socket = Socket.new(:UNIX, :DGRAM)
    name = abstract ? "kino-test-notify-#{Process.pid}-#{rand(1 << 30)}" : File.join(@dir, "notify.sock")
    socket.bind(Socket.sockaddr_un(abstract ? "\0#{name}" : name))
    reader = lambda do |timeout = 20|
      raise Timeout::Error, "no sd_notify message" unless socket.wait_readable(timeout)

      socket.recv(4096)
    end
    yield abstract ? "@#{name}" : name, reader
  ensure
    socket&.close
  end

  def test_socket_activation_tcp_and_unix_with_notify
    port = free_port
    sock = File.join(@dir, "activated.sock")
    notify_socket do |notify, next_message|
      env = NO_PRELOAD # systemd-socket-activate passes on only what -E names
      kino = [RbConfig.ruby, KINO, "-m", "threaded", "-w", "1",
              "-b", "tcp://127.0.0.1:#{port}?proxy_protocol=1"] # lends its setting to the systemd socket
      cmd = ["systemd-socket-activate", "-l", "127.0.0.1:#{port}", "-l", sock, "--fdname=web:local",
             "-E", "NOTIFY_SOCKET=#{notify}", "-E", "WATCHDOG_USEC=400000",
             "-E", "LD_PRELOAD=#{ENV.fetch('LD_PRELOAD', '')}", "-E", "GEM_PATH=#{ENV.fetch('GEM_PATH', '')}", *kino]
      pid = Process.spawn(env, *cmd, chdir: @dir, out: File::NULL, err: File.join(@dir, "err.log"))
      sleep 0.05 until File.socket?(sock) || Process.waitpid(pid, Process::WNOHANG)
      # Both sockets serve: the TCP one with the address its PROXY header
      # gives, the unix one (no PROXY protocol) as a local client.
      served = lambda do |client|
        socket = TCPSocket.new("127.0.0.1", port)
        socket.write("PROXY TCP4 #{client} 127.0.0.1 1 80\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert_equal "ok #{client}", parse_responses(read_all(socket, timeout: 30)).first&.body,
                     File.read(File.join(@dir, "err.log"))
        socket.close
        unix = UNIXSocket.new(sock)
        unix.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert_equal "ok 127.0.0.1", parse_responses(read_all(unix, timeout: 10)).first.body
        unix.close
      end
      # systemd-socket-activate starts Kino at the first connection, which
      # waits in the backlog meanwhile
      served.call("192.0.2.8")

      ready = next_message.call
      assert_match(/^READY=1$/, ready)
      assert_match(/^MAINPID=#{pid}$/, ready) # socket-activate execs Kino in its own pid
      assert_match(%r{^STATUS=serving http://127\.0\.0\.1:#{port} unix://#{Regexp.escape(sock)}$}, ready)
      assert_equal "WATCHDOG=1", next_message.call
      assert_equal "WATCHDOG=1", next_message.call

      # a hot restart keeps systemd's sockets, with their settings
      Process.kill("USR2", pid)
      message = next_message.call while message.nil? || message == "WATCHDOG=1"
      assert_match(/^RELOADING=1$/, message)
      message = next_message.call while message.nil? || !message.include?("READY=1")
      message = nil
      served.call("192.0.2.9")

      Process.kill("TERM", pid)
      message = next_message.call while message.nil? || message == "WATCHDOG=1"
      assert_match(/^STOPPING=1$/, message)
      _, status = Timeout.timeout(20) { Process.wait2(pid) }
      pid = nil
      assert status.success?, File.read(File.join(@dir, "err.log"))
      assert File.socket?(sock), "systemd's socket file is systemd's: left in place"
    ensure
      kill_process(pid)
    end
  end

  def test_notify_to_an_abstract_socket_and_reloading_on_hot_restart
    notify_socket(abstract: true) do |notify, next_message|
      cmd = [RbConfig.ruby, KINO, "-m", "threaded", "-w", "1", "-p", "0"]
      with_server(cmd, dir: @dir, env: { "NOTIFY_SOCKET" => notify }) do |port, _banner, pid|
        assert_match(/^READY=1$/, next_message.call)
        Process.kill("USR2", pid)
        assert_match(/^RELOADING=1$/, next_message.call)
        ready = next_message.call
        assert_match(/^READY=1$/, ready)
        assert_match(/^MAINPID=#{pid}$/, ready)
        assert_equal 200, http_get(port).first
      end
    end
  end

  # A socket named "tls" (FileDescriptorName=tls) serves TLS with the tls
  # settings, the other one plain HTTP, before and after a hot restart;
  # curl is the client. A unix socket named tls is refused.
  def test_a_socket_named_tls_serves_tls
    skip "this build has no TLS" unless Kino::Listeners.tls_available?
    _, err, status = run_command(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                  "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "2",
                                  "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                                 dir: @dir, env: NO_PRELOAD)
    assert status.success?, err
    File.write(File.join(@dir, "kino.rb"), "tls cert: \"cert.pem\", key: \"key.pem\"\n")
    tls_port = free_port
    plain_port = free_port
    notify_socket do |notify, next_message|
      kino = [RbConfig.ruby, KINO, "-m", "threaded", "-w", "1", "-C", "kino.rb"]
      cmd = ["systemd-socket-activate", "-l", "127.0.0.1:#{tls_port}", "-l", "127.0.0.1:#{plain_port}",
             "--fdname=tls:web", "-E", "NOTIFY_SOCKET=#{notify}",
             "-E", "LD_PRELOAD=#{ENV.fetch('LD_PRELOAD', '')}", "-E", "GEM_PATH=#{ENV.fetch('GEM_PATH', '')}", *kino]
      pid = Process.spawn(NO_PRELOAD, *cmd, chdir: @dir, out: File::NULL, err: File.join(@dir, "err.log"))
      curl = lambda do |url|
        out, err, status = run_command(["curl", "-sS", "--max-time", "30", "--cacert", "cert.pem", url],
                                       dir: @dir, env: NO_PRELOAD)
        assert status.success?, "curl #{url}: #{err}\n#{File.read(File.join(@dir, 'err.log'))}"
        out
      end
      listening = format(":%04X 00000000:0000 0A", plain_port) # /proc/net/tcp: systemd-socket-activate listens
      Timeout.timeout(20) { sleep 0.05 until File.read("/proc/net/tcp").include?(listening) }
      assert_equal "ok 127.0.0.1", curl.call("https://127.0.0.1:#{tls_port}/") # starts Kino
      assert_match(/^READY=1$/, next_message.call)
      assert_equal "ok 127.0.0.1", curl.call("http://127.0.0.1:#{plain_port}/")
      Process.kill("USR2", pid)
      message = next_message.call until message&.include?("READY=1")
      assert_equal "ok 127.0.0.1", curl.call("https://127.0.0.1:#{tls_port}/")
      assert_equal "ok 127.0.0.1", curl.call("http://127.0.0.1:#{plain_port}/")
      Process.kill("TERM", pid)
      _, status = Timeout.timeout(20) { Process.wait2(pid) }
      pid = nil
      assert status.success?, File.read(File.join(@dir, "err.log"))
    ensure
      kill_process(pid)
    end
  end

  def test_a_unix_socket_named_tls_is_refused
    server = UNIXServer.new(File.join(@dir, "s.sock"))
    fd = server.fileno
    env = { "LISTEN_PID" => Process.pid.to_s, "LISTEN_FDS" => "1", "LISTEN_FDNAMES" => "tls" }
    listeners = Kino::Listeners.parse("tcp://127.0.0.1:0")
    Kino::Inherit.stub(:systemd_fds, [[fd, "tls"]]) do
      error = assert_raises(Kino::Error) { Kino::Inherit.apply(listeners, env) }
      assert_match(/named tls, but TLS is served on TCP sockets only/, error.message)
    end
  ensure
    server&.close
  end

  def test_listen_pid_of_another_process_is_ignored
    listeners = Kino::Listeners.parse("tcp://127.0.0.1:0")
    env = { "LISTEN_PID" => (Process.pid + 1).to_s, "LISTEN_FDS" => "1" }
    assert_equal [nil], Kino::Inherit.apply(listeners, env).map(&:fd)
    assert_empty env
  end

  def test_watchdog_interval
    assert_in_delta 5.0, Kino::Systemd.watchdog_interval("WATCHDOG_USEC" => "10000000")
    assert_nil Kino::Systemd.watchdog_interval("WATCHDOG_USEC" => "10000000", "WATCHDOG_PID" => "1")
    assert_nil Kino::Systemd.watchdog_interval({})
  end
end

# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"

# Hot restart (SIGUSR2) of the kino command under load: no new connection
# is refused or fails, the request in flight finishes, a keep-alive client
# is told Connection: close, the pid and the pidfile stay, and the new
# program (a new boot of the app) serves on the same sockets.
class RestartTest < Minitest::Test
  include TempDir
  include KinoTest
  include KinoProcess

  # The app: its boot stamp and pid; /slow takes 1 s. Shareable, so the
  # same file serves :ractor mode.
  CONFIG_RU = <<~RUBY
    module App
      BOOT = Process.clock_gettime(Process::CLOCK_REALTIME, :nanosecond).to_s.freeze
      def self.call(env)
        sleep 1 if env["PATH_INFO"] == "/slow"
        [200, { "content-type" => "text/plain" }, ["\#{BOOT} \#{Process.pid}"]]
      end
    end
    Ractor.make_shareable(App) if defined?(Ractor)
    run App
  RUBY

  def setup
    File.write(File.join(@dir, "config.ru"), CONFIG_RU)
    File.write(File.join(@dir, "kino.rb"), "pidfile #{File.join(@dir, 'kino.pid').inspect}\nshutdown_timeout 10\n")
  end

  def test_hot_restart_under_load_threaded
    hot_restart_under_load(%w[-m threaded -w 2 -t 2])
  end

  def test_hot_restart_under_load_ractor
    hot_restart_under_load(%w[-m ractor -w 2])
  end

  # The master executes itself again; its worker processes drain first.
  def test_hot_restart_under_load_cluster
    hot_restart_under_load(%w[-m cluster -w 2 -t 2])
  end

  # URG in :cluster with preload false: the worker processes are replaced
  # one at a time under load; no request on a new connection fails, the
  # one in flight on an old worker finishes there and its connection is
  # closed, the master stays.
  def test_phased_restart_under_load_cluster
    File.write(File.join(@dir, "kino.rb"), "preload false\n", mode: "a")
    cmd = [RbConfig.ruby, KINO, "-m", "cluster", "-w", "2", "-t", "2", "-p", "0"]
    with_server(cmd, dir: @dir) do |port, _banner, pid, out|
      Timeout.timeout(20) { sleep 0.05 until child_pids(pid).size == 2 && one_request(port).first == 200 }
      old = child_pids(pid)
      in_flight = TCPSocket.new("127.0.0.1", port)
      in_flight.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
      sleep 0.2
      log = nil
      under_load(port) do
        Process.kill("URG", pid)
        slow = read_response(in_flight, timeout: 20)
        assert_equal 200, slow.status
        assert_includes old, slow.body.split.last.to_i, "finished on the worker it began on"
        log = read_until(out, "phased restart done", 60)
      end
      # that worker drained (Connection: close, or closed while idle)
      assert_equal "", read_all(in_flight, timeout: 10)
      fresh = child_pids(pid)
      assert_equal 2, fresh.size
      assert_empty fresh & old, "every worker process was replaced"
      assert_equal 2, log.scan(/phased restart: worker process \d replaced/).size, log
      assert_includes fresh, one_request(port)[1].split.last.to_i
      assert_equal pid.to_s, File.read(File.join(@dir, "kino.pid")).strip
    ensure
      in_flight&.close
    end
  end

  def test_phased_restart_needs_preload_false
    cmd = [RbConfig.ruby, KINO, "-m", "cluster", "-w", "1", "-p", "0"]
    with_server(cmd, dir: @dir) do |_port, _banner, pid, out|
      workers = child_pids(pid)
      Process.kill("URG", pid)
      assert_includes read_until(out, "needs preload false", 20), "USR2 restarts it"
      assert_equal workers, child_pids(pid)
    end
  end

  # Four clients making one request per new connection from before the
  # block until 0.3 s after it; fails if any of them failed. Returns
  # every [status, body].
  def under_load(port)
    results = Queue.new
    stop = false
    load = Array.new(4) { Thread.new { results << one_request(port) until stop } }
    sleep 0.3
    yield
    sleep 0.3 # load keeps running on the new program
    stop = true
    load.each(&:join)
    all = []
    all << results.pop until results.empty?
    failed = all.reject { |status, _| status == 200 }
    assert_empty failed, "#{failed.size} of #{all.size} requests on new connections failed: " \
                         "#{failed.map(&:first).tally}"
    all
  end

  # One request per new connection: [status or the error's class, body].
  def one_request(port)
    socket = TCPSocket.new("127.0.0.1", port)
    socket.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    response = parse_responses(read_all(socket, timeout: 30)).first
    response ? [response.status, response.body] : [:empty, nil]
  rescue SystemCallError => e
    [e.class, nil]
  ensure
    socket&.close
  end

  # /ready on the control port, on a new connection: its status, or the
  # error's class (a refused connection), or :empty (closed unanswered).
  def probe(cport)
    socket = TCPSocket.new("127.0.0.1", cport)
    socket.write("GET /ready HTTP/1.1\r\nHost: x\r\n\r\n")
    response = parse_responses(read_all(socket, timeout: 30)).first
    response ? response.status : :empty
  rescue SystemCallError => e
    e.class
  ensure
    socket&.close
  end

  # A thread probing /ready on the control port until the block returns;
  # every answer, in order.
  def probing(cport)
    answers = []
    stop = false
    prober = Thread.new do
      until stop
        answers << probe(cport)
        sleep 0.01
      end
    end
    yield
    stop = true
    prober.join
    answers
  end

  def hot_restart_under_load(flags)
    sock = File.join(@dir, "k.sock")
    File.write(File.join(@dir, "kino.rb"), "control_bind \"127.0.0.1:0\"\n", mode: "a")
    cmd = [RbConfig.ruby, KINO, *flags, "-b", "tcp://127.0.0.1:0", "-b", "unix://#{sock}"]
    output = with_server(cmd, dir: @dir) do |port, banner, pid|
      cport = banner[%r{control: http://127\.0\.0\.1:(\d+)}, 1].to_i
      Timeout.timeout(20) { sleep 0.02 until probe(cport) == 200 }
      cluster = flags.include?("cluster") # bodies name the worker process; the stamp is the master's boot
      first_boot = one_request(port)[1].split.first
      assert_equal pid.to_s, File.read(File.join(@dir, "kino.pid")).strip

      idle = TCPSocket.new("127.0.0.1", port) # keep-alive, idle at the signal
      idle.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert_nil read_response(idle)["connection"]

      keep_alive = TCPSocket.new("127.0.0.1", port) # keep-alive, in flight at the signal
      keep_alive.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert_nil read_response(keep_alive)["connection"]
      keep_alive.write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
      sleep 0.2

      boots = []
      all = nil
      # the control plane answers throughout, on the same port: "draining"
      # from the signal on, then the new program's answers
      probes = probing(cport) do
        all = under_load(port) do
          Process.kill("USR2", pid)
          # the request in flight finishes, on the old program, and tells the
          # keep-alive client to reconnect; the idle one is closed
          slow = read_response(keep_alive, timeout: 20)
          assert_equal [200, first_boot, "close"], [slow.status, slow.body.split.first, slow["connection"]]
          assert_equal "", read_all(keep_alive, timeout: 10), "closed after the response"
          assert_equal "", read_all(idle, timeout: 10), "the idle keep-alive connection is closed"
          Timeout.timeout(60) do
            loop do
              status, body = one_request(port)
              boots << body
              break if status == 200 && body.split.first != first_boot
              sleep 0.05
            end
          end
        end
        Timeout.timeout(20) { sleep 0.02 until probe(cport) == 200 } # the new program's workers serve
      end
      assert_empty probes - [200, 503], "every probe answered across the restart: #{probes.tally}"
      assert_includes probes, 503, "draining"
      stamps = all.map { |_, body| body.split.first }.uniq
      assert_includes stamps, first_boot
      assert_operator stamps.size, :>=, 2, "served by the old and then the new program: #{stamps.inspect}"
      new_boot, new_pid = boots.last.split
      assert_equal pid.to_s, new_pid, "same pid" unless cluster
      refute_equal first_boot, new_boot
      assert_equal pid.to_s, File.read(File.join(@dir, "kino.pid")).strip

      unix = UNIXSocket.new(sock)
      unix.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert_equal new_boot, parse_responses(read_all(unix)).first.body.split.first
      unix.close
    ensure
      keep_alive&.close
      idle&.close
    end
    assert_includes output, "USR2 received"
    refute File.exist?(File.join(@dir, "kino.pid")), "removed at the final exit"
    refute File.exist?(sock), "removed at the final exit"
  end

  def test_pidfile_naming_this_process_is_kept_only_after_a_restart
    path = File.join(@dir, "own.pid")
    File.write(path, "#{Process.pid}\n")
    assert_raises(Kino::Error) { Kino::Pidfile.new(path).claim! }
    Kino::Pidfile.new(path).claim!(restarted: true)
    assert_equal Process.pid.to_s, File.read(path).strip
  end

  def test_inherited_listeners_are_matched_by_url
    listeners = Kino::Listeners.parse(["tcp://127.0.0.1:0", "tcp://127.0.0.1:0", "unix:///x/y.sock"])
    extra = TCPServer.new("127.0.0.1", 0)
    spare = extra.fileno
    env = { "KINO_LISTEN_FDS" => "7:tcp://127.0.0.1:0,8:unix:///x/y.sock,#{spare}:tcp://10.0.0.1:80" }
    extra.autoclose = false
    adopted = Kino::Inherit.apply(listeners, env)
    assert_equal [7, nil, 8], adopted.map(&:fd)
    assert_empty env, "the variable is removed"
    assert_raises(Errno::EBADF) { IO.for_fd(spare).close } # closed: no listener wanted it
  end
end

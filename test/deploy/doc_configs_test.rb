# frozen_string_literal: true

require_relative "../helper"
require_relative "../process_helper"
require "digest/sha1"
require "open3"
require "json"
require "tmpdir"

# Every configuration doc/deploy.md shows, run against a real Kino: the
# blocks marked <!-- tested: NAME --> are read out of the doc, their
# ports and paths replaced with free ones and a temporary directory, and
# handed to nginx, HAProxy, systemd-socket-activate or kino itself.
class DocConfigsTest < Minitest::Test
  include KinoTest
  include KinoProcess

  DOC = File.join(ROOT, "doc", "deploy.md")
  NO_PRELOAD = { "LD_PRELOAD" => nil }.freeze # nginx and haproxy are not ours

  # The app: who the client is, and a WebSocket echo (one text frame).
  CONFIG_RU = <<~'RUBY'
    require "digest/sha1"
    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    run lambda { |env|
      if env["HTTP_UPGRADE"].to_s.casecmp?("websocket")
        accept = Digest::SHA1.base64digest(env["HTTP_SEC_WEBSOCKET_KEY"] + GUID)
        echo = lambda do |io|
          b0, b1 = io.read(2).bytes
          mask = io.read(4).bytes
          data = io.read(b1 & 0x7f).bytes.each_with_index.map { |b, i| b ^ mask[i % 4] }.pack("C*")
          io.write([0x81, data.bytesize].pack("CC") + data)
          io.close
        end
        [101, { "upgrade" => "websocket", "connection" => "upgrade", "sec-websocket-accept" => accept }, echo]
      elsif env["PATH_INFO"] == "/slow"
        sleep 2
        [200, {}, ["slow done"]]
      else
        [200, { "content-type" => "text/plain" },
         ["#{env['REMOTE_ADDR']} #{env['REMOTE_PORT']} #{env['HTTP_X_FORWARDED_FOR']}"]]
      end
    }
  RUBY

  def setup
    @dir = Dir.mktmpdir
    File.write(File.join(@dir, "config.ru"), CONFIG_RU)
    @ports = { 9292 => free_port, 9293 => free_port, 8080 => free_port, 8443 => free_port }
    @children = []
  end

  def teardown
    @children.each do |pid|
      Process.kill("TERM", pid)
      Timeout.timeout(10) { Process.wait(pid) }
    rescue Errno::ESRCH, Errno::ECHILD
      nil
    rescue Timeout::Error
      kill_process(pid)
    end
    FileUtils.remove_entry(@dir)
  end

  # The code block of doc/deploy.md marked <!-- tested: +name+ -->, with
  # its ports and /run/kino/ paths made local to this test.
  def block(name)
    doc = File.read(DOC)
    text = doc[/<!-- tested: #{Regexp.escape(name)} -->\n```[a-z]*\n(.*?)```/m, 1]
    flunk "doc/deploy.md has no block marked tested: #{name}" unless text
    localize(text)
  end

  def localize(text)
    text = text.gsub("/run/kino/", "#{@dir}/")
    @ports.each { |doc_port, port| text = text.gsub(/\b#{doc_port}\b/, port.to_s) }
    text
  end

  def port(doc_port)
    @ports.fetch(doc_port)
  end

  # Start a child; it is stopped (TERM) after the test.
  def spawn_child(env, *cmd, log:)
    pid = Process.spawn(env, *cmd, chdir: @dir, out: log, err: log)
    @children << pid
    pid
  end

  # Start kino with the config block +name+; returns its pid once it
  # serves (its banner is in kino.log).
  def start_kino(name, *args)
    File.write(File.join(@dir, "kino.rb"), block(name))
    log = File.join(@dir, "kino.log")
    pid = spawn_child({}, RbConfig.ruby, KINO, "-m", "threaded", "-w", "1", "-C", "kino.rb", *args, log: log)
    Timeout.timeout(30) { sleep 0.05 until File.exist?(log) && File.read(log).include?("Ctrl-C") }
    pid
  rescue Timeout::Error
    flunk "kino did not start:\n#{File.read(log)}"
  end

  def wait_for_port(port, log)
    Timeout.timeout(20) do
      loop do
        TCPSocket.new("127.0.0.1", port).close
        break
      rescue Errno::ECONNREFUSED
        sleep 0.05
      end
    end
  rescue Timeout::Error
    flunk "nothing listens on #{port}:\n#{File.read(log) rescue ''}"
  end

  def start_nginx(http: "", stream: "")
    %w[client proxy fastcgi uwsgi scgi].each { |t| FileUtils.mkdir_p(File.join(@dir, "nginx-#{t}")) }
    conf = File.join(@dir, "nginx.conf")
    File.write(conf, <<~CONF)
      load_module /usr/lib/nginx/modules/ngx_stream_module.so;
      #{'user root;' if Process.uid.zero?} # workers that may open the test's private socket
      daemon off;
      pid #{@dir}/nginx.pid;
      error_log #{@dir}/nginx-error.log;
      events { worker_connections 256; }
      http {
        access_log off;
        client_body_temp_path #{@dir}/nginx-client;
        proxy_temp_path #{@dir}/nginx-proxy;
        fastcgi_temp_path #{@dir}/nginx-fastcgi;
        uwsgi_temp_path #{@dir}/nginx-uwsgi;
        scgi_temp_path #{@dir}/nginx-scgi;
        #{http}
      }
      stream {
        #{stream}
      }
    CONF
    out, status = Open3.capture2e(NO_PRELOAD, "nginx", "-t", "-p", @dir, "-c", conf)
    assert status.success?, "nginx -t:\n#{out}"
    spawn_child(NO_PRELOAD, "nginx", "-p", @dir, "-c", conf, log: File.join(@dir, "nginx.log"))
  end

  def start_haproxy(snippet)
    cfg = File.join(@dir, "haproxy.cfg")
    File.write(cfg, <<~CFG)
      global
        pidfile #{@dir}/haproxy.pid
      defaults
        timeout connect 5s
        timeout client 30s
        timeout server 30s
      #{snippet}
    CFG
    out, status = Open3.capture2e(NO_PRELOAD, "haproxy", "-c", "-f", cfg)
    assert status.success?, "haproxy -c:\n#{out}"
    spawn_child(NO_PRELOAD, "haproxy", "-f", cfg, log: File.join(@dir, "haproxy.log"))
  end

  def kino_stats
    JSON.parse(get(port(9293), "/stats").body)
  end

  def test_nginx_over_a_unix_socket_with_keepalive_and_websockets
    start_kino("kino-unix")
    start_nginx(http: block("nginx-unix"))
    wait_for_port(port(8080), File.join(@dir, "nginx-error.log"))

    client = TCPSocket.new("127.0.0.1", port(8080))
    30.times do
      client.write("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
      response = read_response(client)
      assert_equal 200, response.status
      assert_match(/\A127\.0\.0\.1 0 127\.0\.0\.1\z/, response.body) # unix socket; X-Forwarded-For
    end
    client.close
    accepted = kino_stats["accepted"]
    assert_operator accepted, :<=, 3, "nginx reuses its connections to Kino (keepalive)"

    ws = TCPSocket.new("127.0.0.1", port(8080))
    key = ["0123456789abcdef"].pack("m0")
    ws.write("GET /chat HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
             "Sec-WebSocket-Key: #{key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
    head = +""
    head << ws.readpartial(1) until head.end_with?("\r\n\r\n")
    assert_match(%r{\AHTTP/1\.1 101 }, head)
    assert_includes head.downcase, "sec-websocket-accept: #{Digest::SHA1.base64digest(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').downcase}"
    mask = [1, 2, 3, 4]
    payload = "hello through nginx"
    masked = payload.bytes.each_with_index.map { |b, i| b ^ mask[i % 4] }.pack("C*")
    ws.write([0x81, 0x80 | payload.bytesize, *mask].pack("C*") + masked)
    frame = Timeout.timeout(10) { ws.read(2 + payload.bytesize) }
    assert_equal [0x81, payload.bytesize].pack("CC") + payload, frame
  ensure
    ws&.close
  end

  def test_haproxy_with_proxy_protocol_v2_and_v1_and_ready_checks
    start_kino("kino-haproxy")
    config = block("haproxy")
    [config, config.sub("send-proxy-v2", "send-proxy")].each_with_index do |cfg, i|
      pid = start_haproxy(cfg)
      wait_for_port(port(8080), File.join(@dir, "haproxy.log"))
      response = client_port = nil
      Timeout.timeout(20) do # until the health check (/ready) marks Kino up
        loop do
          socket = TCPSocket.new("127.0.0.1", port(8080))
          client_port = socket.local_address.ip_port
          socket.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
          response = parse_responses(read_all(socket)).first
          socket.close
          break if response&.status == 200

          sleep 0.2
        end
      end
      addr, remote_port = response.body.split
      assert_equal "127.0.0.1", addr
      assert_equal client_port.to_s, remote_port, "the client's own port, from the PROXY header (#{i.zero? ? 'v2' : 'v1'})"
      Process.kill("TERM", pid)
      Process.wait(pid)
      @children.delete(pid)
    end
  end

  def test_nginx_stream_sends_proxy_protocol_v1
    start_kino("kino-haproxy") # the same Kino: PROXY protocol on 9292
    start_nginx(stream: block("nginx-stream"))
    wait_for_port(port(8443), File.join(@dir, "nginx-error.log"))
    socket = TCPSocket.new("127.0.0.1", port(8443))
    socket.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    addr, remote_port = parse_responses(read_all(socket)).first.body.split
    assert_equal ["127.0.0.1", socket.local_address.ip_port.to_s], [addr, remote_port]
  ensure
    socket&.close
  end

  def test_systemd_units_through_systemd_socket_activate
    socket_unit = block("systemd-socket")
    service = block("systemd-service")
    listens = socket_unit.scan(/^ListenStream=(.+)$/).flatten
    name = socket_unit[/^FileDescriptorName=(.+)$/, 1]
    exec = service[/^ExecStart=(.+)$/, 1].split
    assert_equal "/usr/local/bin/kino", exec.first
    assert_equal "notify", service[/^Type=(.+)$/, 1]
    assert_equal "/bin/kill -USR2 $MAINPID", service[/^ExecReload=(.+)$/, 1]
    notify = Socket.new(:UNIX, :DGRAM)
    notify.bind(Socket.sockaddr_un(File.join(@dir, "notify.sock")))
    cmd = ["systemd-socket-activate", *listens.flat_map { |l| ["-l", l] }, "--fdname=#{name}",
           "-E", "NOTIFY_SOCKET=#{@dir}/notify.sock", "-E", "LD_PRELOAD=#{ENV.fetch('LD_PRELOAD', '')}",
           RbConfig.ruby, KINO, *exec.drop(1)]
    spawn_child(NO_PRELOAD, *cmd, log: File.join(@dir, "activate.log"))
    sock = listens.find { |l| l.start_with?("/") }
    Timeout.timeout(10) { sleep 0.05 until File.socket?(sock) }
    assert_equal 200, http_get(port(9292)).first # starts Kino; waits in the backlog meanwhile
    raise Timeout::Error, "no READY=1" unless notify.wait_readable(20)

    assert_match(/^READY=1$/, notify.recv(4096))
    unix = UNIXSocket.new(sock)
    unix.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert_equal 200, parse_responses(read_all(unix)).first.status
  ensure
    unix&.close
    notify&.close
  end

  def test_container_entry_point
    cmd = block("container")[/^CMD (\[.*\])$/, 1]
    argv = JSON.parse(cmd)
    assert_equal "kino", argv.first
    File.write(File.join(@dir, "config", "kino.rb").tap { |p| FileUtils.mkdir_p(File.dirname(p)) }, "workers 1\n")
    with_server([RbConfig.ruby, KINO, "-m", "threaded", *argv.drop(1)], dir: @dir) do |listening, banner|
      assert_includes banner, "listening: http://0.0.0.0:#{port(9292)}"
      assert_equal port(9292), listening
      assert_equal 200, http_get(port(9292)).first
    end
  end

  def test_kubernetes_probes_and_the_term_drain
    yaml = block("k8s")
    assert_equal %w[/live /ready], yaml.scan(/path: (\S+),/).flatten
    assert_equal [port(9293)] * 2, yaml.scan(/path: \S+, port: (\d+)/).flatten.map(&:to_i)
    grace = yaml[/terminationGracePeriodSeconds: (\d+)/, 1].to_i
    config = block("kino-k8s")
    assert_operator config[/shutdown_timeout (\d+)/, 1].to_i, :<, grace
    pid = start_kino("kino-k8s", "-b", "tcp://127.0.0.1:#{port(9292)}")
    ready = nil # 503 "booting" until a worker has booted: the probe polls, as the kubelet does
    Timeout.timeout(10) { sleep 0.02 until (ready = get(port(9293), "/ready")).status == 200 }
    assert_equal "ready\n", ready.body

    slow = Thread.new { get(port(9292), "/slow") }
    Timeout.timeout(10) { sleep 0.02 until kino_stats["in_flight"] == 1 }
    Process.kill("TERM", pid)
    Timeout.timeout(10) { sleep 0.02 until get(port(9293), "/ready").status == 503 }
    assert_equal 200, get(port(9293), "/live").status, "alive while draining"
    assert_equal [200, "slow done"], slow.value.then { |r| [r.status, r.body] }
    _, status = Timeout.timeout(grace) { Process.wait2(pid) }
    @children.delete(pid)
    assert_equal 0, status.exitstatus
  end
end

# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"
require_relative "websocket_echo"
require "digest/sha1"
require "websocket/driver"
require "nio"
require "json"
require "tmpdir"

Warning[:experimental] = false

# Rack hijack over real sockets: full hijack (env["rack.hijack"]), partial
# hijack (the rack.hijack response header), 101 responses with a callable
# body, in :threaded and :ractor mode; WebSocket echo servers built on
# websocket-driver, faye-websocket (EventMachine) and nio4r (what
# ActionCable uses), talked to by websocket-driver's client and curl.
class HijackTest < Minitest::Test
  include KinoTest
  include KinoProcess

  KEY = "dGhlIHNhbXBsZSBub25jZQ==" # RFC 6455's example key
  ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
  UPGRADE = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
            "Sec-WebSocket-Key: #{KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"

  # The server side of RFC 6455, just enough for an echo: shareable (a
  # module), so it runs in worker ractors, where websocket-driver cannot
  # (its mask extension is not marked Ractor-safe).
  module MiniEcho
    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def self.accept(key) = Digest::SHA1.base64digest(key + GUID)

    # Echo text frames until a close frame (answered) or EOF.
    def self.serve(io)
      buffer = "".b
      loop do
        while (frame = take_frame(buffer))
          opcode, payload = frame
          if opcode == 8
            io.write([0x88, payload.bytesize].pack("CC") + payload)
            return
          end
          io.write([0x81, payload.bytesize].pack("CC") + payload) if opcode == 1
        end
        buffer << io.readpartial(4096)
      end
    rescue EOFError, IOError, SystemCallError
      nil
    ensure
      io.close unless io.closed?
    end

    # One masked client frame (payload < 126 bytes) off the buffer.
    def self.take_frame(buffer)
      return nil if buffer.bytesize < 2

      opcode = buffer.getbyte(0) & 0x0f
      length = buffer.getbyte(1) & 0x7f
      return nil if buffer.bytesize < 6 + length

      mask = buffer.byteslice(2, 4).bytes
      payload = buffer.byteslice(6, length).bytes.each_with_index.map { |b, i| b ^ mask[i % 4] }.pack("C*")
      buffer.replace(buffer.byteslice((6 + length)..))
      [opcode, payload]
    end

    # /full: full hijack, the handshake written by the app; /stream: a 101
    # response whose callable body speaks WebSocket; else plain HTTP.
    def self.call(env)
      case env["PATH_INFO"]
      when "/full"
        io = env["rack.hijack"].call
        io.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
                 "Sec-WebSocket-Accept: #{accept(env['HTTP_SEC_WEBSOCKET_KEY'])}\r\n\r\n")
        serve(io)
        [-1, {}, []] # ignored: the connection is the app's
      when "/stream"
        [101, { "upgrade" => "websocket", "connection" => "Upgrade",
                "sec-websocket-accept" => accept(env["HTTP_SEC_WEBSOCKET_KEY"]) },
         ->(io) { serve(io) }]
      when "/partial"
        [200, { "rack.hijack" => ->(io) { io.write("partial in #{Ractor.current.name}"); io.close } }, []]
      else
        [200, {}, ["plain #{env['rack.hijack?']}"]]
      end
    end
  end

  # websocket-driver's server side over a fully hijacked socket.
  DRIVER_ECHO = WebSocketEcho.new { "echo" }

  # ActionCable's way: one NIO::Selector thread watches every hijacked
  # socket (through to_io) and uses read_nonblock/write_nonblock with
  # exception: false. After answering a close frame it closes the TCP
  # connection (the server closes first, RFC 6455 section 7.1.1), and a
  # reset counts as the client leaving: websocket-driver's client can send
  # a second close frame (its close writes the frame before it records
  # that it is closing, so a fast reply reads as the server's own close)
  # and then close its socket, which resets a connection that answers it.
  class NioEcho
    def initialize
      @selector = NIO::Selector.new
      @queue = Queue.new
      @thread = Thread.new { run }
    end

    def call(env)
      io = env["rack.hijack"].call
      io.write_nonblock("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" \
                        "Sec-WebSocket-Accept: #{MiniEcho.accept(env['HTTP_SEC_WEBSOCKET_KEY'])}\r\n\r\n",
                        exception: false)
      @queue << io
      @selector.wakeup
      [-1, {}, []]
    end

    def stop
      @stopped = true
      @selector.wakeup
      @thread.join(5)
      @selector.close
    end

    private

    # What the client sent, :wait_readable, or nil once it left (EOF or reset).
    def read(io)
      io.read_nonblock(4096, exception: false)
    rescue Errno::ECONNRESET
      nil
    end

    def run
      buffers = {}.compare_by_identity
      until @stopped
        @selector.register(@queue.pop, :r).tap { |m| buffers[m.io] = "".b } until @queue.empty?
        @selector.select(1) do |monitor|
          data = read(monitor.io)
          next if data == :wait_readable

          done = data.nil?
          buffer = buffers[monitor.io] << data.to_s
          until done || !(frame = MiniEcho.take_frame(buffer))
            opcode, payload = frame
            monitor.io.write_nonblock([opcode == 8 ? 0x88 : 0x81, payload.bytesize].pack("CC") + payload,
                                      exception: false)
            done = opcode == 8
          end
          next unless done

          monitor.close
          monitor.io.close
        end
      end
    end
  end

  # websocket-driver's client over a real socket.
  class Client
    attr_reader :url

    def initialize(port, path)
      @url = "ws://127.0.0.1:#{port}#{path}"
      @socket = TCPSocket.new("127.0.0.1", port)
      @events = Queue.new
      @driver = WebSocket::Driver.client(self)
      @driver.on(:open) { @events << :open }
      @driver.on(:message) { |e| @events << e.data }
      @driver.on(:close) { |e| @events << [:close, e.code] }
      @driver.on(:error) { |e| @events << [:error, e.message] }
      @driver.start
      @reader = Thread.new do
        loop { @driver.parse(@socket.readpartial(4096)) }
      rescue EOFError, IOError, SystemCallError
        @events << :eof
      end
    end

    def write(data) = @socket.write(data)
    def text(message) = @driver.text(message)
    def close = @driver.close
    def status = @driver.status
    def headers = @driver.headers

    def next_event(timeout = 5)
      Timeout.timeout(timeout) { @events.pop }
    end

    def shutdown
      @socket.close unless @socket.closed?
      @reader.join(5)
    end
  end

  def echo_round_trip(port, path, reply_prefix: "")
    client = Client.new(port, path)
    assert_equal :open, client.next_event
    assert_equal 101, client.status
    client.text("hello")
    assert_equal "#{reply_prefix}hello", client.next_event
    client.text("again")
    assert_equal "#{reply_prefix}again", client.next_event
    client.close
    assert_equal [:close, 1000], client.next_event
    client
  ensure
    client&.shutdown
  end

  # --- full hijack ---------------------------------------------------

  def test_full_hijack_hands_over_a_real_socket_with_the_bytes_read_ahead
    seen = Queue.new
    app = lambda do |env|
      io = env["rack.hijack"].call
      seen << [env["rack.hijack?"], io.class, io.to_io.equal?(io), env["rack.hijack_io"].equal?(io),
               env["rack.hijack"].call.equal?(io)]
      first = io.read_nonblock(100, exception: false) # the pipelined bytes, at once
      second = io.read_nonblock(100, exception: false)
      io.write_nonblock("first=#{first} second=#{second.inspect}\n", exception: false)
      io.write("after: #{io.readpartial(100)}")
      io.close
      [-1, {}, []] # faye-websocket's answer: ignored, no 500
    end
    serve(app, lint: false) do |server|
      socket = connect(server.port)
      socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\nEARLY")
      assert_equal "first=EARLY second=:wait_readable\n", socket.gets
      socket.write("LATER")
      assert_equal "after: LATER", read_all(socket)
      hijacked, klass, to_io, hijack_io, same = seen.pop
      assert hijacked
      assert klass <= TCPSocket
      assert to_io && hijack_io && same
      assert wait_until { server.stats[:connections].zero? }
      assert_equal 1, server.stats[:hijacked]
      assert_equal 0, server.stats[:served]
    end
  end

  def test_full_hijack_on_a_unix_listener_gives_a_unix_socket
    app = lambda do |env|
      io = env["rack.hijack"].call
      io.write("#{io.class} #{io.readpartial(10)}")
      io.close
      [-1, {}, []]
    end
    Dir.mktmpdir("kino-hijack") do |dir|
      path = File.join(dir, "k.sock")
      serve(app, lint: false, bind: "unix://#{path}") do
        socket = UNIXSocket.new(path)
        socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\nLEFT")
        assert_equal "UNIXSocket LEFT", read_all(socket)
      ensure
        socket&.close
      end
    end
  end

  def test_nothing_is_written_after_a_full_hijack_whatever_the_app_returns
    responses = [[-1, {}, []], [200, { "content-length" => "3" }, ["bad"]], nil, [500, "junk", 42]]
    responses.each do |response|
      app = lambda do |env|
        io = env["rack.hijack"].call
        Thread.new { sleep 0.2; io.write("mine"); io.close }
        response
      end
      serve(app, lint: false) do |server|
        assert_equal "mine", raw(server.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"), response.inspect
        assert_equal 0, server.stats[:errors]
      end
    end
  end

  def test_an_app_error_after_a_full_hijack_is_reported_and_nothing_is_written
    app = lambda do |env|
      io = env["rack.hijack"].call
      io.write("mine")
      io.close
      raise "after the hijack"
    end
    serve(app, lint: false, quiet: true) do |server, errors|
      assert_equal "mine", raw(server.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert_equal "after the hijack", errors.pop.message
    end
  end

  def test_request_timeout_never_touches_a_hijacked_connection
    app = lambda do |env|
      io = env["rack.hijack"].call
      Kino.sleep(2.0) # past request_timeout, the worker still holding it
      io.write("late but mine")
      io.close
      [-1, {}, []]
    end
    serve(app, lint: false, request_timeout: 1.5) do |server| # generous: taken in time even under load
      assert_equal "late but mine", raw(server.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert_equal 0, server.stats[:timeouts]
    end
  end

  def test_a_hijacked_connection_outlives_the_server
    held = Queue.new
    app = lambda do |env|
      held << env["rack.hijack"].call
      [-1, {}, []]
    end
    socket = nil
    serve(app, lint: false) do |server|
      socket = connect(server.port)
      socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert wait_until { !held.empty? }
    end
    io = Timeout.timeout(5) { held.pop }
    io.write("still here") # shutdown closed everything of its own, not this
    io.close
    assert_equal "still here", read_all(socket)
  ensure
    socket&.close
  end

  def test_rack_hijack_outside_its_request_raises
    kept = Queue.new
    app = lambda do |env|
      kept << env["rack.hijack"]
      [200, {}, ["ok"]]
    end
    serve(app, lint: false) do |server|
      assert_equal 200, get(server.port).status
      error = assert_raises(IOError) { kept.pop.call }
      assert_match(/outside the request/, error.message)
    end
  end

  # --- partial hijack and 101 --------------------------------------

  def test_partial_hijack_writes_the_head_without_framing_then_hands_over
    app = lambda do |_env|
      taker = lambda do |stream|
        stream.write("body from #{stream.read(4)}")
        stream.close
      end
      [200, { "content-type" => "text/plain", "x-mine" => "1", "rack.hijack" => taker }, []]
    end
    serve(app) do |server|
      data = raw(server.port, "POST / HTTP/1.1\r\nHost: x\r\n\r\nPING")
      head, body = data.split("\r\n\r\n", 2)
      assert_match(%r{\AHTTP/1.1 200 OK\r\n}, head)
      assert_includes head, "x-mine: 1"
      refute_match(/content-length|transfer-encoding/i, head)
      assert_equal "body from PING", body
      assert_equal 1, server.stats[:hijacked]
    end
  end

  def test_partial_hijack_drops_framing_headers_the_app_set
    app = ->(_env) { [200, { "content-length" => "99", "rack.hijack" => ->(io) { io.write("raw"); io.close } }, []] }
    serve(app, lint: false) do |server|
      data = raw(server.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      refute_match(/content-length/i, data)
      assert data.end_with?("\r\n\r\nraw"), data
    end
  end

  def test_101_with_a_callable_body_keeps_the_upgrade_headers_and_speaks_websocket
    serve(MiniEcho, lint: false) do |server|
      client = echo_round_trip(server.port, "/stream")
      assert_equal "Upgrade", client.headers["Connection"]
      assert_equal "websocket", client.headers["Upgrade"]
      assert_nil client.headers["Content-Length"]
      assert_nil client.headers["Transfer-Encoding"]
      assert_equal "plain true", get(server.port).body # the server still serves HTTP
    end
  end

  def test_frames_after_a_101_are_never_parsed_as_http
    serve(MiniEcho, lint: false) do |server|
      socket = connect(server.port)
      mask = [9, 8, 7, 6]
      frame = [0x81, 0x80 | 3, *mask, *"GET".bytes.each_with_index.map { |b, i| b ^ mask[i % 4] }].pack("C*")
      socket.write(UPGRADE.sub("/ws", "/stream") + frame) # the frame right behind the handshake
      data = "".b
      Timeout.timeout(5) { data << socket.readpartial(4096) until data.include?("\r\n\r\n\x81\x03GET".b) }
      head, frames = data.split("\r\n\r\n", 2)
      response = parse_head(head)
      assert_equal 101, response.status
      assert_equal ACCEPT, response["sec-websocket-accept"]
      assert_equal [0x81, 3].pack("CC") + "GET", frames # echoed as a frame, not answered as HTTP
      refute_includes read_all(socket, timeout: 0.3), "HTTP/1.1"
    ensure
      socket&.close
    end
  end

  def test_curl_sees_the_raw_handshake
    serve(MiniEcho, lint: false) do |server|
      # curl runs without the sanitizer runtime the SANITIZE=1 suite preloads
      argv = ["curl", "-s", "-i", "-N", "--max-time", "2", "-H", "Connection: Upgrade", "-H", "Upgrade: websocket",
              "-H", "Sec-WebSocket-Key: #{KEY}", "-H", "Sec-WebSocket-Version: 13",
              "http://127.0.0.1:#{server.port}/stream"]
      out = IO.popen({ "LD_PRELOAD" => nil }, argv) do |io|
        Timeout.timeout(10) { io.read }
      rescue Timeout::Error
        Process.kill(:KILL, io.pid)
        raise
      end
      assert_match(%r{\AHTTP/1.1 101 Switching Protocols\r\n}, out)
      assert_match(/^upgrade: websocket\r$/i, out)
      assert_match(/^connection: Upgrade\r$/i, out)
      assert_match(/^sec-websocket-accept: #{Regexp.escape(ACCEPT)}\r$/i, out)
      refute_match(/content-length|transfer-encoding/i, out)
    end
  end

  # --- real WebSocket servers ----------------------------------------

  def test_websocket_driver_echo_over_a_full_hijack_threaded
    serve(DRIVER_ECHO, lint: false, control_bind: "127.0.0.1:0") do |server|
      echo_round_trip(server.port, "/chat", reply_prefix: "echo: ")
      echo_round_trip(server.port, "/chat", reply_prefix: "echo: ")
      assert_equal 2, server.stats[:hijacked]
      control = server.control_url[/\d+\z/].to_i # every stats surface counts them
      assert_equal 2, JSON.parse(get(control, "/stats").body)["hijacked"]
      assert_match(/^kino_connections_hijacked_total 2$/, get(control, "/metrics").body)
    end
  end

  def test_faye_websocket_echo_over_eventmachine_threaded
    require "faye/websocket"
    reactor = Thread.new { EM.run }
    Timeout.timeout(5) { sleep 0.01 until EM.reactor_running? }
    app = lambda do |env|
      next [200, {}, ["plain"]] unless Faye::WebSocket.websocket?(env)

      ws = Faye::WebSocket.new(env)
      ws.on(:message) { |e| ws.send("faye: #{e.data}") }
      ws.rack_response # [-1, {}, []]
    end
    serve(app, lint: false) do |server|
      echo_round_trip(server.port, "/faye", reply_prefix: "faye: ")
      assert_equal 1, server.stats[:hijacked]
      assert_equal 0, server.stats[:errors]
    end
  ensure
    EM.stop if defined?(EM) && EM.reactor_running?
    reactor&.join(5)
  end

  def test_nio4r_watches_hijacked_sockets_as_actioncable_does
    app = NioEcho.new
    serve(app, lint: false) do |server|
      3.times { echo_round_trip(server.port, "/cable") }
      assert_equal 3, server.stats[:hijacked]
    end
  ensure
    app&.stop
  end

  # websocket-driver's echo in every worker process of `kino -m cluster`,
  # labelled with the worker's pid.
  CLUSTER_APP = <<~RUBY
    require #{File.join(__dir__, 'websocket_echo').inspect}
    run WebSocketEcho.new { Process.pid.to_s }
  RUBY

  def test_websocket_driver_echo_in_cluster_mode
    Dir.mktmpdir("kino-hijack") do |dir|
      File.write(File.join(dir, "config.ru"), CLUSTER_APP)
      cmd = [RbConfig.ruby, KINO, "-p", "0", "-m", "cluster", "-w", "2", "-t", "2"]
      with_server(cmd, dir: dir, timeout: 45) do |port|
        pids = Array.new(6) { get(port).body }.uniq
        client = Client.new(port, "/cluster")
        assert_equal :open, client.next_event(15)
        client.text("hello")
        pid, text = client.next_event(15).split(": ", 2)
        assert_equal "hello", text
        assert_includes pids, pid if pids.size == 2 # served by a worker process, not the master
        client.close
        assert_equal [:close, 1000], client.next_event(15)
      ensure
        client&.shutdown
      end
    end
  end

  def test_ractor_mode_full_and_partial_hijack_and_101
    serve(MiniEcho, lint: false, mode: :ractor, workers: 2, threads: 2, on_error: nil) do |server|
      assert_equal :ractor, server.mode
      echo_round_trip(server.port, "/full")
      echo_round_trip(server.port, "/stream")
      assert_equal "plain true", get(server.port).body
      assert_match(/\r\n\r\npartial in kino-worker-\d\z/, raw(server.port, "GET /partial HTTP/1.1\r\nHost: x\r\n\r\n"))
      assert wait_until { server.stats[:connections].zero? }
      assert_equal 3, server.stats[:hijacked]
    end
  end
end

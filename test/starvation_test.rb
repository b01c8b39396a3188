# frozen_string_literal: true

require_relative "helper"

# A handful of hostile connections must never stop Kino from answering
# everyone else. Each test runs an attack in every mode while a normal
# client asks for /ping every 0.25 s, asserts every probe is answered
# within PATIENCE (a generous bound: unattacked it takes about a
# millisecond, starved it never comes while the attack lasts; the latency
# figures are in bench/slow_clients.rb and doc/security.md), then checks
# the attack's connections are cleaned up.
class StarvationTest < Minitest::Test
  include KinoTest

  # Shareable, so the same app serves :ractor mode: /ping answers, /echo
  # reads the whole body, /big answers 8 MiB from an Array.
  module App
    BIG = ("x" * (8 << 20)).freeze

    def self.call(env)
      case env["PATH_INFO"]
      when "/echo" then [200, {}, [env["rack.input"].read.bytesize.to_s]]
      when "/sum"
        body = env["rack.input"].read
        [200, {}, ["#{body.bytesize} #{body.sum(32)}"]]
      when "/big" then [200, {}, [BIG]]
      else [200, {}, ["pong"]]
      end
    end
  end

  # Far above a probe's latency on a loaded machine (1.6 s seen with seven
  # suites running at once), far below how long each attack lasts.
  PATIENCE = 3.0

  MODES = { threaded: { mode: :threaded, workers: 2, threads: 3 },
            ractor: { mode: :ractor, workers: 2, threads: 1, on_error: nil },
            cluster: { mode: :cluster, workers: 2, threads: 3 } }.freeze

  def each_mode(**options)
    MODES.each do |name, mode|
      next if name == :ractor && !ractors?

      serve(App, lint: false, **mode, **options) { |server| yield server, name }
    end
  end

  def ractors?
    Ractor.respond_to?(:new)
  end

  # Probes /ping every 0.25 s for +seconds+; returns the slowest answer
  # (Float::INFINITY when one never came).
  def probe(port, seconds)
    worst = 0.0
    stop = monotonic + seconds
    while monotonic < stop
      t0 = monotonic
      response = begin
        Timeout.timeout(5) { get(port, "/ping") }
      rescue Timeout::Error
        nil
      end
      worst = [worst, response&.body == "pong" ? monotonic - t0 : Float::INFINITY].max
      sleep 0.25
    end
    worst
  end

  def assert_served(port, seconds, what)
    worst = probe(port, seconds)
    assert_operator worst, :<, PATIENCE, "#{what}: a normal request waited #{worst.round(3)} s"
  end

  def assert_cleaned_up(server, baseline, what)
    settled = wait_until { server.stats[:connections] <= baseline && server.stats[:in_flight].zero? }
    assert settled, "#{what}: connections did not go back to #{baseline}: #{server.stats.inspect}"
  end

  # Issue: slow request bodies held workers. The I/O thread now gathers
  # bodies (up to 1 MiB) before a worker sees them.
  def test_slow_request_bodies_hold_no_worker
    each_mode do |server, mode|
      attackers = Array.new(8) do
        s = connect(server.port)
        s.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        s
      end
      trickle = Thread.new do
        5.times do
          attackers.each { |s| s.write("a") }
          sleep 1
        end
      end
      assert_served(server.port, 4, "#{mode}: 8 slow bodies")
      trickle.join
      attackers.each(&:close)
      assert_cleaned_up(server, 0, mode)
    end
  end

  # The gathered body is the body: in pieces, with pauses, both framings.
  def test_gathered_bodies_arrive_whole
    each_mode do |server, mode|
      body = Random.new(1).bytes(300_000)
      socket = connect(server.port)
      socket.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: #{body.bytesize}\r\n\r\n")
      body.bytes.each_slice(100_000) do |slice|
        socket.write(slice.pack("C*"))
        sleep 0.1
      end
      assert_equal body.bytesize.to_s, read_response(socket).body, mode
      socket.write("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
      body.bytes.each_slice(70_000) do |slice|
        socket.write("#{slice.size.to_s(16)}\r\n#{slice.pack('C*')}\r\n")
        sleep 0.05
      end
      socket.write("0\r\n\r\n")
      assert_equal body.bytesize.to_s, read_response(socket).body, mode
      socket.close
    end
  end

  # A body whose rest already waits in the socket goes to a worker at once,
  # which reads it from there (kino.c, body_buffered): sent with its head
  # in one write, or after the head, it arrives whole and in order, and a
  # request pipelined behind it is answered after it.
  def test_a_body_already_in_the_socket_arrives_whole
    each_mode do |server, mode|
      body = Random.new(2).bytes(200_000)
      head = "POST /sum HTTP/1.1\r\nHost: x\r\nContent-Length: #{body.bytesize}\r\n\r\n"
      ping = "GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
      socket = connect(server.port)
      socket.write(head + body + ping)
      assert_equal "#{body.bytesize} #{body.sum(32)}", read_response(socket).body, mode
      assert_equal "pong", read_response(socket).body, mode
      socket.write(head)
      sleep 0.1
      socket.write(body + ping)
      assert_equal "#{body.bytesize} #{body.sum(32)}", read_response(socket).body, mode
      assert_equal "pong", read_response(socket).body, mode
      socket.close
    end
  end

  # Bodies past what the I/O thread gathers are streamed by the worker,
  # which must then keep up a minimum rate: a trickle is cut off (408)
  # long before body_timeout.
  def test_a_trickled_large_body_is_cut_off
    each_mode(body_timeout: 60) do |server, mode|
      socket = connect(server.port)
      socket.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: #{3 << 20}\r\n\r\n")
      socket.write("a" * (2 << 20))
      t0 = monotonic
      response = nil
      until response || monotonic - t0 > 30
        begin
          socket.write("a")
        rescue Errno::EPIPE, Errno::ECONNRESET
          break
        end
        response = read_response(socket, timeout: 1) rescue nil # rubocop:disable Style/RescueModifier
      end
      response ||= parse_responses(read_all(socket, timeout: 2)).first
      assert_equal 408, response&.status, "#{mode}: a trickled streamed body gets 408"
      socket.close
      assert_cleaned_up(server, 0, mode)
    end
  end

  # Issue: a chunk announced past max_body_size (or past 2^63) made the
  # worker wait for it. Now the answer comes at once.
  def test_impossible_chunk_sizes_are_answered_at_once
    each_mode(body_timeout: 60) do |server, mode|
      { "4000000" => 413, "fffffffffffffff0" => 400 }.each do |size, status|
        socket = connect(server.port)
        socket.write("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n#{size}\r\n")
        response = parse_responses(read_all(socket, timeout: 10)).first
        assert_equal status, response&.status, "#{mode}: chunk size #{size}"
        socket.close
      end
      assert_cleaned_up(server, 0, mode)
    end
  end

  def test_an_impossible_chunk_size_without_a_body_limit_is_a_400
    serve(App, lint: false, mode: :threaded, max_body_size: nil, body_timeout: 60) do |server|
      socket = connect(server.port)
      socket.write("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff0\r\n")
      assert_equal 400, parse_responses(read_all(socket, timeout: 10)).first&.status
      socket.close
    end
  end

  # Issue: clients that asked for a large response and never read it held
  # workers. The I/O thread now finishes responses whose bytes are known.
  def test_slow_readers_of_large_responses_hold_no_worker
    each_mode do |server, mode|
      readers = Array.new(8) do
        s = Socket.new(:INET, :STREAM)
        s.setsockopt(Socket::SOL_SOCKET, Socket::SO_RCVBUF, 4096)
        s.connect(Socket.sockaddr_in(server.port, "127.0.0.1"))
        s.write("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        s
      end
      assert_served(server.port, 3, "#{mode}: 8 clients not reading 8 MiB")
      readers.each(&:close)
      assert_cleaned_up(server, 0, mode)
    end
  end

  # Issue: at max_connections, idle keep-alive connections kept every new
  # client out until their timeout. Now the oldest idle one makes way.
  def test_idle_connections_make_way_at_the_connection_cap
    each_mode(max_connections: 20) do |server, mode|
      idle = Array.new(20) do
        s = connect(server.port)
        s.write("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        assert_equal "pong", read_response(s).body
        s
      end
      assert_served(server.port, 1, "#{mode}: 20 idle keep-alive connections at a cap of 20")
      unless mode == :cluster # there each worker process has its own cap: none is reached
        made_way = idle.count { |s| closed_by_server?(s) }
        assert_operator made_way, :>=, 1, "#{mode}: idle connections made way for the probes"
      end
      idle.each(&:close)
      assert_cleaned_up(server, 0, mode)
    end
  end

  def closed_by_server?(socket)
    socket.wait_readable(1) && socket.read_nonblock(1, exception: false).nil?
  rescue Errno::ECONNRESET
    true
  end

  # Connections that never sent a byte make way too.
  def test_silent_connections_make_way_at_the_connection_cap
    each_mode(max_connections: 20) do |server, mode|
      silent = Array.new(20) { connect(server.port) }
      wait_until { server.stats[:connections] >= 20 }
      assert_served(server.port, 1, "#{mode}: 20 silent connections at a cap of 20")
      silent.each(&:close)
      assert_cleaned_up(server, 0, mode)
    end
  end
end

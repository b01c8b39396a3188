# frozen_string_literal: true

require_relative "helper"
require "digest/sha2" # loaded here, not by the first of several threads (ruby/digest#3)
require "tempfile"

# Rack 3 in full: streaming request and response bodies, sendfile,
# 100-continue, early hints, framing rules, close and response_finished
# on every path. Every app runs under Rack::Lint unless a test says why not.
class Rack3Test < Minitest::Test
  include KinoTest

  MiB = 1024 * 1024

  # Answers with the SHA-256 and size of the request body, read in
  # 64 KiB pieces (so the whole body is never in memory at once).
  DIGEST = lambda do |env|
    digest = Digest::SHA256.new
    size = 0
    buffer = +""
    while env["rack.input"].read(65_536, buffer)
      digest << buffer
      size += buffer.bytesize
    end
    [200, { "content-type" => "text/plain" }, ["#{size} #{digest.hexdigest}"]]
  end

  def random_bytes(size)
    Random.new(size).bytes(size)
  end

  def test_10_mib_upload_with_content_length
    data = random_bytes(10 * MiB)
    serve(DIGEST) do |server|
      socket = connect(server.port)
      socket.write("PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: #{data.bytesize}\r\n\r\n")
      socket.write(data)
      assert_equal "#{data.bytesize} #{Digest::SHA256.hexdigest(data)}", read_response(socket, timeout: 30).body
      socket.close
    end
  end

  def test_10_mib_chunked_upload_dribbled_in_uneven_pieces
    data = random_bytes(10 * MiB)
    rng = Random.new(7)
    serve(DIGEST) do |server|
      socket = connect(server.port)
      socket.write("POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
      offset = 0
      while offset < data.bytesize
        size = [rng.rand(1..70_000), data.bytesize - offset].min
        frame = "#{size.to_s(16)}\r\n#{data.byteslice(offset, size)}\r\n"
        frame.bytes.each_slice(rng.rand(1..30_000)) { |piece| socket.write(piece.pack("C*")) }
        offset += size
      end
      socket.write("0\r\n\r\n")
      assert_equal "#{data.bytesize} #{Digest::SHA256.hexdigest(data)}", read_response(socket, timeout: 60).body
      socket.close
    end
  end

  def test_small_body_dribbled_byte_by_byte
    body = "a" * 700 + "b" * 300
    serve(DIGEST) do |server|
      [["Content-Length: #{body.bytesize}", body],
       ["Transfer-Encoding: chunked", "2bc\r\n#{body[0, 700]}\r\n12c\r\n#{body[700..]}\r\n0\r\n\r\n"]].each do |header, payload|
        socket = connect(server.port)
        socket.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1)
        "POST / HTTP/1.1\r\nHost: x\r\n#{header}\r\n\r\n#{payload}".each_char { |ch| socket.write(ch) }
        assert_equal "1000 #{Digest::SHA256.hexdigest(body)}", read_response(socket, timeout: 30).body
        socket.close
      end
    end
  end

  def test_10_mib_download_array_and_streamed
    data = random_bytes(10 * MiB)
    chunks = data.bytes.each_slice(MiB).map { |slice| slice.pack("C*") }
    stream = Class.new do
      define_method(:each) { |&block| chunks.each(&block) }
    end
    serve(->(env) { [200, {}, env["PATH_INFO"] == "/array" ? [data] : stream.new] }) do |server|
      %w[/array /stream].each do |path|
        socket = connect(server.port)
        socket.write("GET #{path} HTTP/1.1\r\nHost: x\r\n\r\n")
        response = read_response(socket, timeout: 30)
        assert_equal Digest::SHA256.hexdigest(data), Digest::SHA256.hexdigest(response.body), path
        socket.close
      end
    end
  end

  def test_first_chunk_of_a_slow_stream_arrives_before_the_body_ends
    release = Queue.new
    stream = Class.new do
      define_method(:each) do |&block|
        block.call("first ")
        release.pop # the client has already seen "first" when we get here
        block.call("second")
      end
    end
    serve(->(_env) { [200, {}, stream.new] }) do |server|
      socket = connect(server.port)
      socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      seen = +""
      Timeout.timeout(5) { seen << socket.readpartial(4096) until seen.include?("first ") }
      refute_includes seen, "second"
      release << :go
      seen << socket.readpartial(4096) until seen.include?("0\r\n\r\n")
      assert_includes seen, "second"
      socket.close
    end
  end

  def test_a_slow_reader_does_not_block_other_requests
    big = "z" * (64 * MiB)
    app = ->(env) { [200, {}, [env["PATH_INFO"] == "/big" ? big : "small"]] }
    serve(app, workers: 1, threads: 2) do |server|
      slow = connect(server.port)
      slow.write("GET /big HTTP/1.1\r\nHost: x\r\n\r\n") # and never read it
      sleep 0.2
      3.times { assert_equal "small", get(server.port, "/small").body }
      slow.close
    end
  end

  def test_full_duplex_echo_through_a_streaming_body
    echo = lambda do |_env|
      body = lambda do |stream|
        while (line = stream.read(6))
          stream.write(line.upcase)
        end
      ensure
        stream.close
      end
      [200, {}, body]
    end
    serve(echo, body_buffer: 0) do |server| # bodies stream to the app as they arrive
      socket = connect(server.port)
      socket.write("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
      head = +""
      %w[hello! world! again!].each do |word|
        socket.write("6\r\n#{word}\r\n")
        Timeout.timeout(5) { head << socket.readpartial(4096) until head.include?(word.upcase) }
      end
      socket.write("0\r\n\r\n")
      Timeout.timeout(5) { head << socket.readpartial(4096) until head.end_with?("0\r\n\r\n") }
      assert_match(/\AHTTP\/1.1 200 OK\r\n/, head)
      assert_equal "HELLO!WORLD!AGAIN!", parse_responses(head).first.body
      socket.close
    end
  end

  def test_to_path_bodies_are_sent_with_sendfile
    file = Tempfile.new("kino-sendfile")
    data = random_bytes(20 * MiB)
    file.write(data)
    file.close
    require "rack/files"
    files = Rack::Files.new(File.dirname(file.path))
    name = "/#{File.basename(file.path)}"
    serve(files) do |server|
      socket = connect(server.port)
      socket.write("GET #{name} HTTP/1.1\r\nHost: x\r\n\r\n")
      response = read_response(socket, timeout: 30)
      assert_equal data.bytesize.to_s, response["content-length"]
      assert_equal Digest::SHA256.hexdigest(data), Digest::SHA256.hexdigest(response.body)
      socket.write("HEAD #{name} HTTP/1.1\r\nHost: x\r\n\r\nGET #{name} HTTP/1.1\r\nHost: x\r\nRange: bytes=10-19\r\n\r\n")
      head = read_response(socket, head: true)
      assert_equal data.bytesize.to_s, head["content-length"]
      range = read_response(socket)
      assert_equal 206, range.status # ranges never use to_path
      assert_equal data.byteslice(10, 10), range.body
      socket.close
    end
  ensure
    file&.unlink
  end

  # A body that records close; raises mid-stream when asked.
  class Recorder
    def initialize(log, fail_after: nil, chunks: 3, size: 10)
      @log = log
      @fail_after = fail_after
      @chunks = chunks
      @size = size
    end

    def each
      @chunks.times do |i|
        raise "mid-stream failure" if @fail_after == i

        yield "x" * @size
      end
    end

    def close
      @log << :closed
    end
  end

  def test_close_then_response_finished_on_every_path
    log = Queue.new
    app = lambda do |env|
      env["rack.response_finished"] << ->(_env, status, _headers, error) { log << [:finished, status, error&.message] }
      case env["PATH_INFO"]
      when "/ok" then [200, {}, Recorder.new(log)]
      when "/fail" then [200, {}, Recorder.new(log, fail_after: 1)]
      when "/huge" then [200, {}, Recorder.new(log, chunks: 2000, size: 65_536)] # 128 MiB
      end
    end
    serve(app, quiet: true, lint: false) do |server|
      get(server.port, "/ok")
      assert_equal [:closed, [:finished, 200, nil]], [log.pop, log.pop]

      raw(server.port, "GET /fail HTTP/1.1\r\nHost: x\r\n\r\n", timeout: 2)
      assert_equal :closed, log.pop
      assert_equal [:finished, 200, "mid-stream failure"], log.pop

      socket = connect(server.port) # the client goes away mid-response
      socket.write("GET /huge HTTP/1.1\r\nHost: x\r\n\r\n")
      socket.readpartial(1000)
      socket.close
      assert_equal :closed, Timeout.timeout(10) { log.pop }
      finished = Timeout.timeout(10) { log.pop }
      assert_equal :finished, finished.first
      refute_nil finished.last # the error that ended the write
      assert wait_until { server.stats[:in_flight].zero? }
      assert_equal "x" * 30, get(server.port, "/ok").body
    end
  end

  def test_100_continue_is_sent_on_the_first_read_and_never_to_http10
    serve(DIGEST) do |server|
      socket = connect(server.port)
      socket.write("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
      interim = Timeout.timeout(5) { socket.readpartial(100) }
      assert_equal "HTTP/1.1 100 Continue\r\n\r\n", interim
      socket.write("hello")
      assert_equal "5 #{Digest::SHA256.hexdigest('hello')}", read_response(socket).body
      socket.close

      data = raw(server.port, "PUT / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello")
      refute_includes data, "100 Continue"
      assert_equal 200, parse_responses(data).first.status
    end
  end

  def test_early_hints
    app = lambda do |env|
      env["rack.early_hints"]&.call("link" => "</style.css>; rel=preload; as=style")
      raise "bad hint accepted" if env["PATH_INFO"] == "/bad" && env["rack.early_hints"].call("link" => "a\r\nb").nil?

      [200, {}, ["done"]]
    end
    serve(app, quiet: true, lint: false) do |server|
      data = raw(server.port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert data.start_with?("HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload; as=style\r\n\r\nHTTP/1.1 200 OK\r\n"), data
      assert_equal "done", parse_responses(data).last.body

      old = raw(server.port, "GET / HTTP/1.0\r\n\r\n")
      refute_includes old, "103"
      assert_equal "done", parse_responses(old).first.body

      bad = raw(server.port, "GET /bad HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      refute_includes bad, "a\r\nb"
      assert_equal 500, parse_responses(bad).last.status
    end
  end

  def test_early_hints_pass_lint
    app = lambda do |env|
      env["rack.early_hints"].call("link" => "</a.js>; rel=preload")
      [200, {}, ["ok"]]
    end
    serve(app) { |server| assert_equal "ok", parse_responses(raw(server.port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).last.body }
  end

  def test_a_thousand_concurrent_small_uploads
    serve(DIGEST, workers: 2, threads: 4) do |server|
      sockets = Array.new(1000) do |i|
        socket = connect(server.port)
        body = "upload-#{i}"
        socket.write("POST /#{i} HTTP/1.1\r\nHost: x\r\nContent-Length: #{body.bytesize}\r\nConnection: close\r\n\r\n#{body}")
        [socket, body]
      end
      sockets.each do |socket, body|
        assert_equal "#{body.bytesize} #{Digest::SHA256.hexdigest(body)}", read_response(socket, timeout: 30).body
        socket.close
      end
    end
  end

  def test_app_chunked_transfer_encoding_is_not_chunked_twice
    app = ->(_env) { [200, { "transfer-encoding" => "chunked" }, ["5\r\nhello\r\n", "0\r\n\r\n"]] }
    serve(app, lint: false) do |server|
      response = get(server.port)
      assert_equal "hello", response.body
      assert_equal ["chunked"], response.header_lines("transfer-encoding")
    end
  end

  def test_a_body_longer_or_shorter_than_content_length_aborts_the_connection
    app = lambda do |env|
      body = env["PATH_INFO"] == "/long" ? %w[12345 67890] : %w[123]
      [200, { "content-length" => "5" }, Enumerator.new { |y| body.each { |s| y << s } }]
    end
    serve(app, lint: false, quiet: true) do |server|
      %w[/long /short].each do |path|
        data = raw(server.port, "GET #{path} HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        assert_equal 1, data.scan("HTTP/1.1 ").size, "#{path}: the next request must not be answered on a desynced connection"
        refute_includes data, "67890"
      end
    end
  end

  def test_chunked_body_past_max_body_size_never_gets_a_2xx
    serve(DIGEST, max_body_size: 1024, quiet: true) do |server|
      chunks = Array.new(8) { "400\r\n#{'b' * 1024}\r\n" }.join
      data = raw(server.port, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n#{chunks}0\r\n\r\n")
      assert_equal [413], parse_responses(data).map(&:status)
    end
  end

  def test_body_timeout_between_reads
    serve(DIGEST, body_timeout: 0.3, quiet: true) do |server|
      socket = connect(server.port)
      socket.write("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a part")
      response = read_response(socket, timeout: 5)
      assert_equal 408, response.status
      socket.close
    end
  end
end

# frozen_string_literal: true

# HTTP/2 over real sockets: h2 by ALPN over TLS and h2c by prior knowledge
# on the same port as HTTP/1.1, with the clients people use (curl,
# nghttp, h2load from Debian's nghttp2-client) and frame-level cases
# written with python3-h2 (test/h2/frames.py): every RFC 9113 rule the
# frame layer enforces, the attack limits, flow control both ways, no
# head-of-line blocking. `make test-h2` installs the clients and runs
# this file with them required; elsewhere a case whose client is missing
# is skipped and says so.
require_relative "helper"
require "fileutils"
require "open3"
require "openssl"
require "tmpdir"

class HTTP2Test < Minitest::Test
  include KinoTest

  PYTHON = "/usr/bin/python3"
  FRAMES = File.expand_path("h2/frames.py", __dir__)
  REQUIRED = ENV["KINO_H2_TOOLS"] == "required"
  # The clients are not Kino: under make test SANITIZE=1 they must not
  # inherit AddressSanitizer's preload (a preloaded curl can hang).
  TOOL_ENV = { "LD_PRELOAD" => nil, "ASAN_OPTIONS" => nil, "UBSAN_OPTIONS" => nil }.freeze

  class Counter
    def initialize
      @n = 0
      @mutex = Mutex.new
    end

    def bump = @mutex.synchronize { @n += 1 }
    def value = @mutex.synchronize { @n }
  end

  # Requests to /hold wait (up to 10 s) until a request to /release lets
  # them go; /release says how many it let go.
  class Gate
    def initialize
      @mutex = Mutex.new
      @cond = ConditionVariable.new
      @waiting = 0
      @released = 0
    end

    def hold
      @mutex.synchronize do
        @waiting += 1
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
        while @released.zero? && (left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)).positive?
          @cond.wait(@mutex, left)
        end
        @released -= 1 if @released.positive?
        @waiting -= 1
      end
    end

    def release
      @mutex.synchronize do
        n = @waiting - @released
        @released += n
        @cond.broadcast
        n
      end
    end
  end

  class Chunks
    def each
      3.times { |i| yield "chunk#{i}\n" }
    end
  end

  class Drip # a response that begins at once and ends 0.6 s later
    def each
      yield "drip-"
      sleep 0.6
      yield "drop"
    end
  end

  class WithTrailers # a gRPC-shaped body: bytes, then the status as trailers
    def each
      yield "reply"
    end

    def trailers = { "grpc-status" => "0", "grpc-message" => "fine" }
  end

  def app(counter = Counter.new, gate = Gate.new)
    lambda do |env|
      counter.bump unless env["PATH_INFO"] == "/count"
      case env["PATH_INFO"]
      when "/" then [200, { "content-type" => "text/plain" }, ["hello"]]
      when "/proto" then [200, { "content-type" => "text/plain" }, [env["SERVER_PROTOCOL"]]]
      when "/slow" then sleep 1
                        [200, {}, ["slow"]]
      when "/big" then [200, { "content-type" => "text/plain" }, ["x" * 1_000_000]]
      when "/stream" then [200, { "content-type" => "text/plain" }, Chunks.new]
      when "/drip" then [200, { "content-type" => "text/plain" }, Drip.new]
      when "/trailers" then [200, { "content-type" => "application/grpc", "trailer" => "grpc-status" }, WithTrailers.new]
      when "/echo"
        body = env["rack.input"] ? env["rack.input"].read : ""
        [200, { "content-type" => "text/plain" }, ["got #{body.bytesize}:#{body[0, 8].unpack1('H*')}"]]
      when "/count" then [200, {}, [counter.value.to_s]]
      when "/hold" then gate.hold
                        [200, {}, ["held"]]
      when "/release" then [200, {}, ["released #{gate.release}"]]
      when "/hints"
        env["rack.early_hints"].call("link" => "</style.css>; rel=preload; as=style", "content-length" => "7")
        [200, { "content-type" => "text/plain" }, ["hinted"]]
      else [404, {}, ["no"]]
      end
    end
  end

  def tool(name)
    return true if system("command -v #{name} >/dev/null 2>&1") && (name != PYTHON || python_h2?)
    flunk "#{name} is missing (make test-h2 installs it)" if REQUIRED
    skip "#{name} is missing (make test-h2 installs nghttp2-client and python3-h2)"
  end

  def python_h2?
    system(TOOL_ENV, PYTHON, "-c", "import h2, hyperframe, hpack", err: File::NULL)
  end

  def h2_serve(**options, &block)
    serve(app, workers: 1, threads: 4, **options, &block)
  end

  def curl(*args)
    out, status = Open3.capture2e(TOOL_ENV, "curl", "-sS", "--max-time", "10", *args)
    [out, status]
  end

  # ---- protocol selection ----------------------------------------

  def test_h2c_by_prior_knowledge_and_http_1_1_on_the_same_port
    tool("curl")
    h2_serve do |server|
      url = "http://127.0.0.1:#{server.port}/proto"
      out, status = curl("--http2-prior-knowledge", "-w", " %{http_version}", url)
      assert status.success?, out
      assert_equal "HTTP/2 2", out
      out, = curl("--http1.1", "-w", " %{http_version}", url)
      assert_equal "HTTP/1.1 1.1", out
    end
  end

  def test_http2_false_treats_the_preface_as_http_1
    h2_serve(http2: false) do |server|
      response = raw(server.port, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
      assert_match(%r{\AHTTP/1\.1 505 }, response)
    end
  end

  def with_certs
    skip "this build has no TLS (OpenSSL headers missing at build time, or make TLS=0)" unless Kino::Native::TLS
    Dir.mktmpdir do |dir|
      key, cert = File.join(dir, "key.pem"), File.join(dir, "cert.pem")
      _, status = Open3.capture2e(TOOL_ENV, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                                  "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                                  "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
      assert status.success?
      yield({ cert: cert, key: key })
    end
  end

  def test_h2_by_alpn_over_tls_next_to_http_1_1
    tool("curl")
    with_certs do |tls|
      h2_serve(tls: tls) do |server|
        url = "https://127.0.0.1:#{server.port}/proto"
        out, status = curl("-k", "--http2", "-w", " %{http_version}", url)
        assert status.success?, out
        assert_equal "HTTP/2 2", out
        out, = curl("-k", "--http1.1", "-w", " %{http_version}", url)
        assert_equal "HTTP/1.1 1.1", out
        out, = curl("-k", "--http2", "--data-binary", "@#{tls[:cert]}", "https://127.0.0.1:#{server.port}/echo")
        assert_equal "got #{File.size(tls[:cert])}:#{File.binread(tls[:cert], 8).unpack1('H*')}", out
      end
      h2_serve(tls: tls, http2: false) do |server|
        out, = curl("-k", "--http2", "-w", " %{http_version}", "https://127.0.0.1:#{server.port}/proto")
        assert_equal "HTTP/1.1 1.1", out, "http2 false: ALPN offers http/1.1 alone"
      end
    end
  end

  # rack.early_hints on a stream: curl sees the 103 before the 200, over
  # h2c and over TLS (test/h2/frames.py early_hints has the frames)
  def test_early_hints_on_streams
    tool("curl")
    check = lambda do |*args, url|
      out, status = curl("-v", *args, url)
      assert status.success?, out
      assert_match(%r{^< HTTP/2 103\s*$.*^< link: </style.css>; rel=preload; as=style\s*$.*^< HTTP/2 200\s*$}m, out)
      assert out.end_with?("hinted"), out
    end
    h2_serve { |server| check.call("--http2-prior-knowledge", "http://127.0.0.1:#{server.port}/hints") }
    with_certs do |tls|
      h2_serve(tls: tls) { |server| check.call("-k", "--http2", "https://127.0.0.1:#{server.port}/hints") }
    end
  end

  # mTLS: the client certificate is read once per connection, on its I/O
  # thread, and every stream's env has it as SSL_CLIENT_CERT, with the
  # same HTTPS env as over HTTP/1.1 (two streams on one connection: curl
  # reuses it for the second URL)
  def test_client_certificate_and_tls_env_on_every_stream
    tool("curl")
    with_certs do |tls|
      dir = File.dirname(tls[:cert])
      key, cert = File.join(dir, "client-key.pem"), File.join(dir, "client.pem")
      _, status = Open3.capture2e(TOOL_ENV, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                                  "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                                  "-days", "1", "-subj", "/CN=kino-client")
      assert status.success?
      peer = lambda do |env|
        [200, {}, ["#{env['SERVER_PROTOCOL']} #{env['rack.url_scheme']} #{env['HTTPS']}\n#{env['SSL_CLIENT_CERT']}"]]
      end
      serve(peer, workers: 1, threads: 2, tls: tls.merge(ca: cert)) do |server|
        url = "https://127.0.0.1:#{server.port}/"
        out, status = curl("-k", "--http2", "--cert", cert, "--key", key, url, url)
        assert status.success?, out
        assert_equal "HTTP/2 https on\n#{OpenSSL::X509::Certificate.new(File.read(cert)).to_pem}" * 2, out
        _, status = curl("-k", "--http2", url)
        refute status.success?, "no client certificate: refused, as over HTTP/1.1"
      end
    end
  end

  # ---- real clients ----------------------------------------------

  def test_curl_bodies_both_ways_and_streaming
    tool("curl")
    h2_serve do |server|
      base = "http://127.0.0.1:#{server.port}"
      Dir.mktmpdir do |dir|
        upload = File.join(dir, "up.bin")
        File.binwrite(upload, Random.new(7).bytes(300_000))
        out, = curl("--http2-prior-knowledge", "--data-binary", "@#{upload}", "#{base}/echo")
        assert_equal "got 300000:#{File.binread(upload, 8).unpack1('H*')}", out
      end
      out, = curl("--http2-prior-knowledge", "#{base}/big")
      assert_equal 1_000_000, out.bytesize
      out, = curl("--http2-prior-knowledge", "#{base}/stream")
      assert_equal "chunk0\nchunk1\nchunk2\n", out
      out, = curl("--http2-prior-knowledge", "-w", "%{http_code}", "-o", "/dev/null", "#{base}/missing")
      assert_equal "404", out
    end
  end

  def test_trailers_end_the_stream_in_a_trailing_headers_frame
    tool("nghttp")
    h2_serve(lint: false) do |server| # Rack::Lint's body wrapper hides #trailers
      out, status = Open3.capture2e(TOOL_ENV, "nghttp", "-nv", "http://127.0.0.1:#{server.port}/trailers")
      assert status.success?, out
      id = request_stream(out)
      assert_match(/recv DATA frame <length=5, flags=0x00, stream_id=#{id}>/, out)
      assert_match(/recv \(stream_id=#{id}\) grpc-status: 0\n.*recv \(stream_id=#{id}\) grpc-message: fine\n.*recv HEADERS frame <length=\d+, flags=0x05, stream_id=#{id}>/m, out)
      # and over HTTP/1.1, the chunked trailer section
      response = raw(server.port, "GET /trailers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert response.end_with?("5\r\nreply\r\n0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n"), response
    end
  end

  # The stream nghttp -nv sent its request on: 13 from nghttp2 1.52
  # (Debian 12; streams 3 to 11 carry its RFC 7540 priority tree), 1 from
  # versions that use RFC 9218 priorities instead (Debian unstable's 1.70).
  def request_stream(trace)
    id = trace[/send HEADERS frame <length=\d+, flags=0x\h+, stream_id=(\d+)>\n(?:\s+;.*\n|\s+\(.*\n)*\s+; Open new stream/, 1]
    assert id, "no request HEADERS in the trace:\n#{trace}"
    id
  end

  def test_nghttp_frame_trace
    tool("nghttp")
    h2_serve do |server|
      out, status = Open3.capture2e(TOOL_ENV, "nghttp", "-nv", "http://127.0.0.1:#{server.port}/")
      assert status.success?, out
      assert_match(/recv SETTINGS frame .*\n.*\n\s+\[SETTINGS_MAX_CONCURRENT_STREAMS\(0x03\):16\]/, out)
      id = request_stream(out)
      assert_match(/recv \(stream_id=#{id}\) :status: 200/, out)
      assert_match(/recv DATA frame <length=5, flags=0x01, stream_id=#{id}>/, out)
      out, status = Open3.capture2e(TOOL_ENV, "nghttp", "-d", FRAMES, "http://127.0.0.1:#{server.port}/echo")
      assert status.success?, out
      assert_equal "got #{File.size(FRAMES)}:#{File.binread(FRAMES, 8).unpack1('H*')}", out
    end
  end

  def test_h2load_over_h2c_and_tls
    tool("h2load")
    with_certs do |tls|
      h2_serve(tls: tls) do |server|
        out, = Open3.capture2e(TOOL_ENV, "h2load", "-n", "500", "-c", "4", "-m", "10", "https://127.0.0.1:#{server.port}/")
        assert_includes out, "Application protocol: h2"
        assert_includes out, "500 succeeded, 0 failed, 0 errored"
      end
    end
    h2_serve do |server|
      out, = Open3.capture2e(TOOL_ENV, "h2load", "-n", "500", "-c", "4", "-m", "10", "http://127.0.0.1:#{server.port}/")
      assert_includes out, "Application protocol: h2c"
      assert_includes out, "500 succeeded, 0 failed, 0 errored"
      out, = Open3.capture2e(TOOL_ENV, "h2load", "-n", "100", "-c", "2", "-m", "10", "-d", FRAMES,
                             "http://127.0.0.1:#{server.port}/echo")
      assert_includes out, "100 succeeded, 0 failed, 0 errored"
    end
  end

  module Protocol # shareable, for :ractor
    def self.call(env) = [200, {}, [env["SERVER_PROTOCOL"]]]
  end

  def test_every_mode_serves_h2c_and_h2
    tool("curl")
    %i[threaded ractor cluster].each do |mode|
      serve(Protocol, mode: mode, workers: 2, threads: 1, lint: false, on_error: nil) do |server|
        out, = curl("--http2-prior-knowledge", "http://127.0.0.1:#{server.port}/")
        assert_equal "HTTP/2", out, "#{mode} h2c"
      end
    end
    with_certs do |tls|
      %i[threaded ractor cluster].each do |mode|
        serve(Protocol, mode: mode, workers: 2, threads: 1, lint: false, on_error: nil, tls: tls) do |server|
          out, = curl("-k", "--http2", "https://127.0.0.1:#{server.port}/")
          assert_equal "HTTP/2", out, "#{mode} h2"
        end
      end
    end
  end

  # ---- shutdown ---------------------------------------------------

  def test_graceful_goaway_on_shutdown
    Thread.report_on_exception = false
    release = Queue.new
    slow = lambda do |env|
      release.pop if env["PATH_INFO"] == "/hold"
      [200, {}, ["done"]]
    end
    server = Kino::Server.new(slow, workers: 1, threads: 2, mode: :threaded).start
    sock = TCPSocket.new("127.0.0.1", server.port)
    sock.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, ""))
    # GET /hold on stream 1 (static :method GET, :scheme http; literal :path)
    sock.write(frame(1, 5, 1, "\x82\x86\x04\x05/hold".b))
    sleep 0.2
    stopper = Thread.new { server.shutdown(timeout: 5) }
    goaways = []
    Timeout.timeout(10) do
      until goaways.size == 2
        type, flags, sid, payload = read_frame(sock)
        goaways << payload.unpack("NN") if type == 7
        sock.write(frame(6, 1, 0, payload)) if type == 6 && flags & 1 == 0 # PING ACK
      end
    end
    assert_equal [[0x7fffffff, 0], [1, 0]], goaways, "GOAWAY 2^31-1, then the last stream id"
    release << true
    Timeout.timeout(10) do
      loop do
        type, flags, sid, payload = read_frame(sock)
        break if type == 0 && sid == 1 && flags & 1 == 1 && payload == "done"
      end
    end
    stopper.join
  ensure
    sock&.close
  end

  def frame(type, flags, sid, payload)
    [payload.bytesize >> 16, payload.bytesize & 0xffff, type, flags, sid].pack("CnCCN") + payload.b
  end

  def read_frame(sock)
    head = sock.read(9)
    raise "connection closed" unless head && head.bytesize == 9

    hi, lo, type, flags, sid = head.unpack("CnCCN")
    [type, flags, sid, sock.read((hi << 16) | lo).to_s]
  end

  # ---- frame-level cases (python3-h2) ------------------------------

  def frames(name, port)
    out, status = Open3.capture2e(TOOL_ENV, PYTHON, FRAMES, port.to_s, name)
    assert status.success?, out
    assert_equal "ok #{name}", out.strip
  end

  %w[preface_and_settings bad_preface ping idle_stream_frames frame_sizes settings_values stream_ids
     closed_streams continuation header_rules request_body_flow_control response_flow_control
     no_head_of_line_blocking concurrent_streams_limit hpack_bomb continuation_flood rapid_reset
     control_floods early_hints].each do |name|
    define_method("test_frames_#{name}") do
      tool(PYTHON)
      counter = Counter.new
      serve(app(counter), workers: 1, threads: 4) { |server| frames(name, server.port) }
    end
  end

  # request_timeout on streams: a 504 on the stream that took too long
  # while its handler still runs, the connection and its other streams go
  # on (test/h2/frames.py request_timeout has the frames); curl gets the
  # 504, and the server counts each as a timeout
  def test_request_timeout_answers_504_on_the_stream
    tool(PYTHON)
    tool("curl")
    serve(app, workers: 1, threads: 4, request_timeout: 0.3) do |server|
      frames("request_timeout", server.port)
      assert_equal 2, server.stats[:timeouts]
      base = "http://127.0.0.1:#{server.port}"
      out, status = curl("--http2-prior-knowledge", "-w", " %{http_code} %{http_version}", "#{base}/hold")
      assert status.success?, out
      assert_equal "Gateway Timeout\n 504 2", out
      out, = curl("--http2-prior-knowledge", "#{base}/release")
      assert_equal "released 1", out, "the handler was still running when curl got the 504"
      assert_equal 3, server.stats[:timeouts]
    end
  end
end

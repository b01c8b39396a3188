# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"
require "net/http"
require "openssl"
require "tmpdir"

# HTTPS (tls:) with real clients: curl over TLS 1.3 and 1.2, openssl
# s_client (ALPN, old protocols refused, the chain), Ruby's Net::HTTP with
# keep-alive, client certificates, and hostile clients: silent, stalled in
# the handshake, a partial ClientHello, garbage, plain HTTP on the TLS
# port. Certificates are made by the openssl command in a temp dir.
# sslscan runs under `make test-tls` (KINO_SSLSCAN=1), which installs it.
class TLSTest < Minitest::Test
  include KinoTest
  include KinoProcess

  # Clients are not ours: under SANITIZE=1 they must not inherit the
  # AddressSanitizer preload meant for Ruby.
  CLIENT_ENV = { "LD_PRELOAD" => nil, "ASAN_OPTIONS" => nil }.freeze

  ECHO = lambda do |env|
    body = env["rack.input"].read
    info = [env["rack.url_scheme"], env["HTTPS"], env["SERVER_PORT"], env["REQUEST_METHOD"],
            env["PATH_INFO"], body.bytesize, env["SSL_CLIENT_CERT"] ? "cert" : "nocert"].join(" ")
    [200, { "content-type" => "text/plain" }, ["#{info}\n"]]
  end

  def setup
    skip "this build has no TLS (OpenSSL headers missing at build time, or make TLS=0)" unless Kino::Native::TLS
    @dir = Dir.mktmpdir("kino-tls")
    make_certs(@dir)
  end

  def teardown
    FileUtils.rm_rf(@dir) if @dir
  end

  # ca.pem signs server.pem (for localhost and 127.0.0.1) and client.pem;
  # chain.pem is server.pem followed by ca.pem; other.pem/other-key.pem is
  # a self-signed pair whose key matches nothing else.
  def make_certs(dir)
    ec = %w[-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes]
    openssl("req", "-x509", *ec, "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Kino Test CA")
    { "server" => ["/CN=localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
      "client" => ["/CN=kino-client", "extendedKeyUsage=clientAuth"] }.each do |name, (subject, ext)|
      openssl("req", *ec, "-keyout", "#{name}-key.pem", "-out", "#{name}.csr", "-subj", subject)
      File.write(File.join(dir, "#{name}.ext"), "#{ext}\n")
      openssl("x509", "-req", "-in", "#{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
              "-days", "2", "-out", "#{name}.pem", "-extfile", "#{name}.ext")
    end
    openssl("req", "-x509", *ec, "-keyout", "other-key.pem", "-out", "other.pem", "-days", "2", "-subj", "/CN=other")
    File.write(File.join(dir, "chain.pem"), File.read(File.join(dir, "server.pem")) + File.read(File.join(dir, "ca.pem")))
  end

  def openssl(*args)
    _, err, status = run_command(["openssl", *args], dir: @dir, env: CLIENT_ENV)
    assert status.success?, "openssl #{args.join(' ')}: #{err}"
  end

  def path(name)
    File.join(@dir, name)
  end

  def tls(**extra)
    { cert: path("chain.pem"), key: path("server-key.pem") }.merge(extra)
  end

  def serve_tls(app = ECHO, tls: self.tls, **options, &block)
    serve(app, tls: tls, **options, &block)
  end

  # curl over HTTPS, verifying the server against ca.pem: [stdout, status].
  def curl(port, *args, path: "/")
    out, err, status = run_command(["curl", "-sS", "--cacert", path("ca.pem"), "--http1.1", *args,
                                    "https://localhost:#{port}#{path}"], env: CLIENT_ENV, timeout: 30)
    [out + err, status]
  end

  def s_client(port, *args, input: "")
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:#{port}", "-servername", "localhost",
           "-CAfile", path("ca.pem"), *args]
    out, err, status = Timeout.timeout(30) { Open3.capture3(CLIENT_ENV, *cmd, stdin_data: input) }
    [out + err, status]
  end

  def ssl_socket(port, context = client_context)
    ssl = OpenSSL::SSL::SSLSocket.new(TCPSocket.new("127.0.0.1", port), context)
    ssl.hostname = "localhost"
    ssl.sync_close = true
    ssl.connect
    ssl
  end

  def client_context
    OpenSSL::SSL::SSLContext.new.tap do |ctx|
      ctx.ca_file = path("ca.pem")
      ctx.verify_mode = OpenSSL::SSL::VERIFY_PEER
    end
  end

  # -- real clients --------------------------------------------------------

  def test_curl_over_tls_1_3_and_1_2
    serve_tls do |server|
      out, status = curl(server.port, "--tlsv1.3", "-w", "%{http_version} %{ssl_verify_result}\n")
      assert status.success?, out
      assert_equal "https on #{server.port} GET / 0 nocert\n1.1 0\n", out

      out, status = curl(server.port, "--tlsv1.2", "--tls-max", "1.2", "-w", "%{http_version}\n", path: "/twelve")
      assert status.success?, out
      assert_equal "https on #{server.port} GET /twelve 0 nocert\n1.1\n", out
    end
  end

  # The TLS session stays in the engine, so an HTTPS connection is never
  # hijacked (doc/hijack.md): rack.hijack? is false, and a 101 upgrade is
  # a 500 saying why.
  def test_no_hijack_over_https
    app = lambda do |env|
      next [200, {}, ["hijack? #{env['rack.hijack?'].inspect} #{env.key?('rack.hijack')}"]] if env["PATH_INFO"] == "/env"

      [101, { "upgrade" => "websocket", "connection" => "Upgrade" }, ->(io) { io.close }]
    end
    serve_tls(app, lint: false, quiet: true) do |server, errors|
      out, = curl(server.port, path: "/env")
      assert_equal "hijack? false false", out
      out, = curl(server.port, "-i", "-H", "Connection: Upgrade", "-H", "Upgrade: websocket", path: "/ws")
      assert_match(%r{\AHTTP/1.1 500 }, out)
      assert_match(/HTTPS connection cannot be hijacked/, errors.pop.message)
    end
  end

  def test_curl_uploads_and_downloads_large_bodies
    big = "x" * 3_000_000
    app = lambda do |env|
      body = env["rack.input"].read
      [200, { "content-type" => "text/plain" }, [body.bytesize.to_s, "\n", big]]
    end
    File.write(path("upload"), "u" * 1_500_000)
    serve_tls(app) do |server|
      out, status = curl(server.port, "--data-binary", "@#{path('upload')}", "-o", path("down"))
      assert status.success?, out
      assert_equal "1500000\n#{big}", File.read(path("down"))
      # chunked upload
      out, status = curl(server.port, "-H", "Transfer-Encoding: chunked", "--data-binary", "@#{path('upload')}",
                         "-o", path("down2"))
      assert status.success?, out
      assert_equal "1500000\n", File.read(path("down2"))[0, 8]
    end
  end

  def test_to_path_bodies_go_out_through_tls
    File.write(path("file.bin"), (0..255).map(&:chr).join.b * 4000) # 1 MB, every byte value
    file_body = Class.new do
      def initialize(file)
        @file = file
      end

      def to_path
        @file
      end

      def each
        yield File.binread(@file)
      end
    end
    app = ->(_env) { [200, { "content-type" => "application/octet-stream" }, file_body.new(path("file.bin"))] }
    serve_tls(app) do |server|
      out, status = curl(server.port, "-o", path("got.bin"))
      assert status.success?, out
      assert_equal File.binread(path("file.bin")), File.binread(path("got.bin"))
    end
  end

  def test_net_http_keeps_the_connection_alive
    serve_tls do |server|
      http = Net::HTTP.new("localhost", server.port)
      http.use_ssl = true
      http.ca_file = path("ca.pem")
      http.verify_mode = OpenSSL::SSL::VERIFY_PEER
      bodies = http.start do
        (1..5).map do |i|
          post = Net::HTTP::Post.new("/n#{i}")
          post.body = "b" * (i * 10_000)
          http.request(post).body
        end
      end
      assert_equal((1..5).map { |i| "https on #{server.port} POST /n#{i} #{i * 10_000} nocert\n" }, bodies)
      assert_equal 1, server.stats[:accepted], "one connection for all five requests"
    end
  end

  def test_pipelined_requests_over_one_tls_connection
    serve_tls do |server|
      ssl = ssl_socket(server.port)
      ssl.write("GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n" \
                "POST /3 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /4 HTTP/1.1\r\nHost: x\r\n\r\n")
      data = +""
      Timeout.timeout(10) { data << ssl.readpartial(65_536) until data.scan("HTTP/1.1 200").size == 4 && data.end_with?("nocert\n") }
      assert_equal %w[/1 /2 /3 /4], data.scan(%r{GET (/\d)|POST (/\d)}).map(&:compact).flatten
      assert_includes data, "POST /3 5 nocert"
      ssl.close
    end
  end

  def test_alpn_prefers_h2_and_offers_http_1_1_alone_with_http2_off
    serve_tls do |server|
      out, status = s_client(server.port, "-alpn", "http/1.1,h2", "-tls1_3", input: "Q\n")
      assert status.success?, out
      assert_includes out, "ALPN protocol: h2"
      out, status = s_client(server.port, "-alpn", "http/1.1", input: "Q\n")
      assert status.success?, out
      assert_includes out, "ALPN protocol: http/1.1"
    end
    serve_tls(http2: false) do |server|
      out, status = s_client(server.port, "-alpn", "h2,http/1.1", "-tls1_3", input: "Q\n")
      assert status.success?, out
      assert_includes out, "ALPN protocol: http/1.1"
      assert_match(/New, TLSv1\.3, Cipher is TLS_/, out)

      out, status = s_client(server.port, "-alpn", "h2", input: "Q\n")
      refute status.success?, out
      assert_match(/no application protocol|alert number 120/i, out)
    end
  end

  def test_old_protocols_are_refused
    serve_tls do |server|
      %w[-tls1 -tls1_1].each do |flag|
        out, status = s_client(server.port, flag, "-cipher", "DEFAULT:@SECLEVEL=0", input: "Q\n")
        refute status.success?, "#{flag} was accepted:\n#{out}"
        refute_match(/Cipher is (?!\(NONE\))/, out)
      end
      out, status = s_client(server.port, "-tls1_2", input: "Q\n")
      assert status.success?, out
      assert_match(/Cipher is ECDHE-ECDSA-(AES|CHACHA)/, out)
    end
  end

  def test_min_version_1_3_refuses_tls_1_2
    serve_tls(tls: tls(min_version: "1.3")) do |server|
      _, status = curl(server.port, "--tlsv1.2", "--tls-max", "1.2")
      refute status.success?
      out, status = curl(server.port, "--tlsv1.3")
      assert status.success?, out
    end
  end

  def test_the_chain_is_sent_and_inline_pem_works
    serve_tls do |server|
      out, = s_client(server.port, "-showcerts", input: "Q\n")
      # The certificates themselves, not s_client's wording of their
      # names (OpenSSL 3.0 prints "CN = x", 3.5 "CN=x").
      sent = out.scan(/-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----/m)
                .map { |pem| OpenSSL::X509::Certificate.new(pem) }
      expected = %w[server.pem ca.pem].map { |name| OpenSSL::X509::Certificate.new(File.read(path(name))) }
      assert_equal expected.map(&:to_der), sent.map(&:to_der), "server.pem then ca.pem, as in chain.pem:\n#{out}"
    end
    inline = tls(cert: File.read(path("server.pem")), key: File.read(path("server-key.pem")))
    serve_tls(tls: inline) do |server|
      out, status = curl(server.port)
      assert status.success?, out
      assert_includes out, "https on"
    end
  end

  def test_client_certificates
    serve_tls(tls: tls(ca: path("ca.pem"), verify: :peer)) do |server|
      out, status = curl(server.port, "--cert", path("client.pem"), "--key", path("client-key.pem"))
      assert status.success?, out
      assert_equal "https on #{server.port} GET / 0 cert\n", out

      _, status = curl(server.port) # no client certificate: refused
      refute status.success?

      _, status = curl(server.port, "--cert", path("other.pem"), "--key", path("other-key.pem"))
      refute status.success?, "a certificate from another CA is refused"
    end
    peer_app = ->(env) { [200, {}, [env["SSL_CLIENT_CERT"].to_s]] }
    serve_tls(peer_app, tls: tls(ca: File.read(path("ca.pem")))) do |server| # ca: alone means verify: :peer
      out, status = curl(server.port, "--cert", path("client.pem"), "--key", path("client-key.pem"))
      assert status.success?, out
      assert_equal OpenSSL::X509::Certificate.new(File.read(path("client.pem"))).to_pem, out
    end
  end

  def test_threaded_ractor_and_cluster_modes
    app = Kino.shareable_app { ->(env) { [200, {}, ["#{env['rack.url_scheme']} #{Process.pid}\n"]] } }
    %i[threaded ractor cluster].each do |mode|
      serve(app, lint: false, mode: mode, workers: 2, threads: 1, on_error: nil, tls: tls) do |server|
        pids = Array.new(8) do
          out, status = curl(server.port)
          assert status.success?, "#{mode}: #{out}"
          assert_match(/\Ahttps \d+\n\z/, out, mode)
          out.split.last.to_i
        end
        assert_equal [Process.pid], pids.uniq, mode unless mode == :cluster
        refute_includes pids, Process.pid, "cluster: the worker processes answer" if mode == :cluster
      end
    end
  end

  def test_ssl_listeners_next_to_plain_ones
    app = ->(env) { [200, {}, ["#{env['rack.url_scheme']} #{env['REMOTE_ADDR']}"]] }
    bind = ["tcp://127.0.0.1:0", "ssl://127.0.0.1:0", "ssl://127.0.0.1:0?proxy_protocol=1"]
    serve(app, bind: bind, tls: tls) do |server|
      plain, secure, proxied = server.urls.map { |u| u[/:(\d+)\z/, 1].to_i }
      assert_match(%r{\Ahttp://}, server.urls[0])
      assert_match(%r{\Ahttps://}, server.urls[1])
      assert_equal "http 127.0.0.1", get(plain).body
      out, status = curl(secure)
      assert status.success?, out
      assert_equal "https 127.0.0.1", out

      # the PROXY header comes first, in the clear, then the handshake
      tcp = TCPSocket.new("127.0.0.1", proxied)
      tcp.write("PROXY TCP4 203.0.113.7 127.0.0.1 4000 443\r\n")
      ssl = OpenSSL::SSL::SSLSocket.new(tcp, client_context)
      ssl.hostname = "localhost"
      ssl.sync_close = true
      ssl.connect
      ssl.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert_match(/\r\n\r\nhttps 203\.0\.113\.7\z/, Timeout.timeout(10) { ssl.read })
      ssl.close
    end
    error = assert_raises(Kino::Error) { Kino::Server.new(app, bind: "ssl://127.0.0.1:0", mode: :threaded).start }
    assert_match(/ssl:\/\/ listeners need the tls settings/, error.message)
  end

  # -- hostile clients -----------------------------------------------------

  def test_plain_http_on_the_tls_port_gets_a_plain_400_and_a_close
    serve_tls(quiet: true) do |server|
      reply = raw(server.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert_match(%r{\AHTTP/1\.1 400 Bad Request\r\n}, reply)
      assert_includes reply, "Connection: close"
      out, status = curl(server.port) # and TLS still works
      assert status.success?, out
    end
  end

  def test_stalled_partial_and_garbage_clients_cost_nothing_lasting
    serve_tls(header_timeout: 1, quiet: true) do |server|
      silent = TCPSocket.new("127.0.0.1", server.port)
      partial = TCPSocket.new("127.0.0.1", server.port)
      partial.write("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".b) # a ClientHello that stops
      garbage = TCPSocket.new("127.0.0.1", server.port)
      garbage.write("\x16\x03\x01\x00\x05hello, not a handshake".b + Random.bytes(2000))
      vanished = TCPSocket.new("127.0.0.1", server.port)
      vanished.write("\x16\x03\x01".b)
      vanished.close
      # a client that starts a handshake and then never reads its answer
      stuck = OpenSSL::SSL::SSLSocket.new(TCPSocket.new("127.0.0.1", server.port), client_context)
      stuck.connect_nonblock(exception: false)

      out, status = curl(server.port) # others are served meanwhile
      assert status.success?, out
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      reply = read_all(garbage, timeout: 5)
      assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, :<, 4, "garbage is closed at once"
      refute_includes reply, "HTTP/1.1"
      [silent, partial].each do |socket|
        started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        read_all(socket, timeout: 10)
        waited = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
        assert_operator waited, :<, 9, "closed by header_timeout, not left open"
      end
      stuck.io.close
      [silent, partial, garbage].each(&:close)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
      sleep 0.05 until server.stats[:connections].zero? || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      assert_equal 0, server.stats[:connections], "every hostile connection is gone"
      out, status = curl(server.port)
      assert status.success?, out
    end
  end

  def test_trickled_handshake_is_bounded_from_accept
    serve_tls(header_timeout: 1, quiet: true) do |server|
      socket = TCPSocket.new("127.0.0.1", server.port)
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      hello = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".b + ("\x01".b * 40)
      closed = false
      hello.each_char do |byte|
        socket.write(byte)
        break if socket.wait_readable(0.2) && socket.read_nonblock(10, exception: false).nil?
      rescue SystemCallError # closed by the server: a write or a read may see the reset
        closed = true
        break
      end
      read_all(socket, timeout: 5) unless closed
      waited = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
      assert_operator waited, :<, 6, "one byte at a time does not extend the deadline"
    ensure
      socket&.close
    end
  end

  # -- errors at start -----------------------------------------------------

  def test_bad_settings_fail_at_start_naming_tls_and_the_file
    app = ->(_env) { [200, {}, []] }
    File.write(path("junk.pem"), "not a certificate\n")
    {
      tls(cert: path("missing.pem")) => /TLS: cannot read the certificate file .*missing\.pem: No such file/,
      tls(cert: path("junk.pem")) => /TLS: no usable PEM certificate in .*junk\.pem/,
      tls(key: path("junk.pem")) => /TLS: no usable PEM private key in .*junk\.pem/,
      tls(key: path("other-key.pem")) => /TLS: the key in .*other-key\.pem does not match the certificate in .*chain\.pem/,
      tls(ca: path("junk.pem")) => /TLS: no usable PEM CA certificate in .*junk\.pem/,
      tls(ciphers: "NOT-A-CIPHER") => /TLS: no usable cipher in ciphers "NOT-A-CIPHER"/
    }.each do |settings, message|
      error = assert_raises(Kino::Error) { Kino::Server.new(app, mode: :threaded, tls: settings).start }
      assert_match message, error.message
    end
    {
      { cert: path("chain.pem") } => /key: a file path or PEM text/,
      tls(verify: :sometimes) => /verify: :peer or :none/,
      tls(verify: :peer) => /verify: :peer needs ca:/,
      tls(min_version: "1.1") => /min_version/,
      tls(colour: "blue") => /:colour is unknown/,
      "cert.pem" => /a Hash/
    }.each do |settings, message|
      error = assert_raises(ArgumentError) { Kino::Server.new(app, mode: :threaded, tls: settings) }
      assert_match message, error.message
    end
  end

  def test_cli_flags_and_config_directive
    File.write(path("config.ru"), "run ->(env) { [200, {}, [env['rack.url_scheme']]] }\n")
    File.write(path("kino.rb"), "tls cert: #{path('chain.pem').inspect}, key: \"wrong.pem\", min_version: \"1.2\"\nworkers 1\n")
    cmd = [RbConfig.ruby, KINO, "-p", "0", "--tls-key", path("server-key.pem")] # the flag wins over the file's key
    with_server(cmd, dir: @dir, env: { "RACK_ENV" => nil }) do |port, banner|
      assert_match(%r{listening: https://127\.0\.0\.1:\d+}, banner)
      assert_match(/tls: on \(OpenSSL/, banner)
      out, status = curl(port)
      assert status.success?, out
      assert_equal "https", out
    end
  end

  # -- sslscan (make test-tls) ----------------------------------------------

  def test_sslscan_finds_no_old_protocol_or_weak_cipher
    skip "sslscan runs under make test-tls" unless ENV["KINO_SSLSCAN"]

    serve_tls(quiet: true) do |server|
      out, err, status = run_command(["sslscan", "--no-colour", "--xml=#{path('scan.xml')}", "127.0.0.1:#{server.port}"],
                                     env: CLIENT_ENV)
      assert status.success?, err
      xml = File.read(path("scan.xml"))
      %w[ssl:2 ssl:3 tls:1.0 tls:1.1].each do |proto|
        type, version = proto.split(":")
        assert_match(/<protocol type="#{type}" version="#{Regexp.escape(version)}" enabled="0"/, xml, "#{proto} refused")
      end
      assert_match(/<protocol type="tls" version="1.2" enabled="1"/, xml)
      assert_match(/<protocol type="tls" version="1.3" enabled="1"/, xml)
      ciphers = xml.scan(/<cipher status="(?:preferred|accepted)"[^>]*cipher="([^"]+)"[^>]*bits="(\d+)"/)
      refute_empty ciphers, out
      ciphers.each do |name, bits|
        assert_operator bits.to_i, :>=, 128, name
        refute_match(/RC4|DES|NULL|MD5|EXPORT|CBC|SHA$|anon/i, name, "weak cipher #{name} accepted")
      end
    end
  end
end

# A build without TLS (make TLS=0) says so when TLS is asked for.
class TLSAbsentTest < Minitest::Test
  def test_asking_for_tls_fails_at_start_saying_the_build_has_none
    skip "this build has TLS (make TLS=0 runs this)" if Kino::Native::TLS

    refute Kino::Native.tls_available?
    app = ->(_env) { [200, {}, []] }
    error = assert_raises(Kino::Error) { Kino::Server.new(app, mode: :threaded, tls: { cert: "c.pem", key: "k.pem" }).start }
    assert_match(/TLS was asked for, but this Kino was built without it/, error.message)
    error = assert_raises(Kino::Error) { Kino::Server.new(app, mode: :threaded, bind: "ssl://127.0.0.1:0").start }
    assert_match(/ssl:\/\/ needs TLS, which this build of Kino does not have/, error.message)
  end
end

# frozen_string_literal: true

require_relative "helper"
require_relative "process_helper"

# bind as URLs: several listeners, TCP and unix sockets, the CLI's
# repeated -b, and the errors for what cannot be listened on.
class ListenersTest < Minitest::Test
  include TempDir
  include KinoTest
  include KinoProcess

  ENV_APP = ->(env) { [200, { "content-type" => "text/plain" }, ["#{env['REMOTE_ADDR']} #{env['REMOTE_PORT']} #{env['SERVER_PORT']}"]] }

  def unix_get(path, request = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    socket = UNIXSocket.new(path)
    socket.write(request)
    parse_responses(read_all(socket)).first
  ensure
    socket&.close
  end

  def test_tcp_and_unix_listeners_serve_the_same_app
    sock = File.join(@dir, "kino.sock")
    serve(ENV_APP, bind: ["tcp://127.0.0.1:0", "unix://#{sock}"]) do |server|
      assert_equal 2, server.urls.size
      assert_match(%r{\Ahttp://127\.0\.0\.1:\d+\z}, server.urls[0])
      assert_equal server.port, server.urls[0][/\d+\z/].to_i
      assert_equal "unix://#{sock}", server.urls[1]
      assert File.socket?(sock)

      tcp = get(server.port)
      assert_equal 200, tcp.status
      addr, port, server_port = tcp.body.split
      assert_equal "127.0.0.1", addr
      assert_operator port.to_i, :>, 0
      assert_equal "80", server_port # from "Host: 127.0.0.1", which names no port

      unix = unix_get(sock)
      assert_equal 200, unix.status
      assert_equal "127.0.0.1 0 80", unix.body
    end
  end

  def test_unix_socket_remote_addr_and_removal_at_exit
    sock = File.join(@dir, "app.sock")
    serve(ENV_APP, bind: "unix://#{sock}") do |server|
      assert_nil server.port
      response = unix_get(sock)
      assert_equal 200, response.status
      assert_equal "127.0.0.1 0 80", response.body
      assert_match(/listening: unix:\/\/#{Regexp.escape(sock)}/, server.banner)
    end
    refute File.exist?(sock), "the socket file is removed at exit"
  end

  def test_stale_unix_socket_is_reclaimed
    sock = File.join(@dir, "stale.sock")
    UNIXServer.new(sock).close # a socket file nobody accepts on
    assert File.socket?(sock)
    serve(ENV_APP, bind: "unix://#{sock}") do
      assert_equal 200, unix_get(sock).status
    end
  end

  def test_live_unix_socket_is_refused
    sock = File.join(@dir, "live.sock")
    live = UNIXServer.new(sock)
    error = assert_raises(Kino::Error) { Kino::Server.new(ENV_APP, mode: :threaded, bind: "unix://#{sock}").start }
    assert_match(/in use by a live server/, error.message)
    assert File.socket?(sock), "the live server's socket is left alone"
  ensure
    live&.close
  end

  def test_a_path_that_is_not_a_socket_is_refused
    path = File.join(@dir, "file")
    File.write(path, "x")
    error = assert_raises(Kino::Error) { Kino::Server.new(ENV_APP, mode: :threaded, bind: "unix://#{path}").start }
    assert_match(/not a socket/, error.message)
    assert_equal "x", File.read(path)
  end

  def test_abstract_unix_socket
    skip "abstract sockets are Linux only" unless RUBY_PLATFORM.include?("linux")

    name = "kino-test-#{Process.pid}-#{rand(1 << 30)}"
    serve(ENV_APP, bind: "unix://@#{name}") do
      socket = Socket.new(:UNIX, :STREAM)
      socket.connect(Socket.sockaddr_un("\0#{name}"))
      socket.write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert_equal 200, parse_responses(read_all(socket)).first.status
    ensure
      socket&.close
    end
  end

  def test_two_tcp_listeners_and_the_first_is_the_port
    serve(ENV_APP, bind: ["tcp://127.0.0.1:0", "tcp://127.0.0.1:0"]) do |server|
      ports = server.urls.map { |u| u[/\d+\z/].to_i }
      assert_equal 2, ports.uniq.size
      assert_equal ports.first, server.port
      ports.each { |p| assert_equal 200, get(p).status }
      # SERVER_PORT without a Host header is the port of the listener used
      ports.each do |p|
        response = parse_responses(raw(p, "GET / HTTP/1.0\r\n\r\n")).first
        assert_equal p.to_s, response.body.split.last
      end
    end
  end

  def test_bare_host_with_port_option_still_works
    serve(ENV_APP, bind: "127.0.0.1", port: 0) do |server|
      assert_equal 200, get(server.port).status
      assert_equal ["http://127.0.0.1:#{server.port}"], server.urls
    end
  end

  def test_invalid_binds_are_named
    ["", [], "http://x:1", "tcp://h:70000", "unix://", "tcp://h:1?x=1", 5, ["127.0.0.1", nil]].each do |bind|
      error = assert_raises(ArgumentError, bind.inspect) { Kino::Server.new(ENV_APP, mode: :threaded, bind: bind) }
      assert_match(/invalid bind/, error.message)
    end
  end

  def test_ssl_without_tls_is_a_clear_error
    skip "this build has TLS" if Kino::Listeners.tls_available?

    server = Kino::Server.new(ENV_APP, mode: :threaded, bind: "ssl://127.0.0.1:0")
    error = assert_raises(Kino::Error) { server.start }
    assert_match(/needs TLS/, error.message)
  end

  def test_cli_repeated_bind_lists_every_url
    sock = File.join(@dir, "cli.sock")
    File.write(File.join(@dir, "config.ru"), "run ->(env) { [200, {}, [env['REMOTE_ADDR']]] }\n")
    cmd = [RbConfig.ruby, KINO, "-m", "threaded", "-w", "1", "-b", "tcp://127.0.0.1:0", "-b", "unix://#{sock}"]
    with_server(cmd, dir: @dir) do |port, banner|
      assert_match(%r{listening: http://127\.0\.0\.1:#{port}\n}, banner)
      assert_includes banner, "listening: unix://#{sock}"
      assert_equal [200, "127.0.0.1"], http_get(port)
      assert_equal "127.0.0.1", unix_get(sock).body
    end
    refute File.exist?(sock)
  end

  def test_config_file_bind_may_repeat
    path = File.join(@dir, "kino.rb")
    File.write(path, "bind \"tcp://127.0.0.1:0\"\nbind \"unix://#{@dir}/c.sock\"\n")
    assert_equal ["tcp://127.0.0.1:0", "unix://#{@dir}/c.sock"], Kino::Configuration.load(path).server_options[:bind]
  end
end

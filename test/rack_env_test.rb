# frozen_string_literal: true

require_relative "helper"

# The Rack env Kino builds, checked by Rack::Lint on every request and by
# explicit assertions here; and rack.input's reading methods.
class RackEnvTest < Minitest::Test
  include KinoTest

  # Runs the request, hands back the env the app saw (copied).
  def env_for(request, **options)
    seen = Queue.new
    app = lambda do |env|
      seen << env.reject { |k, _| k.start_with?("rack.") && k != "rack.url_scheme" }.merge(
        "input" => env["rack.input"].read, "errors" => env["rack.errors"]
      )
      [200, {}, ["ok"]]
    end
    serve(app, **options) do |server|
      raw(server.port, request.gsub("PORT", server.port.to_s))
      return [seen.pop, server]
    end
  end

  def test_cgi_keys
    env, server = env_for("GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com:PORT\r\nUser-Agent: t\r\nConnection: close\r\n\r\n")
    assert_equal "GET", env["REQUEST_METHOD"]
    assert_equal "", env["SCRIPT_NAME"]
    assert_equal "/a/b", env["PATH_INFO"]
    assert_equal "x=1&y=2", env["QUERY_STRING"]
    assert_equal "example.com", env["SERVER_NAME"]
    assert_equal server.port.to_s, env["SERVER_PORT"]
    assert_equal "HTTP/1.1", env["SERVER_PROTOCOL"]
    assert_equal "127.0.0.1", env["REMOTE_ADDR"]
    assert_equal "http", env["rack.url_scheme"]
    assert_equal "t", env["HTTP_USER_AGENT"]
    assert_equal "example.com:#{server.port}", env["HTTP_HOST"]
    assert_equal "Kino/#{Kino::VERSION}", env["SERVER_SOFTWARE"]
    errors = env["errors"].instance_variable_get(:@error) # inside Lint's wrapper
    assert_kind_of Kino::ErrorStream, errors
    assert Ractor.shareable?(errors)
  end

  def test_query_string_is_empty_when_absent_and_port_defaults_to_80
    env, = env_for("GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
    assert_equal "", env["QUERY_STRING"]
    assert_equal "80", env["SERVER_PORT"]
  end

  def test_http10_without_host_uses_the_bind_address
    env, server = env_for("GET / HTTP/1.0\r\n\r\n")
    assert_equal "127.0.0.1", env["SERVER_NAME"]
    assert_equal server.port.to_s, env["SERVER_PORT"]
    assert_equal "HTTP/1.0", env["SERVER_PROTOCOL"]
    refute env.key?("HTTP_HOST")
  end

  def test_ipv6_host
    env, = env_for("GET / HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n\r\n")
    assert_equal "[::1]", env["SERVER_NAME"]
    assert_equal "8080", env["SERVER_PORT"]
  end

  def test_absolute_form_authority_wins_over_host
    env, = env_for("GET http://real.example/p?q HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n")
    assert_equal "real.example", env["SERVER_NAME"]
    assert_equal "/p", env["PATH_INFO"]
    assert_equal "q", env["QUERY_STRING"]
  end

  def test_content_headers_have_no_http_prefix
    env, = env_for("POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
    assert_equal "text/plain", env["CONTENT_TYPE"]
    assert_equal "3", env["CONTENT_LENGTH"]
    refute env.key?("HTTP_CONTENT_TYPE")
    refute env.key?("HTTP_CONTENT_LENGTH")
    assert_equal "abc", env["input"]
  end

  def test_repeated_fields_are_joined
    env, = env_for("GET / HTTP/1.1\r\nHost: x\r\nAccept: a\r\nAccept: b\r\nCookie: c=1\r\nCookie: d=2\r\n" \
                   "X-Custom-Thing: 1\r\nx-custom-thing: 2\r\nConnection: close\r\n\r\n")
    assert_equal "a, b", env["HTTP_ACCEPT"]
    assert_equal "c=1; d=2", env["HTTP_COOKIE"]
    assert_equal "1, 2", env["HTTP_X_CUSTOM_THING"]
  end

  def test_header_names_with_underscores_are_dropped
    env, = env_for("GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1\r\nX_Forwarded_For: 6.6.6.6\r\nConnection: close\r\n\r\n")
    assert_equal "1.1.1.1", env["HTTP_X_FORWARDED_FOR"]
  end

  def test_keys_are_frozen_strings
    keys = Queue.new
    serve(->(env) { keys << env.keys; [200, {}, []] }) do |server|
      get(server.port, "/", "X-Odd-Header" => "v")
      assert keys.pop.all? { |k| k.is_a?(String) && k.frozen? }
    end
  end

  def test_rack_input_read_forms
    results = Queue.new
    app = lambda do |env|
      input = env["rack.input"]
      buf = +"junk"
      results << [input.read(3), input.read(0), input.read(4, buf), buf.equal?(buf), buf.encoding,
                  input.read, input.read, input.read(1)]
      [200, {}, ["ok"]]
    end
    serve(app) do |server|
      raw(server.port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789")
      a, zero, four, same, enc, rest, again, eof = results.pop
      assert_equal "012", a
      assert_equal "", zero
      assert_equal "3456", four
      assert same
      assert_equal Encoding::BINARY, enc
      assert_equal "789", rest
      assert_equal "", again
      assert_nil eof
    end
  end

  def test_rack_input_gets_and_each
    results = Queue.new
    app = lambda do |env|
      input = env["rack.input"]
      first = input.gets
      rest = []
      input.each { |line| rest << line }
      results << [first, rest, input.gets]
      [200, {}, ["ok"]]
    end
    serve(app) do |server|
      raw(server.port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\nConnection: close\r\n\r\none\ntwo\nthree!")
      first, rest, last = results.pop
      assert_equal "one\n", first
      assert_equal ["two\n", "three!"], rest
      assert_nil last
    end
  end

  def test_bodyless_requests_share_the_frozen_null_input
    inputs = Queue.new
    app = lambda do |env|
      input = env["rack.input"]
      inputs << [input, input.read, input.read(5), input.gets, input.read(0, +"x")]
      [200, {}, []]
    end
    serve(app, lint: false) do |server| # Lint would wrap the input
      get(server.port)
      input, all, five, line, zero = inputs.pop
      assert_same Kino::NULL_INPUT, input
      assert input.frozen?
      assert Ractor.shareable?(input)
      assert_equal ["", nil, nil, ""], [all, five, line, zero]
    end
  end

  def test_rack_input_is_dead_after_the_request
    kept = Queue.new
    serve(->(env) { kept << env["rack.input"]; [200, {}, []] }, lint: false) do |server|
      raw(server.port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
      input = kept.pop
      assert_raises(IOError) { input.read }
    end
  end

  def test_body_split_across_packets
    results = Queue.new
    serve(->(env) { results << env["rack.input"].read; [200, {}, []] }) do |server|
      socket = connect(server.port)
      socket.write("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n")
      4.times do
        socket.write("a" * 5000)
        sleep 0.02
      end
      assert_equal 200, read_response(socket).status
      assert_equal "a" * 20_000, results.pop
      socket.close
    end
  end

  def test_unread_body_does_not_confuse_the_next_request
    serve(->(env) { [200, {}, [env["PATH_INFO"]]] }) do |server|
      socket = connect(server.port)
      socket.write("POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nXXXXXGET /two HTTP/1.1\r\nHost: x\r\n\r\n")
      assert_equal "/one", read_response(socket).body
      assert_equal "/two", read_response(socket).body
      socket.close
    end
  end
end

# frozen_string_literal: true

require_relative "helper"

# HTTP/1.1 behaviour over real sockets: framing, keep-alive, pipelining,
# HTTP/1.0, bodiless responses, errors, and the response-header rules.
class HTTPTest < Minitest::Test
  include KinoTest

  HELLO = ->(_env) { [200, { "content-type" => "text/plain" }, ["Hello, World!"]] }

  def test_get_with_date_server_and_content_length
    serve(HELLO) do |server|
      response = get(server.port, "/plaintext")
      assert_equal 200, response.status
      assert_equal "Hello, World!", response.body
      assert_equal "13", response["content-length"]
      assert_equal "Kino", response["server"]
      assert_match(/\A\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT\z/, response["date"])
      assert_equal "text/plain", response["content-type"]
    end
  end

  def test_post_body_reaches_the_app
    echo = ->(env) { [200, { "content-type" => "text/plain" }, [env["rack.input"].read]] }
    serve(echo) do |server|
      data = raw(server.port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world")
      assert_equal "hello world", parse_responses(data).first.body
    end
  end

  def test_keep_alive_reuses_the_connection
    serve(->(env) { [200, {}, [env["PATH_INFO"]]] }) do |server|
      socket = connect(server.port)
      3.times do |i|
        socket.write("GET /#{i} HTTP/1.1\r\nHost: x\r\n\r\n")
        response = read_response(socket)
        assert_equal "/#{i}", response.body
        assert_nil response["connection"]
      end
      assert_equal 1, server.stats[:accepted]
      socket.close
    end
  end

  def test_three_pipelined_requests_are_answered_in_order
    app = lambda do |env|
      sleep 0.05 if env["PATH_INFO"] == "/slow" # the first one takes longest
      [200, {}, ["#{env['PATH_INFO']} #{env['rack.input'].read}"]]
    end
    serve(app, threads: 4) do |server|
      data = raw(server.port, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n" \
                              "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" \
                              "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert_equal ["/slow ", "/b abc", "/c "], parse_responses(data).map(&:body)
    end
  end

  def test_http10_closes_unless_keep_alive
    serve(HELLO) do |server|
      data = raw(server.port, "GET / HTTP/1.0\r\n\r\n", timeout: 2)
      responses = parse_responses(data)
      assert_equal 1, responses.size
      assert_equal "close", responses.first["connection"]

      socket = connect(server.port)
      socket.write("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
      response = read_response(socket)
      assert_equal "keep-alive", response["connection"]
      socket.write("GET / HTTP/1.0\r\n\r\n")
      assert_equal "Hello, World!", read_response(socket).body
      assert_equal "", read_all(socket, timeout: 2) # then closed
      socket.close
    end
  end

  def test_connection_close_is_honoured
    serve(HELLO) do |server|
      data = raw(server.port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
      responses = parse_responses(data)
      assert_equal 1, responses.size
      assert_equal "close", responses.first["connection"]
    end
  end

  def test_head_sends_headers_but_no_body
    app = ->(_env) { [200, { "content-type" => "text/plain" }, ["twelve bytes"]] }
    serve(app, lint: false) do |server|
      socket = connect(server.port)
      socket.write("HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
      head = read_response(socket, head: true)
      assert_equal "12", head["content-length"]
      assert_equal "twelve bytes", read_response(socket).body # no stray body bytes in between
      socket.close
    end
  end

  def test_204_and_304_have_no_body_and_no_length
    app = lambda do |env|
      status = env["PATH_INFO"] == "/204" ? 204 : 304
      [status, {}, []]
    end
    serve(app) do |server|
      socket = connect(server.port)
      socket.write("GET /204 HTTP/1.1\r\nHost: x\r\n\r\nGET /304 HTTP/1.1\r\nHost: x\r\n\r\n")
      r204 = read_response(socket)
      r304 = read_response(socket)
      assert_equal [204, 304], [r204.status, r304.status]
      assert_nil r204["content-length"]
      assert_nil r304["content-length"]
      assert_nil r204["transfer-encoding"]
      socket.close
    end
  end

  def test_app_error_is_a_500_and_the_next_request_is_served
    app = lambda do |env|
      raise ArgumentError, "boom" if env["PATH_INFO"] == "/raise"

      [200, {}, ["fine"]]
    end
    serve(app, quiet: true) do |server, errors|
      assert_equal 500, get(server.port, "/raise").status
      assert_equal "fine", get(server.port, "/ok").body
      assert_equal ArgumentError, errors.pop.class
    end
  end

  def test_error_report_names_the_request_and_the_app_frame
    app = ->(_env) { raise "kaput" }
    log = nil
    serve(app, lint: false, quiet: true, on_error: nil) do |server|
      saved = $stderr
      $stderr = StringIO.new
      get(server.port, "/broken")
      sleep 0.05
      log = $stderr.string
    ensure
      $stderr = saved
    end
    prefix = /kino\[#{Process.pid}\] worker-0: /
    assert_match(%r{\A#{prefix}500 GET /broken · RuntimeError: kaput \(test/http_test\.rb:\d+\)}, log)
    assert_match(/^#{prefix}    test\/http_test\.rb:\d+:in/, log)
  end

  def test_array_and_multiline_header_values_become_separate_lines
    app = ->(_env) { [200, { "set-cookie" => ["a=1", "b=2"], "x-multi" => "one\ntwo" }, ["ok"]] }
    serve(app, lint: false) do |server| # Rack 3 Lint forbids "\n"; Rack 2 apps use it
      response = get(server.port)
      assert_equal ["a=1", "b=2"], response.header_lines("set-cookie")
      assert_equal %w[one two], response.header_lines("x-multi")
    end
  end

  def test_non_string_header_values_use_to_s
    app = ->(_env) { [200, { "x-number" => 42, "x-flag" => true, :"x-symbol" => :sym }, ["ok"]] }
    serve(app, lint: false) do |server|
      response = get(server.port)
      assert_equal "42", response["x-number"]
      assert_equal "true", response["x-flag"]
      assert_equal "sym", response["x-symbol"]
    end
  end

  def test_cr_lf_or_nul_in_a_header_gives_500_and_nothing_else
    ["evil\r\nset-cookie: x=1", "a\rb", "a\0b"].each do |value|
      app = ->(_env) { [200, { "x-bad" => value }, ["should not be sent"]] }
      serve(app, lint: false, quiet: true) do |server, errors|
        data = raw(server.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        responses = parse_responses(data)
        assert_equal [500], responses.map(&:status), value.inspect
        refute_includes data, "should not be sent"
        refute_includes data, "x=1"
        assert_kind_of Kino::ResponseError, errors.pop
      end
    end
  end

  def test_app_can_set_date_and_server
    app = ->(_env) { [200, { "server" => "Custom", "date" => "Thu, 01 Jan 1970 00:00:00 GMT" }, ["ok"]] }
    serve(app) do |server|
      response = get(server.port)
      assert_equal ["Custom"], response.header_lines("server")
      assert_equal ["Thu, 01 Jan 1970 00:00:00 GMT"], response.header_lines("date")
    end
  end

  def test_streaming_body_is_chunked_on_http11_and_close_delimited_on_http10
    body = Class.new do
      def each
        yield "first,"
        yield ""
        yield "second"
      end
    end
    serve(->(_env) { [200, {}, body.new] }) do |server|
      socket = connect(server.port)
      socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      response = read_response(socket)
      assert_equal "chunked", response["transfer-encoding"]
      assert_equal "first,second", response.body
      socket.close

      data = raw(server.port, "GET / HTTP/1.0\r\n\r\n")
      response = parse_responses(data).first
      assert_nil response["transfer-encoding"]
      assert_equal "close", response["connection"]
      assert_equal "first,second", response.body
    end
  end

  def test_app_content_length_is_kept_for_streaming_bodies
    body = Enumerator.new { |y| y << "abc" << "def" }
    serve(->(_env) { [200, { "content-length" => "6" }, body] }) do |server|
      response = get(server.port)
      assert_equal "6", response["content-length"]
      assert_nil response["transfer-encoding"]
      assert_equal "abcdef", response.body
    end
  end

  def test_body_close_is_called_on_success_and_on_error
    closed = Queue.new
    body_class = Class.new do
      define_method(:initialize) { |fail| @fail = fail }
      define_method(:each) do |&block|
        block.call("part")
        raise "mid-stream" if @fail
      end
      define_method(:close) { closed << :closed }
    end
    app = ->(env) { [200, {}, body_class.new(env["PATH_INFO"] == "/fail")] }
    serve(app, quiet: true) do |server|
      assert_equal "part", get(server.port, "/ok").body
      assert_equal :closed, closed.pop
      data = raw(server.port, "GET /fail HTTP/1.1\r\nHost: x\r\n\r\n", timeout: 2)
      assert_equal :closed, closed.pop
      refute_includes data, "0\r\n\r\n" # an aborted stream is never terminated cleanly
    end
  end

  def test_large_array_body_is_written_whole
    big = "x" * (3 * 1024 * 1024)
    serve(->(_env) { [200, {}, [big, "tail"]] }) do |server|
      response = get(server.port)
      assert_equal big.bytesize + 4, response.body.bytesize
      assert response.body.end_with?("xtail")
    end
  end

  def test_malformed_request_gets_400_and_never_reaches_the_app
    called = Queue.new
    serve(->(_env) { called << true; [200, {}, ["app"]] }) do |server|
      data = raw(server.port, "GET / HTTP/1.1\r\nHost : x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
      responses = parse_responses(data)
      assert_equal [400], responses.map(&:status)
      assert_equal "close", responses.first["connection"]
      assert called.empty?
    end
  end

  def test_missing_host_on_http11_is_400
    serve(HELLO) do |server|
      assert_equal 400, parse_responses(raw(server.port, "GET / HTTP/1.1\r\n\r\n")).first.status
    end
  end

  def test_chunked_request_body_is_decoded
    serve(->(env) { [200, {}, [env["rack.input"].read]] }) do |server|
      data = raw(server.port, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" \
                              "4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\n\r\n")
      assert_equal "Wikipedia", parse_responses(data).first.body
    end
  end

  def test_response_finished_runs_in_reverse_after_close_with_status_and_error
    events = Queue.new
    body = Class.new do
      define_method(:initialize) { |log| @log = log }
      define_method(:each) { |&block| block.call("ok") }
      define_method(:close) { @log << :closed }
    end
    app = lambda do |env|
      env["rack.response_finished"] << ->(_e, status, _h, error) { events << [:first, status, error] }
      env["rack.response_finished"] << ->(_e, status, _h, error) { events << [:second, status, error] }
      raise "failed" if env["PATH_INFO"] == "/fail"

      [200, {}, body.new(events)]
    end
    serve(app, quiet: true) do |server|
      assert_equal "ok", get(server.port).body
      assert_equal [:closed, [:second, 200, nil], [:first, 200, nil]], Array.new(3) { events.pop }
      assert_equal 500, get(server.port, "/fail").status
      second, first = events.pop, events.pop
      assert_equal [:second, nil], second.first(2)
      assert_equal "failed", second.last.message
      assert_equal :first, first.first
    end
  end
end


# frozen_string_literal: true

require_relative "helper"
require "pathname"
require "tempfile"

# The server owns response framing: whatever an app returns, the client
# gets a correctly framed response, or a 500 and a close -- never a
# response that desynchronises the connection. Malformed responses are a
# 500 with a logged explanation.
class FramingTest < Minitest::Test
  include KinoTest

  PIPELINE = "GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

  # Serve +response+ for /first (and 200 "second" for /second); return the
  # statuses of everything the pipelined pair got, the first reported
  # error and what was logged.
  def exchange(response, request = PIPELINE)
    app = ->(env) { env["PATH_INFO"] == "/first" ? response : [200, {}, ["second"]] }
    result = nil
    serve(app, lint: false, quiet: true) do |server, errors|
      data = raw(server.port, request)
      result = [parse_responses(data), errors.empty? ? nil : errors.pop, $stderr.string, data]
    end
    result
  end

  def assert_500_and_close(response, why, request = PIPELINE)
    responses, error, log, data = exchange(response, request)
    assert_equal [500], responses.map(&:status), "#{response.inspect}: #{data.inspect}"
    assert_equal "close", responses.first["connection"]
    assert_kind_of Kino::ResponseError, error
    assert_match why, error.message
    assert_includes log, error.message # the explanation is logged
  end

  def test_final_1xx_statuses_are_a_500_not_an_interim_response
    [100, 102, 103].each do |status|
      assert_500_and_close([status, {}, ["x"]], /1xx status is informational/)
    end
  end

  def test_101_without_a_hijack_or_callable_body_is_a_500
    assert_500_and_close([101, { "upgrade" => "websocket", "connection" => "Upgrade" }, []], /status 101 without/)
    each_body = Class.new { def each = yield("x"); def call(_) = nil } # Rack 3: each wins
    assert_500_and_close([101, { "upgrade" => "x" }, each_body.new], /status 101 without/)
  end

  def test_101_to_http10_is_a_500
    body = ->(io) { io.close }
    assert_500_and_close([101, { "upgrade" => "x", "connection" => "Upgrade" }, body], /HTTP\/1.0/,
                         "GET /first HTTP/1.0\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
  end

  def test_transfer_encoding_other_than_chunked_is_a_500
    assert_500_and_close([200, { "transfer-encoding" => "gzip" }, ["raw"]], /other than "chunked"/)
    assert_500_and_close([200, { "transfer-encoding" => "gzip, chunked" }, ["0\r\n\r\n"]], /other than "chunked"/)
  end

  def test_content_length_with_transfer_encoding_is_a_500
    assert_500_and_close([200, { "content-length" => "5", "transfer-encoding" => "chunked" },
                          ["5\r\nhello\r\n0\r\n\r\n"]], /both content-length and transfer-encoding/)
  end

  def test_transfer_encoding_to_an_http10_client_is_a_500
    assert_500_and_close([200, { "transfer-encoding" => "chunked" }, ["0\r\n\r\n"]], /HTTP\/1.0 request/,
                         "GET /first HTTP/1.0\r\n\r\n")
  end

  def test_app_chunked_framing_still_keeps_the_connection
    responses, error, = exchange([200, { "transfer-encoding" => "chunked" }, ["5\r\nhello\r\n0\r\n\r\n"]])
    assert_nil error
    assert_equal [200, 200], responses.map(&:status)
    assert_equal %w[hello second], responses.map(&:body)
  end

  def test_framing_fields_are_dropped_on_204_304_and_early_hints
    app = lambda do |env|
      case env["PATH_INFO"]
      when "/204" then [204, { "content-length" => "0", "transfer-encoding" => "chunked" }, []]
      when "/304" then [304, { "content-length" => "10", "transfer-encoding" => "chunked", "etag" => '"e"' }, []]
      else
        env["rack.early_hints"].call("link" => "</a.css>; rel=preload", "content-length" => "7")
        [200, {}, ["hinted"]]
      end
    end
    serve(app, lint: false) do |server|
      data = raw(server.port, "GET /204 HTTP/1.1\r\nHost: x\r\n\r\nGET /304 HTTP/1.1\r\nHost: x\r\n\r\n" \
                              "GET /103 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      responses = parse_responses(data)
      assert_equal [204, 304, 103, 200], responses.map(&:status), data
      responses.first(3).each do |r|
        assert_nil r["content-length"], data
        assert_nil r["transfer-encoding"], data
      end
      assert_equal '"e"', responses[1]["etag"]
      assert_equal "hinted", responses.last.body
    end
  end

  def test_malformed_responses_are_a_500_with_an_explanation
    {
      ["abc", {}, []] => /status "abc" is not an Integer/,
      [42, {}, []] => /status 42 is not an Integer/,
      [1000, {}, []] => /status 1000/,
      [200, nil, []] => /headers are a NilClass, not a Hash/,
      [200, [%w[a b]], []] => /headers are a Array/,
      [200, {}, nil] => /body must respond to each, to_ary or call \(got NilClass\)/,
      [200, {}] => /returned \[200, \{\}\], not \[status, headers, body\]/,
      "text" => /returned String, not \[status, headers, body\]/,
      [200, { "rack.hijack" => "not callable" }, []] => /rack.hijack header is not callable/
    }.each do |response, why|
      assert_500_and_close(response, why)
    end
  end

  def test_a_three_digit_string_status_is_accepted
    responses, error, = exchange(["201", {}, ["made"]])
    assert_nil error
    assert_equal [201, 200], responses.map(&:status)
  end

  # Rails' send_file: to_path returns a Pathname.
  class PathBody
    def initialize(path) = @path = path
    def to_path = Pathname.new(@path)
    def each = raise("each must not be called: to_path goes out with sendfile")
  end

  def test_to_path_returning_a_pathname_goes_out_with_content_length
    file = Tempfile.new("kino-pathname")
    file.write("x" * 100_000)
    file.close
    serve(->(_env) { [200, { "content-type" => "application/octet-stream" }, PathBody.new(file.path)] },
          lint: false) do |server|
      response = get(server.port)
      assert_equal 200, response.status
      assert_equal "100000", response["content-length"]
      assert_nil response["transfer-encoding"]
      assert_equal "x" * 100_000, response.body
    end
  ensure
    file&.unlink
  end

  # A complete response whose body's close raises: the response stands
  # (it was complete), the error is reported, the connection closes. (The
  # engine case where the response was still unsent, handed to the I/O
  # thread, is test_hijack.c's "handed-off response".)
  class FailingClose
    def initialize(data) = @data = data
    def each = yield(@data)
    def close = raise("close failed")
  end

  def test_a_body_close_error_after_a_complete_response_keeps_the_response
    data = "y" * 100_000
    app = ->(_env) { [200, { "content-length" => data.bytesize.to_s }, FailingClose.new(data)] }
    serve(app, lint: false, quiet: true) do |server, errors|
      socket = connect(server.port)
      socket.write(PIPELINE) # the second request is not served: the connection closes
      reply = read_all(socket, timeout: 10)
      responses = parse_responses(reply)
      assert_equal [200], responses.map(&:status)
      assert_equal data.bytesize, responses.first.body.bytesize
      assert_equal "close failed", errors.pop.message
    ensure
      socket&.close
    end
  end
end

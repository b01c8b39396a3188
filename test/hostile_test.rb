# frozen_string_literal: true

require_relative "helper"

# Hostile and edge-case input over raw sockets (SPEC section 5, "Limits
# and hostile input"; RFC 9112 / RFC 9110 server requirements):
#
# - a table of malformed requests, each with the exact status it must get,
#   each followed by a desync probe (a valid request smuggled behind it in
#   the same write must never reach the app);
# - valid edge requests that must succeed with the right env, each also
#   sent byte by byte and split into two writes at every position;
# - pipelines with bodies, client disconnects, half-closed clients,
#   header, idle and keep-alive timeouts.
class HostileTest < Minitest::Test
  include KinoTest

  SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
  HOST = "Host: x\r\n"

  # Records every PATH_INFO it sees (thread-safe) and answers 200 with the
  # path, followed by a Marshal dump of the env values the tests check.
  # POST and PUT bodies are read, so the chunked decoder runs.
  class Recorder
    ENV_KEYS = %w[REQUEST_METHOD PATH_INFO QUERY_STRING SERVER_NAME SERVER_PORT SERVER_PROTOCOL
                  CONTENT_LENGTH CONTENT_TYPE].freeze

    def initialize
      @paths = Queue.new
    end

    def call(env)
      @paths << env["PATH_INFO"]
      input = %w[POST PUT].include?(env["REQUEST_METHOD"]) ? env["rack.input"].read : nil
      seen = env.slice(*ENV_KEYS)
      env.each { |k, v| seen[k] = v if k.start_with?("HTTP_") }
      seen["input"] = input
      [200, { "content-type" => "application/octet-stream" }, ["#{env['PATH_INFO']}\n".b, Marshal.dump(seen)]]
    end

    # Every path seen since the last call.
    def seen
      list = []
      list << @paths.pop(true) until @paths.empty?
      list
    rescue ThreadError
      list
    end
  end

  # The env a Recorder response describes.
  def env_of(response)
    Marshal.load(response.body.split("\n", 2).last) # rubocop:disable Security/MarshalLoad
  end

  # ------------------------------------------------------------------
  # Raw conversations
  # ------------------------------------------------------------------

  # How long a conversation waits for the server to answer or close. A
  # connection the server closes ends the wait at once, so this only needs
  # to be generous (a loaded machine moves 24 large responses slowly) and
  # shorter than what the server would otherwise wait for (header_timeout's
  # 15 s, keepalive_timeout's 65 s): then "still open" means the server
  # chose to keep it, not that the client stopped looking.
  PATIENCE = 10

  # Write +parts+ on a new connection (TCP_NODELAY, +pause+ seconds
  # between writes; stops writing if the server already closed), then
  # read until +count+ complete responses arrived, the server closed, or
  # +timeout+ passed. Returns [bytes received, whether the server closed].
  def converse(port, parts, count: nil, pause: 0, timeout: PATIENCE, close_write: false)
    socket = connect(port)
    socket.setsockopt(Socket::IPPROTO_TCP, Socket::TCP_NODELAY, 1)
    data = "".b
    begin
      parts.each_with_index do |part, i|
        sleep pause if i.positive? && pause.positive?
        socket.write(part)
      end
      socket.close_write if close_write
    rescue Errno::EPIPE, Errno::ECONNRESET
      # the server answered and closed before we were done: read what it said
    end
    closed = false
    deadline = monotonic + timeout
    loop do
      break if count && parse_responses(data, partial: false).size >= count

      left = deadline - monotonic
      break if left <= 0 || !socket.wait_readable(left)

      chunk = socket.read_nonblock(65_536, exception: false)
      if chunk.nil?
        closed = true
        break
      end
      data << chunk unless chunk == :wait_readable
    end
    [data, closed]
  rescue Errno::ECONNRESET
    [data, true]
  ensure
    socket&.close
  end

  # Run the block for every item on +threads+ threads; results in order.
  def parallel(items, threads: 12)
    results = Array.new(items.size)
    queue = Queue.new
    items.each_with_index { |item, i| queue << [item, i] }
    queue.close
    Array.new(threads) do
      Thread.new do
        while (job = queue.pop)
          results[job[1]] = yield(job[0])
        end
      end
    end.each(&:join)
    results
  end

  # What must be identical however the request was cut: status line,
  # headers except Date, body.
  def normalize(data)
    parse_responses(data).map do |r|
      [r.version, r.status, r.reason, r.headers.reject { |k, _| k.casecmp?("date") }, r.body]
    end
  end


  def short(bytes, max = 160)
    s = bytes.b.inspect
    s.size > max ? "#{s[0, max]}...(#{bytes.bytesize} bytes)" : s
  end

  def self.chunked(body, method: "POST", path: "/c", extra: "")
    "#{method} #{path} HTTP/1.1\r\n#{HOST}#{extra}Transfer-Encoding: chunked\r\n\r\n#{body}"
  end

  def self.post(body, length: body.bytesize, extra: "", version: "HTTP/1.1")
    "POST /p #{version}\r\n#{HOST}#{extra}Content-Length: #{length}\r\n\r\n#{body}"
  end

  # ------------------------------------------------------------------
  # 1. Malformed input: exact status, one response, closed, no desync
  # ------------------------------------------------------------------

  MANY_FIELDS = (1..128).map { |i| "X-F#{i}: v\r\n" }.join # + Host = 129 fields
  BIG_FIELDS = (1..70).map { |i| "X-Big#{i}: #{'v' * 1000}\r\n" }.join # ~71 KB in 71 fields

  REJECTS = [
    # request line
    ["request_line_over_8k", "GET /#{'a' * 8300} HTTP/1.1\r\n#{HOST}\r\n", 414],
    ["request_line_8193_bytes", "GET /#{'a' * (8193 - 14)} HTTP/1.1\r\n#{HOST}\r\n", 414],
    ["head_over_64k_in_one_field", "GET / HTTP/1.1\r\n#{HOST}X-Big: #{'v' * 70_000}\r\n\r\n", 431],
    ["head_over_64k_in_many_fields", "GET / HTTP/1.1\r\n#{HOST}#{BIG_FIELDS}\r\n", 431],
    ["129_header_fields", "GET / HTTP/1.1\r\n#{HOST}#{MANY_FIELDS}\r\n", 431],
    ["missing_target", "GET HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["two_spaces_after_method", "GET  / HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["two_spaces_before_version", "GET /  HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["tab_as_separator", "GET\t/ HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["leading_space_before_method", " GET / HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["trailing_space_after_version", "GET / HTTP/1.1 \r\n#{HOST}\r\n", 400],
    ["method_with_non_token_byte", "G(T / HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["space_in_target", "GET /a b HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["tab_in_target", "GET /a\tb HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["nul_in_target", "GET /a\0b HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["ctl_in_target", "GET /a\x01b HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["del_in_target", "GET /a\x7Fb HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["fragment_in_target", "GET /a#frag HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["asterisk_with_get", "GET * HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["connect_authority_form", "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501],
    ["absolute_form_ftp_scheme", "GET ftp://example.com/f HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["absolute_form_with_userinfo", "GET http://user@example.com/ HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["relative_target", "GET a/b HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["nine_empty_lines_first", "#{"\r\n" * 9}GET / HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["leading_bare_lf", "\nGET / HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["absolute_form_bad_port", "GET http://example.com:http/ HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["absolute_form_empty_authority", "GET http:///p HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["absolute_form_with_fragment", "GET http://example.com/a#f HTTP/1.1\r\n#{HOST}\r\n", 400],
    # version
    ["lowercase_version", "GET / http/1.1\r\n#{HOST}\r\n", 400],
    ["version_without_minor", "GET / HTTP/1\r\n#{HOST}\r\n", 400],
    ["version_leading_zero", "GET / HTTP/01.1\r\n#{HOST}\r\n", 400],
    ["version_two_digit_minor", "GET / HTTP/1.10\r\n#{HOST}\r\n", 400],
    ["version_with_space", "GET / HTTP/ 1.1\r\n#{HOST}\r\n", 400],
    ["version_missing_http09_style", "GET /\r\n#{HOST}\r\n", 400],
    ["version_garbage", "GET / FOO/1.1\r\n#{HOST}\r\n", 400],
    ["http_0_9_explicit", "GET / HTTP/0.9\r\n#{HOST}\r\n", 505],
    ["http_2_0", "GET / HTTP/2.0\r\n#{HOST}\r\n", 505],
    ["http_3", "GET / HTTP/3\r\n#{HOST}\r\n", 505],
    ["http2_preface_almost", "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", 505], # not the preface: HTTP/1.1 (http2_test.rb has the real one)
    # line endings
    ["bare_lf_after_request_line", "GET / HTTP/1.1\n#{HOST}\r\n", 400],
    ["bare_lf_after_header", "GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", 400],
    ["bare_lf_everywhere", "GET / HTTP/1.1\nHost: x\n\n", 400],
    ["bare_lf_final_line", "GET / HTTP/1.1\r\nHost: x\r\n\n", 400],
    ["bare_cr_in_request_line", "GET /\rx HTTP/1.1\r\n#{HOST}\r\n", 400],
    ["bare_cr_in_header_value", "GET / HTTP/1.1\r\n#{HOST}X-A: a\rb\r\n\r\n", 400],
    ["bare_cr_line_ending", "GET / HTTP/1.1\r\nHost: x\r\r\nX-A: b\r\n\r\n", 400],
    ["bare_cr_final_line", "GET / HTTP/1.1\r\nHost: x\r\n\r\r\n", 400],
    # field lines
    ["space_before_colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400],
    ["tab_before_colon", "GET / HTTP/1.1\r\n#{HOST}X-A\t: b\r\n\r\n", 400],
    ["obs_fold", "GET / HTTP/1.1\r\n#{HOST}X-A: a\r\n b\r\n\r\n", 400],
    ["obs_fold_with_tab", "GET / HTTP/1.1\r\n#{HOST}X-A: a\r\n\tb\r\n\r\n", 400],
    ["whitespace_before_first_field", "GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400],
    ["field_without_colon", "GET / HTTP/1.1\r\n#{HOST}NoColon\r\n\r\n", 400],
    ["empty_field_name", "GET / HTTP/1.1\r\n#{HOST}: value\r\n\r\n", 400],
    ["non_token_in_field_name", "GET / HTTP/1.1\r\n#{HOST}X[A]: b\r\n\r\n", 400],
    ["at_sign_in_field_name", "GET / HTTP/1.1\r\n#{HOST}X@A: b\r\n\r\n", 400],
    ["nul_in_field_name", "GET / HTTP/1.1\r\n#{HOST}X\0A: b\r\n\r\n", 400],
    ["obs_text_in_field_name", "GET / HTTP/1.1\r\n#{HOST}X\xC3\xA9: b\r\n\r\n".b, 400],
    ["nul_in_field_value", "GET / HTTP/1.1\r\n#{HOST}X-A: a\0b\r\n\r\n", 400],
    ["ctl_in_field_value", "GET / HTTP/1.1\r\n#{HOST}X-A: a\x01b\r\n\r\n", 400],
    ["del_in_field_value", "GET / HTTP/1.1\r\n#{HOST}X-A: a\x7Fb\r\n\r\n", 400],
    ["escape_in_field_value", "GET / HTTP/1.1\r\n#{HOST}X-A: a\eb\r\n\r\n", 400],
    # Host
    ["http11_without_host", "GET / HTTP/1.1\r\n\r\n", 400],
    ["two_identical_hosts", "GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n", 400],
    ["two_different_hosts", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400],
    ["host_with_userinfo", "GET / HTTP/1.1\r\nHost: user@x\r\n\r\n", 400],
    ["host_with_path", "GET / HTTP/1.1\r\nHost: x/p\r\n\r\n", 400],
    ["host_list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400],
    ["host_bad_port", "GET / HTTP/1.1\r\nHost: x:abc\r\n\r\n", 400],
    ["host_port_too_long", "GET / HTTP/1.1\r\nHost: x:123456\r\n\r\n", 400],
    ["host_space_inside", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400],
    ["host_unclosed_ipv6", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 400],
    # an http URI has a non-empty host (RFC 9110 4.2.1); nginx refuses these too
    ["empty_host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400],
    ["host_port_only", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400],
    ["host_port_only_http10", "GET / HTTP/1.0\r\nHost: :80\r\n\r\n", 400],
    ["host_two_colons", "GET / HTTP/1.1\r\nHost: x:80:80\r\n\r\n", 400],
    # Content-Length
    ["cl_and_te", post("5\r\nhello\r\n0\r\n\r\n", extra: "Transfer-Encoding: chunked\r\n", length: 5), 400],
    ["te_and_cl", chunked("5\r\nhello\r\n0\r\n\r\n", extra: "Content-Length: 5\r\n"), 400],
    ["cl_not_a_number", post("hello", length: "abc"), 400],
    ["cl_negative", post("hello", length: "-5"), 400],
    ["cl_plus_sign", post("hello", length: "+5"), 400],
    ["cl_hex", post("hello", length: "0x5"), 400],
    ["cl_decimal_point", post("hello", length: "5.0"), 400],
    ["cl_empty", post("hello", length: ""), 400],
    ["cl_two_numbers_with_space", post("hello", length: "5 5"), 400],
    ["cl_list_of_different_values", post("hello", length: "5, 6"), 400],
    ["cl_two_fields_different", post("hello", length: 5, extra: "Content-Length: 6\r\n"), 400],
    # one Content-Length, one value, even when repeats agree (nginx does the
    # same; RFC 9110 8.6 allows refusing them): no two parsers can differ
    ["cl_list_of_equal_values", post("hello", length: "5, 5"), 400],
    ["cl_two_equal_fields", post("hello", extra: "Content-Length: 5\r\n"), 400],
    ["cl_overflow", post("hello", length: "9" * 25), 400],
    ["cl_overflow_2_pow_64", post("hello", length: (2**64).to_s), 400],
    # Transfer-Encoding
    ["te_gzip_chunked", chunked("5\r\nhello\r\n0\r\n\r\n").sub("chunked", "gzip, chunked"), 501],
    ["te_gzip_only", chunked("5\r\nhello\r\n0\r\n\r\n").sub("chunked", "gzip"), 400],
    ["te_chunked_then_gzip", chunked("5\r\nhello\r\n0\r\n\r\n").sub("chunked", "chunked, gzip"), 400],
    ["te_chunked_twice_in_list", chunked("5\r\nhello\r\n0\r\n\r\n").sub("chunked", "chunked, chunked"), 400],
    ["te_chunked_twice_in_fields", chunked("5\r\nhello\r\n0\r\n\r\n", extra: "Transfer-Encoding: chunked\r\n"), 400],
    ["te_chunked_with_parameter", chunked("5\r\nhello\r\n0\r\n\r\n").sub("chunked", "chunked;q=1"), 400],
    ["te_identity", chunked("5\r\nhello\r\n0\r\n\r\n").sub("chunked", "identity"), 400],
    ["te_not_a_token", chunked("5\r\nhello\r\n0\r\n\r\n").sub("chunked", "\"chunked\""), 400],
    ["te_empty", chunked("5\r\nhello\r\n0\r\n\r\n").sub("chunked", ""), 400],
    ["te_space_before_colon", chunked("5\r\nhello\r\n0\r\n\r\n").sub("Transfer-Encoding:", "Transfer-Encoding :"), 400],
    ["te_xchunked", chunked("5\r\nhello\r\n0\r\n\r\n").sub("chunked", "xchunked"), 400],
    ["te_chunked_then_identity_field",
     chunked("5\r\nhello\r\n0\r\n\r\n", extra: "Transfer-Encoding: chunked\r\n").sub("chunked\r\n\r\n", "identity\r\n\r\n"), 400],
    ["te_on_http10", "POST /p HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400],
    # chunked bodies (the app reads them)
    ["chunk_size_not_hex", chunked("zz\r\nhello\r\n0\r\n\r\n"), 400],
    ["chunk_size_0x_prefix", chunked("0x5\r\nhello\r\n0\r\n\r\n"), 400],
    ["chunk_size_negative", chunked("-5\r\nhello\r\n0\r\n\r\n"), 400],
    ["chunk_size_leading_space", chunked(" 5\r\nhello\r\n0\r\n\r\n"), 400],
    ["chunk_size_empty", chunked("\r\nhello\r\n0\r\n\r\n"), 400],
    ["chunk_size_overflow", chunked("fffffffffffffffff\r\nhello\r\n0\r\n\r\n"), 400],
    ["chunk_data_longer_than_size", chunked("5\r\nhelloXX\r\n0\r\n\r\n"), 400],
    ["chunk_missing_crlf_after_data", chunked("5\r\nhello0\r\n\r\n"), 400],
    ["chunk_bare_lf_in_size_line", chunked("5\nhello\r\n0\r\n\r\n"), 400],
    ["chunk_bare_lf_after_data", chunked("5\r\nhello\n0\r\n\r\n"), 400],
    ["chunk_bare_cr_after_data", chunked("5\r\nhello\r0\r\n\r\n"), 400],
    ["chunk_bare_lf_after_last_chunk", chunked("5\r\nhello\r\n0\r\n\n"), 400],
    ["chunk_extension_over_4k", chunked("5;ext=#{'e' * 5000}\r\nhello\r\n0\r\n\r\n"), 400],
    ["chunk_extension_with_ctl", chunked("5;ext=\x01\r\nhello\r\n0\r\n\r\n"), 400],
    ["chunk_size_trailing_space", chunked("5 \r\nhello\r\n0\r\n\r\n"), 400],
    ["chunk_trailer_over_16k", chunked("5\r\nhello\r\n0\r\nX-T: #{'t' * 17_000}\r\n\r\n"), 400],
    ["chunk_trailer_bare_lf", chunked("5\r\nhello\r\n0\r\nX-T: a\n\r\n"), 400],
    # limits
    ["cl_over_max_body_size", post("a" * 2000), 413],
    ["cl_one_over_max_body_size", post("a" * 1025), 413],
    ["expect_100_with_cl_over_max_body_size", post("a" * 2000, extra: "Expect: 100-continue\r\n"), 413],
    ["chunked_growing_past_max_body_size", chunked("#{"64\r\n#{'a' * 100}\r\n" * 20}0\r\n\r\n"), 413],
  ].freeze

  # Every table case gets its own method, so a failure names its case.
  REJECTS.each do |name, bytes, status|
    define_method("test_reject_#{name}") do
      recorder = Recorder.new
      serve(recorder, max_body_size: 1024) do |server|
        assert_rejected(server.port, recorder, name, bytes.b, status)
      end
    end
  end

  def assert_rejected(port, recorder, name, bytes, status)
    # alone
    data, closed = converse(port, [bytes])
    responses = parse_responses(data)
    assert_equal [status], responses.map(&:status), "#{name}: #{short(bytes)} got #{short(data, 400)}"
    assert_equal "close", responses.first["connection"], "#{name}: the rejection says it closes"
    assert closed, "#{name}: the connection must be closed after #{status}"
    recorder.seen # the app may have run (chunked cases): forget it

    # desync probe: a valid request right behind it, in the same write
    data, closed = converse(port, [bytes + SMUGGLED])
    responses = parse_responses(data)
    assert_equal [status], responses.map(&:status),
                 "#{name} + smuggled request: #{short(bytes)} got #{short(data, 400)}"
    assert closed, "#{name} + smuggled request: the connection must be closed"
    refute_includes recorder.seen, "/smuggled", "#{name}: the smuggled request reached the app"
  end

  def test_the_table_has_at_least_60_cases
    assert_operator REJECTS.size, :>=, 60
    assert_equal REJECTS.size, REJECTS.map(&:first).uniq.size
  end

  # The same inputs dribbled one byte at a time get the same status.
  def test_rejects_sent_byte_by_byte_get_the_same_status
    cases = REJECTS.select { |_, bytes, _| bytes.bytesize <= 200 }
    recorder = Recorder.new
    serve(recorder, max_body_size: 1024) do |server|
      results = parallel(cases, threads: 16) do |_name, bytes, _status|
        data, closed = converse(server.port, bytes.b.chars, pause: 0.001)
        [parse_responses(data).map(&:status), closed]
      end
      failures = cases.zip(results).filter_map do |(name, bytes, status), (statuses, closed)|
        next if statuses == [status] && closed

        "#{name}: #{short(bytes)} expected [#{status}] and close, got #{statuses.inspect}#{' (left open)' unless closed}"
      end
      assert_empty failures, failures.join("\n")
      refute_includes recorder.seen, "/smuggled"
    end
  end

  # A bad request pipelined behind a good one: the good one is answered,
  # the bad one rejected, and the connection closed (no waiting for a
  # header timeout, no smuggling).
  PIPELINED_REJECTS = [
    ["missing_host", "GET /second HTTP/1.1\r\n\r\n", 400],
    ["bad_content_length", "POST /second HTTP/1.1\r\n#{HOST}Content-Length: abc\r\n\r\n", 400],
    ["cl_and_te", "POST /second HTTP/1.1\r\n#{HOST}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400],
    ["obs_fold", "GET /second HTTP/1.1\r\n#{HOST}X-A: a\r\n b\r\n\r\n", 400],
    ["http_2_0", "GET /second HTTP/2.0\r\n#{HOST}\r\n", 505],
    ["te_gzip_chunked", "POST /second HTTP/1.1\r\n#{HOST}Transfer-Encoding: gzip, chunked\r\n\r\n", 501],
    ["cl_over_max_body_size", "POST /second HTTP/1.1\r\n#{HOST}Content-Length: 5000\r\n\r\n", 413],
  ].freeze

  FIRSTS = {
    "get" => "GET /first HTTP/1.1\r\n#{HOST}\r\n",
    "post" => "POST /first HTTP/1.1\r\n#{HOST}Content-Length: 5\r\n\r\nhello",
    "chunked" => "POST /first HTTP/1.1\r\n#{HOST}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
  }.freeze

  PIPELINED_REJECTS.each do |name, bad, status|
    define_method("test_pipelined_reject_after_valid_requests_#{name}") do
      recorder = Recorder.new
      serve(recorder, max_body_size: 1024) do |server|
        failures = []
        FIRSTS.each do |kind, first|
          ["", SMUGGLED].each do |tail|
            label = "#{kind} + #{name}#{' + smuggled' unless tail.empty?}"
            start = monotonic
            data, closed = converse(server.port, [first + bad + tail])
            statuses = parse_responses(data).map(&:status)
            seen = recorder.seen
            next if statuses == [200, status] && closed && seen == ["/first"]

            failures << "#{label}: expected [200, #{status}] then close, got #{statuses.inspect}, " \
                        "#{closed ? "closed after #{(monotonic - start).round(2)}s" : "still open after #{PATIENCE}s"}, " \
                        "app saw #{seen.inspect}"
          end
        end
        assert_empty failures, failures.join("\n")
      end
    end
  end

  # Oversized heads that arrive in many pieces are caught the same way.
  def test_oversized_heads_sent_in_pieces
    serve(Recorder.new) do |server|
      REJECTS.select { |_, bytes, _| bytes.bytesize > 8000 }.each do |name, bytes, status|
        parts = bytes.b.scan(/.{1,1000}/mn)
        data, closed = converse(server.port, parts + [SMUGGLED], pause: 0.002)
        assert_equal [status], parse_responses(data).map(&:status), "#{name} in #{parts.size} pieces"
        assert closed, "#{name} in pieces: closed"
      end
    end
  end

  # A request that ends its connection is the last one read.
  def test_nothing_is_read_after_a_closing_request
    recorder = Recorder.new
    serve(recorder) do |server|
      ["GET /last HTTP/1.0\r\n\r\n",
       "GET /last HTTP/1.1\r\n#{HOST}Connection: close\r\n\r\n",
       "GET /last HTTP/1.1\r\n#{HOST}Connection: keep-alive, close\r\n\r\n",
       "POST /last HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello"].each do |first|
        data, closed = converse(server.port, [first + SMUGGLED])
        assert_equal [200], parse_responses(data).map(&:status), first.inspect
        assert closed, "#{first.inspect}: closed after the response"
        assert_equal ["/last"], recorder.seen, first.inspect
      end
    end
  end

  # ------------------------------------------------------------------
  # 2. Valid edge requests: right env, and identical however they are cut
  # ------------------------------------------------------------------

  CHUNKED_EXT = "POST /chunked HTTP/1.1\r\n#{HOST}Transfer-Encoding: chunked\r\n\r\n" \
                "5;name=value\r\nhello\r\n6 ; a=b;c\r\n world\r\n0;last\r\n" \
                "X-Trailer: t\r\nContent-Length: 100\r\n\r\n"

  PIPELINE = "POST /one HTTP/1.1\r\n#{HOST}Content-Length: 5\r\n\r\nfirst" \
             "PUT /two HTTP/1.1\r\n#{HOST}Transfer-Encoding: chunked\r\n\r\n3\r\nsec\r\n3\r\nond\r\n0\r\n\r\n" \
             "POST /three HTTP/1.1\r\n#{HOST}Content-Length: 5\r\nConnection: close\r\n\r\nthird"

  # [name, bytes, expected statuses, env checks for each final response]
  VALID = [
    ["plain_get", "GET /plain?a=1 HTTP/1.1\r\n#{HOST}\r\n", [200],
     [{ "PATH_INFO" => "/plain", "QUERY_STRING" => "a=1", "SERVER_NAME" => "x", "SERVER_PROTOCOL" => "HTTP/1.1" }]],
    ["leading_crlf", "\r\nGET /lead HTTP/1.1\r\n#{HOST}\r\n", [200], [{ "PATH_INFO" => "/lead" }]],
    ["eight_leading_crlfs", "#{"\r\n" * 8}GET /lead8 HTTP/1.1\r\n#{HOST}\r\n", [200], [{ "PATH_INFO" => "/lead8" }]],
    ["absolute_form", "GET http://example.com:8080/abs?q=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", [200],
     [{ "PATH_INFO" => "/abs", "QUERY_STRING" => "q=1", "SERVER_NAME" => "example.com", "SERVER_PORT" => "8080" }]],
    ["absolute_form_without_path", "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", [200],
     [{ "PATH_INFO" => "/", "SERVER_NAME" => "example.com" }]],
    ["options_asterisk", "OPTIONS * HTTP/1.1\r\n#{HOST}\r\n", [200],
     [{ "REQUEST_METHOD" => "OPTIONS", "PATH_INFO" => "*" }]],
    ["http_1_2_is_1_1", "GET /v12 HTTP/1.2\r\n#{HOST}\r\n", [200],
     [{ "PATH_INFO" => "/v12", "SERVER_PROTOCOL" => "HTTP/1.1" }]],
    ["http_1_0_without_host", "GET /ten HTTP/1.0\r\n\r\n", [200],
     [{ "PATH_INFO" => "/ten", "SERVER_PROTOCOL" => "HTTP/1.0" }]],
    ["obs_text_value", "GET /obs HTTP/1.1\r\n#{HOST}X-Obs: caf\xC3\xA9 \x80\xFF\r\n\r\n".b, [200],
     [{ "HTTP_X_OBS" => "caf\xC3\xA9 \x80\xFF".b }]],
    ["empty_values", "GET /empty HTTP/1.1\r\n#{HOST}X-Empty:\r\nX-Blank:   \t \r\n\r\n", [200],
     [{ "HTTP_X_EMPTY" => "", "HTTP_X_BLANK" => "" }]],
    ["ows_trimmed_and_inner_tab_kept", "GET /ows HTTP/1.1\r\n#{HOST}X-Ows: \t a\tb  \t\r\n\r\n", [200],
     [{ "HTTP_X_OWS" => "a\tb" }]],
    ["repeated_field_joined", "GET /dup HTTP/1.1\r\n#{HOST}X-Dup: a\r\nX-Dup: b\r\n\r\n", [200],
     [{ "HTTP_X_DUP" => "a, b" }]],
    ["ipv6_host", "GET /v6 HTTP/1.1\r\nHost: [::1]:9000\r\n\r\n", [200],
     [{ "SERVER_NAME" => "[::1]", "SERVER_PORT" => "9000" }]],
    ["content_length_leading_zeros", post("hello", length: "005"), [200], [{ "input" => "hello" }]],
    ["content_length_post", post("hello world"), [200], [{ "input" => "hello world", "CONTENT_LENGTH" => "11" }]],
    ["content_length_zero", post("", length: 0), [200], [{ "input" => "" }]],
    ["chunked_with_extensions_and_trailers", CHUNKED_EXT, [200], [{ "input" => "hello world", "PATH_INFO" => "/chunked" }]],
    ["chunked_uppercase_hex_leading_zeros", chunked("00A\r\n0123456789\r\n0000\r\n\r\n"), [200],
     [{ "input" => "0123456789" }]],
    ["chunked_coding_is_case_insensitive",
     "POST /cc HTTP/1.1\r\n#{HOST}Transfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", [200], [{ "input" => "abc" }]],
    ["expect_100_continue", post("hello", extra: "Expect: 100-continue\r\n"), [100, 200], [{ "input" => "hello" }]],
    ["expect_100_continue_on_http10_is_ignored", post("hello", extra: "Expect: 100-continue\r\n", version: "HTTP/1.0"),
     [200], [{ "input" => "hello", "SERVER_PROTOCOL" => "HTTP/1.0" }]],
    ["request_inside_a_content_length_body", post(SMUGGLED), [200], [{ "PATH_INFO" => "/p", "input" => SMUGGLED }]],
    ["request_inside_a_chunked_body", chunked("#{SMUGGLED.bytesize.to_s(16)}\r\n#{SMUGGLED}\r\n0\r\n\r\n"), [200],
     [{ "PATH_INFO" => "/c", "input" => SMUGGLED }]],
    ["pipeline_with_bodies", PIPELINE, [200, 200, 200],
     [{ "PATH_INFO" => "/one", "input" => "first" }, { "PATH_INFO" => "/two", "input" => "second" },
      { "PATH_INFO" => "/three", "input" => "third" }]],
  ].freeze

  def test_at_least_8_valid_cases_some_with_bodies
    assert_operator VALID.size, :>=, 8
    assert_operator VALID.count { |_, bytes, _, _| bytes.include?("Content-Length") || bytes.include?("chunked") }, :>=, 4
  end

  VALID.each do |name, bytes, statuses, checks|
    define_method("test_valid_#{name}") do
      recorder = Recorder.new
      serve(recorder, max_body_size: 1024) do |server|
        bytes = bytes.b
        data, = converse(server.port, [bytes], count: statuses.size)
        responses = parse_responses(data)
        assert_equal statuses, responses.map(&:status), "#{name}: got #{short(data, 400)}"
        finals = responses.select { |r| r.status >= 200 }
        checks.zip(finals).each do |expected, response|
          env = env_of(response)
          expected.each { |key, value| assert_equal value, env[key], "#{name}: env[#{key.inspect}]" }
        end
        reference = normalize(data)

        # byte by byte
        data, = converse(server.port, bytes.chars, count: statuses.size, pause: 0.001, timeout: 5)
        assert_equal reference, normalize(data), "#{name}: sent byte by byte"

        # two writes, split at every position
        splits = (1...bytes.bytesize).to_a
        results = parallel(splits) do |at|
          data, = converse(server.port, [bytes.byteslice(0, at), bytes.byteslice(at..)],
                           count: statuses.size, pause: 0.003, timeout: 5)
          normalize(data)
        end
        bad = splits.zip(results).reject { |_, got| got == reference }
        assert_empty bad.map { |at, got| "split at #{at}: #{got.inspect[0, 300]}" },
                     "#{name}: #{bad.size} of #{splits.size} splits differ from the whole write"
      end
    end
  end

  # Bodies the app never reads (GET with a body) are skipped, never
  # parsed as requests. Kino skips only what has already arrived (it does
  # not wait for the rest) and otherwise closes the connection after the
  # response (RFC 9112 9.6 allows that), so cut requests may end the
  # pipeline early -- but every response sent must be one of the
  # expected ones, in order, and nothing may be misread as a request.
  UNREAD = "GET /g1 HTTP/1.1\r\n#{HOST}Content-Length: 5\r\n\r\nGET /x" \
           "GET /g2 HTTP/1.1\r\n#{HOST}Transfer-Encoding: chunked\r\n\r\n7\r\nGET /y \r\n0\r\n\r\n" \
           "GET /g3 HTTP/1.1\r\n#{HOST}\r\n"

  def test_unread_bodies_are_skipped_however_they_arrive
    recorder = Recorder.new
    serve(recorder) do |server|
      data, = converse(server.port, [UNREAD], count: 3)
      assert_equal %w[/g1 /g2 /g3], parse_responses(data).map { |r| env_of(r)["PATH_INFO"] }
      reference = normalize(data)
      cuts = [UNREAD.chars] + (1...UNREAD.bytesize).map { |at| [UNREAD.byteslice(0, at), UNREAD.byteslice(at..)] }
      results = parallel(cuts) do |parts|
        data, closed = converse(server.port, parts, count: 3, pause: 0.002, timeout: 3)
        [normalize(data), closed]
      end
      bad = cuts.zip(results).reject do |_, (got, closed)|
        next false if got.empty?
        next false if got.size < 3 && !closed # cut short: then closed, not left hanging

        got.each_with_index.all? do |r, i|
          # the last response of a cut-short pipeline may announce the close
          r == reference[i] || (i == got.size - 1 && got.size < 3 &&
                                r == reference[i].dup.tap { |e| e[3] = e[3] + [%w[Connection close]] })
        end
      end
      assert_empty bad.map { |parts, (got, _)| "#{parts.size == 2 ? "split at #{parts[0].bytesize}" : 'byte by byte'}: #{got.inspect[0, 300]}" }
      refute_includes recorder.seen, "/x"
    end
  end

  # RFC 9112 3.2.2: an origin server MUST ignore Host for an absolute-form
  # target and use the target's authority.
  def test_absolute_form_authority_wins_over_host
    recorder = Recorder.new
    serve(recorder) do |server|
      data, = converse(server.port, ["GET http://example.com/abs HTTP/1.1\r\nHost: other.org\r\n\r\n"], count: 1)
      response = parse_responses(data).first
      assert_equal 200, response.status
      env = env_of(response)
      assert_equal "example.com", env["SERVER_NAME"]
      # Rack apps (Rack::Request#host, #url) prefer HTTP_HOST to SERVER_NAME
      assert_equal "example.com", env["HTTP_HOST"], "HTTP_HOST must carry the target's authority"
    end
  end

  def test_limits_are_inclusive
    recorder = Recorder.new
    serve(recorder, max_body_size: 1024) do |server|
      line = "GET /#{'a' * (8192 - 14)} HTTP/1.1" # exactly 8192 bytes
      assert_equal 8192, line.bytesize
      data, = converse(server.port, ["#{line}\r\n#{HOST}\r\n"], count: 1)
      assert_equal [200], parse_responses(data).map(&:status), "an 8192-byte request line is allowed"

      fields = (1..127).map { |i| "X-F#{i}: v\r\n" }.join # + Host = 128
      data, = converse(server.port, ["GET /f HTTP/1.1\r\n#{HOST}#{fields}\r\n"], count: 1)
      assert_equal [200], parse_responses(data).map(&:status), "128 header fields are allowed"

      data, = converse(server.port, [self.class.post("a" * 1024)], count: 1)
      response = parse_responses(data).first
      assert_equal 200, response&.status, "a body of exactly max_body_size is allowed"
      assert_equal "a" * 1024, env_of(response)["input"]

      head = "GET /h HTTP/1.1\r\n#{HOST}X-Pad: \r\n\r\n"
      head = head.sub("X-Pad: ", "X-Pad: #{'p' * (65_536 - head.bytesize)}")
      assert_equal 65_536, head.bytesize
      data, = converse(server.port, [head], count: 1)
      assert_equal [200], parse_responses(data).map(&:status), "a 64 KiB head is allowed"
    end
  end

  # ------------------------------------------------------------------
  # Expect: 100-continue, interactively
  # ------------------------------------------------------------------

  # The I/O thread invites the body it gathers (as nginx and Puma do);
  # a body too large to gather is invited by the app's first read.
  def test_100_continue_arrives_before_the_body_is_sent
    serve(Recorder.new) do |server|
      socket = connect(server.port)
      socket.write("POST /e HTTP/1.1\r\n#{HOST}Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
      interim = read_response(socket, timeout: 3)
      assert_equal 100, interim.status
      assert_equal "HTTP/1.1", interim.version
      socket.write("hello")
      final = read_response(socket, timeout: 3)
      assert_equal 200, final.status
      assert_equal "hello", env_of(final)["input"]
      socket.close
    end
  end

  def test_no_100_continue_for_http10
    serve(Recorder.new) do |server|
      socket = connect(server.port)
      socket.write("POST /e HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
      assert_equal "", read_all(socket, timeout: 0.5), "no interim response to an HTTP/1.0 client"
      socket.write("hello")
      data = read_all(socket, timeout: 3)
      assert_equal [200], parse_responses(data).map(&:status)
      refute_includes data, "100 Continue"
      socket.close
    end
  end

  # ------------------------------------------------------------------
  # 3. Client disconnects
  # ------------------------------------------------------------------

  def assert_server_recovers(server, message)
    settled = wait_until(timeout: 5) { server.stats[:in_flight].zero? && server.stats[:connections].zero? }
    assert settled, "#{message}: stats did not settle: #{server.stats.inspect}"
    response = get(server.port, "/after")
    assert_equal 200, response&.status, "#{message}: a new request must still be served"
  end

  def disconnect_app(log)
    lambda do |env|
      log << [:called, env["PATH_INFO"]]
      begin
        body = env["rack.input"].read
      rescue StandardError => e
        log << [:raised, e.class]
        raise
      end
      [200, {}, [body.to_s]]
    end
  end

  def test_client_closes_mid_head
    log = Queue.new
    serve(disconnect_app(log), workers: 1, threads: 1) do |server|
      socket = connect(server.port)
      socket.write("GET /x HTTP/1.1\r\nHo")
      sleep 0.1
      socket.close
      assert_server_recovers(server, "closed mid-head")
      assert_equal [:called, "/after"], log.pop, "the app never saw the cut request"
    end
  end

  def test_client_closes_right_after_a_partial_head
    log = Queue.new
    serve(disconnect_app(log), workers: 1, threads: 1) do |server|
      20.times do
        socket = connect(server.port)
        socket.write("GET /x HTTP/1.1\r\nHo")
        socket.close # data and FIN often arrive together
      end
      assert_server_recovers(server, "closed right after a partial head")
      assert_equal [:called, "/after"], log.pop
    end
  end

  def test_client_half_closes_mid_head
    serve(Recorder.new, workers: 1, threads: 1) do |server|
      results = parallel(Array.new(24), threads: 12) do
        converse(server.port, ["GET /x HTTP/1.1\r\nHo"], close_write: true)
      end
      open = results.count { |_, closed| !closed }
      assert_equal 0, open, "#{open} of #{results.size} connections whose client sent EOF mid-head were left open " \
                            "(until header_timeout)"
      results.each { |data, _| assert_empty parse_responses(data).map(&:status).select { |s| s < 400 } }
    end
  end

  # A body the I/O thread gathers (up to 1 MiB) never reaches the app
  # when the client leaves halfway; a larger one is streamed by the worker,
  # whose read then raises.
  def test_client_closes_mid_content_length_body
    log = Queue.new
    serve(disconnect_app(log), workers: 1, threads: 1) do |server|
      socket = connect(server.port)
      socket.write("POST /cut HTTP/1.1\r\n#{HOST}Content-Length: 100\r\n\r\n0123456789")
      sleep 0.2
      socket.close
      assert_server_recovers(server, "closed mid-body")
      assert_equal [[:called, "/after"]], drain(log), "the cut request never reaches the app"

      socket = connect(server.port)
      socket.write("POST /cut HTTP/1.1\r\n#{HOST}Content-Length: #{4 << 20}\r\n\r\n0123456789")
      assert_equal [:called, "/cut"], log.pop
      socket.close
      assert_equal :raised, log.pop.first, "reading the cut body raises"
      assert_server_recovers(server, "closed mid-streamed-body")
    end
  end

  def drain(queue)
    list = []
    list << queue.pop until queue.empty?
    list
  end

  def test_client_closes_mid_chunked_body
    log = Queue.new
    serve(disconnect_app(log), workers: 1, threads: 1) do |server|
      socket = connect(server.port)
      socket.write("POST /cut HTTP/1.1\r\n#{HOST}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n10\r\nabc")
      sleep 0.2
      socket.close
      assert_server_recovers(server, "closed mid-chunked-body")
      assert_equal [[:called, "/after"]], drain(log), "the cut request never reaches the app"

      socket = connect(server.port)
      chunk = "x" * 65_536
      socket.write("POST /cut HTTP/1.1\r\n#{HOST}Transfer-Encoding: chunked\r\n\r\n")
      20.times { socket.write("10000\r\n#{chunk}\r\n") } # past what the I/O thread gathers
      assert_equal [:called, "/cut"], log.pop
      socket.close
      assert_equal :raised, log.pop.first, "reading the cut body raises"
      assert_server_recovers(server, "closed mid-streamed-chunked-body")
    end
  end

  # Streams up to 50 MB in 64 KiB chunks; records how far it got and close.
  class BigBody
    CHUNK = ("x" * 65_536).freeze

    def initialize(log)
      @log = log
      @sent = 0
    end

    def each
      while @sent < 50 * 1024 * 1024
        yield CHUNK
        @sent += CHUNK.bytesize
      end
    end

    def close
      @log << [:closed, @sent]
    end
  end

  def test_client_closes_mid_response
    log = Queue.new
    app = ->(env) { env["PATH_INFO"] == "/big" ? [200, {}, BigBody.new(log)] : [200, {}, ["ok"]] }
    serve(app, workers: 1, threads: 1, lint: false) do |server|
      socket = connect(server.port)
      socket.write("GET /big HTTP/1.1\r\n#{HOST}\r\n")
      got = 0
      got += socket.readpartial(65_536).bytesize while got < 200_000
      socket.close
      event = Timeout.timeout(10) { log.pop }
      assert_equal :closed, event.first, "body.close is called"
      assert_operator event.last, :<, 50 * 1024 * 1024, "the stream stopped when the client left"
      assert_server_recovers(server, "closed mid-response")
    end
  end

  def test_client_vanishes_before_the_response
    log = Queue.new
    app = lambda do |env|
      if env["PATH_INFO"] == "/slow"
        sleep 0.3
        log << :answered
      end
      [200, {}, ["ok"]]
    end
    serve(app, workers: 1, threads: 1) do |server|
      socket = connect(server.port)
      socket.write("GET /slow HTTP/1.1\r\n#{HOST}\r\n")
      socket.close
      assert_equal :answered, log.pop
      assert_server_recovers(server, "vanished before the response")
    end
  end

  # The next request arrives while the previous (large) response is still
  # being written: it must be served once that response is out.
  def test_request_arriving_during_a_large_response_is_served
    big = "w" * (4 * 1024 * 1024)
    app = ->(env) { [200, {}, [env["PATH_INFO"] == "/big" ? big : "small"]] }
    serve(app) do |server|
      results = parallel(Array.new(24), threads: 12) do
        socket = connect(server.port)
        socket.write("GET /big HTTP/1.1\r\n#{HOST}\r\n")
        socket.readpartial(65_536) # the response has begun
        sleep 0.05
        socket.write("GET /small HTTP/1.1\r\n#{HOST}Connection: close\r\n\r\n")
        data = read_all(socket, timeout: 8)
        socket.close
        parse_responses(data).map { |r| r.body.bytesize }
      end
      stuck = results.count { |sizes| sizes.last != 5 }
      assert_equal 0, stuck, "#{stuck} of 24 connections never answered the request sent during a large response"
    end
  end

  # ------------------------------------------------------------------
  # 4. Half-closed clients
  # ------------------------------------------------------------------

  # Send +bytes+ then shutdown(SHUT_WR), on +connections+ connections at
  # once (the EOF often arrives together with the request, sometimes
  # later). Every response must arrive in full; then the server must close.
  def half_closed(port, bytes, count, connections: 8)
    results = parallel(Array.new(connections) { bytes }, threads: 12) do |request|
      converse(port, [request], close_write: true)
    end
    results.each do |data, _|
      assert_equal count, parse_responses(data, partial: false).size, "after shutdown(SHUT_WR): #{short(data, 300)}"
    end
    open = results.count { |_, closed| !closed }
    assert_equal 0, open, "the responses arrived in full, but the server kept #{open} of #{connections} " \
                          "half-closed connections open: it must close once it has answered a client that sent EOF"
    parse_responses(results.first.first)
  end

  def test_half_closed_client_gets_its_response
    serve(Recorder.new) do |server|
      response = half_closed(server.port, "GET /half HTTP/1.1\r\n#{HOST}\r\n", 1).first
      assert_equal 200, response.status
      assert_equal "/half", env_of(response)["PATH_INFO"]
    end
  end

  def test_half_closed_client_with_bodies
    serve(Recorder.new) do |server|
      response = half_closed(server.port, self.class.post("hello"), 1).first
      assert_equal "hello", env_of(response)["input"]
      response = half_closed(server.port, self.class.chunked("5\r\nhello\r\n0\r\n\r\n"), 1).first
      assert_equal "hello", env_of(response)["input"]
    end
  end

  def test_half_closed_client_gets_every_pipelined_response
    serve(Recorder.new) do |server|
      responses = half_closed(server.port, PIPELINE.sub("Connection: close\r\n", ""), 3)
      assert_equal %w[first second third], responses.map { |r| env_of(r)["input"] }
    end
  end

  def test_half_closed_client_gets_a_large_response_in_full
    big = "y" * (4 * 1024 * 1024)
    serve(->(_env) { [200, {}, [big]] }) do |server|
      response = half_closed(server.port, "GET / HTTP/1.1\r\n#{HOST}\r\n", 1, connections: 24).first
      assert_equal big.bytesize, response.body.bytesize
    end
  end

  # ------------------------------------------------------------------
  # 5. Header timeout; 6. keep-alive timeout
  # ------------------------------------------------------------------

  def test_incomplete_head_gets_408_after_header_timeout
    serve(Recorder.new, header_timeout: 0.5) do |server|
      start = monotonic
      data, closed = converse(server.port, ["GET / HTTP/1.1\r\nHost: x\r\n"])
      assert_equal [408], parse_responses(data).map(&:status)
      assert closed, "closed after the 408"
      assert_operator monotonic - start, :>=, 0.4, "not before header_timeout"
    end
  end

  # A byte every 50 ms for 10 s: a deadline that each byte pushed back
  # would never pass while the client dribbles, so the 408 must arrive
  # before the last byte is sent.
  def test_dribbling_does_not_extend_the_header_timeout
    serve(Recorder.new, header_timeout: 0.5) do |server|
      socket = connect(server.port)
      data = "".b
      answered = false
      "GET /slowloris HTTP/1.1\r\nHost: x\r\nX-Slow: #{'z' * 200}".each_char do |byte|
        socket.write(byte)
        sleep 0.05
        break if (answered = socket.wait_readable(0))
      rescue Errno::EPIPE, Errno::ECONNRESET # answered and closed while we were still sending
        answered = true
        break
      end
      assert answered, "the deadline covers the whole head: answered while the client was still sending it"
      data << read_all(socket, timeout: PATIENCE)
      assert_equal [408], parse_responses(data).map(&:status)
      socket.close
    end
  end

  def test_silent_connection_is_closed_without_a_response
    serve(Recorder.new, header_timeout: 0.5) do |server|
      start = monotonic
      data, closed = converse(server.port, [])
      assert closed, "closed after header_timeout"
      assert_equal "", data, "no response bytes to a client that never spoke"
      assert_operator monotonic - start, :>=, 0.4, "not before header_timeout"
    end
  end

  def test_idle_keep_alive_connection_is_closed_at_keepalive_timeout
    serve(Recorder.new, keepalive_timeout: 0.5) do |server|
      socket = connect(server.port)
      socket.write("GET /ka HTTP/1.1\r\n#{HOST}\r\n")
      assert_equal 200, read_response(socket).status
      start = monotonic
      rest = read_all(socket, timeout: PATIENCE)
      elapsed = monotonic - start
      assert_equal "", rest, "nothing is sent on close"
      assert_operator elapsed, :>=, 0.3, "kept alive for a while"
      assert_operator elapsed, :<, PATIENCE, "closed by keepalive_timeout, not left open"
      assert wait_until { server.stats[:connections].zero? }
      socket.close
    end
  end
end

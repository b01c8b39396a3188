# frozen_string_literal: true

# Shared by every Ruby suite: servers on port 0 around Rack::Lint-wrapped
# apps, and raw-socket HTTP helpers that parse exactly what came back.
require "minitest/autorun"
require "fileutils"
require "rack"
require "rack/lint"
require "socket"
require "stringio"
require "timeout"
require "tmpdir"
require "kino"

# A fresh temporary directory in @dir for each test of a class that
# includes it, removed after the test (never a fixed /tmp path: several
# suites run on this machine at once). A class's own setup may fill it.
module TempDir
  def before_setup
    super
    @dir = Dir.mktmpdir("kino-test")
  end

  def after_teardown
    FileUtils.rm_rf(@dir) if @dir
    super
  end
end

module KinoTest
  # Start a server on an ephemeral port around +app+ (wrapped in
  # Rack::Lint unless lint: false), yield it, shut it down. Errors the
  # server reports (app errors, Lint errors) are collected; the test
  # fails if any happened unless it expected them (+errors+ gets the
  # list when the block takes two arguments).
  def serve(app, lint: true, quiet: false, **options)
    errors = Queue.new
    app = Rack::Lint.new(app) if lint
    options = { workers: 1, threads: 2, mode: :threaded, on_error: ->(e, _env) { errors << e } }.merge(options)
    server = nil
    output = capture_stderr(quiet) do
      server = Kino::Server.new(app, **options).start
      yield server, errors
    ensure
      server&.shutdown(timeout: 2)
    end
    return if quiet || errors.empty?

    flunk "the server reported errors:\n#{output}"
  end

  def capture_stderr(quiet)
    return [yield, ""].last unless quiet

    saved = $stderr
    $stderr = StringIO.new
    yield
    $stderr.string
  ensure
    $stderr = saved if quiet
  end

  Response = Struct.new(:status, :reason, :headers, :body, :version, :size) do
    def [](name)
      values = headers.select { |k, _| k.casecmp?(name) }.map(&:last)
      values.empty? ? nil : values.join(", ")
    end

    def header_lines(name)
      headers.select { |k, _| k.casecmp?(name) }.map(&:last)
    end
  end

  def connect(port)
    TCPSocket.new("127.0.0.1", port)
  end

  # Send raw bytes on a new connection and read until the server closes
  # or +timeout+ passes. Returns everything received.
  def raw(port, bytes, timeout: 5, close_write: false)
    socket = connect(port)
    socket.write(bytes)
    socket.close_write if close_write
    read_all(socket, timeout: timeout)
  ensure
    socket&.close
  end

  def read_all(socket, timeout: 5)
    data = "".b
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
      break if left <= 0 || !socket.wait_readable(left)

      chunk = socket.read_nonblock(65_536, exception: false)
      break if chunk.nil? # EOF
      next if chunk == :wait_readable

      data << chunk
    end
    data
  rescue Errno::ECONNRESET
    data
  end

  # Read exactly one response from a socket (Content-Length, chunked, or
  # until close). +head+: the request was HEAD, so there is no body.
  # Bytes that arrived after a response are kept for the next call.
  def read_response(socket, head: false, timeout: 5)
    @pending ||= {}.compare_by_identity
    buffer = @pending[socket] ||= "".b
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      if (response = parse_responses(buffer, head: head, partial: false).first)
        buffer.replace(buffer.byteslice(response.size..))
        return response
      end

      left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
      raise Timeout::Error, "no complete response in #{timeout}s: #{buffer.inspect}" if left <= 0

      socket.wait_readable(left)
      chunk = socket.read_nonblock(65_536, exception: false)
      return parse_responses(buffer, head: head).first if chunk.nil? # EOF: close-delimited

      buffer << chunk unless chunk == :wait_readable
    end
  end

  # Parse every response in +data+ (a whole conversation, binary). With
  # partial: false an incomplete last response is left out.
  def parse_responses(data, head: false, partial: true)
    data = data.b unless data.encoding == Encoding::BINARY # read_response's buffer is: no 20 MB copy per read
    responses = []
    pos = 0
    while (head_end = data.index("\r\n\r\n", pos))
      response = parse_head(data.byteslice(pos, head_end - pos))
      body, pos = body_at(data, head_end + 4, response, head)
      break if body.nil? && !partial

      response.body = body || data.byteslice(head_end + 4..)
      response.size = body ? pos : data.bytesize # bytes through the end of this response
      responses << response
      break if body.nil?
    end
    responses
  end

  def parse_head(head)
    lines = head.split("\r\n")
    version, status, reason = lines.shift.split(" ", 3)
    headers = lines.map { |line| line.split(/:[ \t]*/, 2) }
    Response.new(status.to_i, reason, headers, nil, version)
  end

  # The body starting at +pos+ and the position after it; [nil, size]
  # when it has not fully arrived.
  def body_at(data, pos, response, head)
    return ["".b, pos] if head || [204, 304].include?(response.status) || response.status < 200

    if (length = response["content-length"])
      length = length.to_i
      return [nil, data.bytesize] if data.bytesize - pos < length

      [data.byteslice(pos, length), pos + length]
    elsif response["transfer-encoding"]&.include?("chunked")
      body = "".b
      loop do
        line_end = data.index("\r\n", pos) or return [nil, data.bytesize]
        size = data.byteslice(pos, line_end - pos).to_i(16)
        pos = line_end + 2
        if size.zero? # skip trailers up to the blank line
          pos = data.index("\r\n", pos) + 2 while data.byteslice(pos, 2) != "\r\n" && data.index("\r\n", pos)
          return [nil, data.bytesize] unless data.byteslice(pos, 2) == "\r\n"

          return [body, pos + 2]
        end
        return [nil, data.bytesize] if data.bytesize < pos + size + 2

        body << data.byteslice(pos, size)
        pos += size + 2
      end
    else
      [nil, data.bytesize] # close-delimited: complete only at EOF
    end
  end

  def monotonic = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  # Polls the block every 20 ms until it gives a truthy value, which it
  # returns, or until +timeout+ seconds have passed: then the last (falsy)
  # value. So `assert wait_until { ... }` waits as long as the condition
  # takes and no longer, and fails with the condition still false. The
  # timeout is there only to end a failing test; it is no timing bound.
  def wait_until(timeout: 20)
    deadline = monotonic + timeout
    until (value = yield)
      return value if monotonic > deadline

      sleep 0.02
    end
    value
  end

  def get(port, path = "/", headers = {})
    request = +"GET #{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    headers.each { |k, v| request << "#{k}: #{v}\r\n" }
    parse_responses(raw(port, request + "\r\n")).first
  end
end

# frozen_string_literal: true

require "net/http"
require "json"
require "securerandom"
require "socket"
require "uri"
require "cgi"

# An HTTP client over real sockets with what a browser brings to a Rails
# app: a cookie jar (the session) and the CSRF token from the last page.
class BrowserClient
  TIMEOUT = 30

  attr_reader :port

  def initialize(port)
    @port = port
    @cookies = {}
  end

  # GET +path+; returns the Net::HTTPResponse.
  def get(path, headers = {})
    request(Net::HTTP::Get.new(path, headers))
  end

  # POST the form +fields+ (a Hash) to +path+.
  def post_form(path, fields)
    post = Net::HTTP::Post.new(path)
    post.set_form_data(fields)
    request(post)
  end

  # POST a multipart form: +fields+ are strings, +files+ name =>
  # [filename, content type, bytes].
  def post_multipart(path, fields, files)
    boundary = "----kino#{SecureRandom.hex(12)}"
    body = +"".b
    fields.each do |name, value|
      body << "--#{boundary}\r\ncontent-disposition: form-data; name=\"#{name}\"\r\n\r\n".b << value.b << "\r\n"
    end
    files.each do |name, (filename, type, bytes)|
      body << "--#{boundary}\r\ncontent-disposition: form-data; name=\"#{name}\"; filename=\"#{filename}\"\r\n" \
              "content-type: #{type}\r\n\r\n".b << bytes.b << "\r\n"
    end
    body << "--#{boundary}--\r\n"
    post = Net::HTTP::Post.new(path, "content-type" => "multipart/form-data; boundary=#{boundary}")
    post.body = body
    request(post)
  end

  # An authenticity token from the page at +path+: its form's hidden field
  # (valid for that form's action only: Rails' per-form tokens), or with
  # +meta+ the layout's csrf-token meta tag (valid for any action).
  def csrf_token(path, meta: false)
    html = get(path).body
    token = meta ? html[/name="csrf-token" content="([^"]+)"/, 1] : html[/name="authenticity_token" value="([^"]+)"/, 1]
    token && CGI.unescapeHTML(token)
  end

  # The Cookie header this jar would send.
  def cookie_header
    @cookies.map { |name, value| "#{name}=#{value}" }.join("; ")
  end

  def forget_cookies
    @cookies.clear
  end

  private

  # Sends +req+ with the jar's cookies on a new connection; keeps the
  # cookies the response sets.
  def request(req)
    req["cookie"] = cookie_header unless @cookies.empty?
    response = Net::HTTP.start("127.0.0.1", @port, open_timeout: TIMEOUT, read_timeout: TIMEOUT) do |http|
      http.request(req)
    end
    Array(response.get_fields("set-cookie")).each do |line|
      name, value = line.split(";", 2).first.split("=", 2)
      @cookies[name] = value
    end
    response
  end
end

# A raw HTTP/1.1 exchange on one socket, read as it arrives: for streams
# (SSE), where Net::HTTP would wait for the whole body.
class RawStream
  TIMEOUT = 30

  attr_reader :status, :headers

  def initialize(port, path, headers = {})
    @socket = TCPSocket.new("127.0.0.1", port)
    lines = ["GET #{path} HTTP/1.1", "host: 127.0.0.1:#{port}", *headers.map { |k, v| "#{k}: #{v}" }]
    @socket.write("#{lines.join("\r\n")}\r\n\r\n")
    @buffer = +"".b
    read_head
  end

  # The body's next chunk of data (the payload of one HTTP chunk), or nil
  # at the end of the body.
  def next_chunk
    size_line = read_line
    size = Integer(size_line.split(";").first, 16)
    return (read_line && nil) if size.zero?

    data = read_exactly(size)
    read_exactly(2)
    data
  end

  # The next server-sent event's lines (without the blank line after it),
  # or nil at the end of the stream.
  def next_event
    until (index = (@events ||= +"").index("\n\n"))
      chunk = next_chunk
      return nil unless chunk

      @events << chunk
    end
    event = @events.slice!(0, index + 2)
    event.split("\n")
  end

  def close
    @socket.close
  end

  private

  def read_head
    head = +""
    head << read_line << "\n" until head.end_with?("\n\n") && head.size > 1
    status_line, *fields = head.strip.split("\n")
    @status = status_line.split(" ")[1].to_i
    @headers = fields.to_h { |field| field.split(":", 2).map(&:strip).then { |k, v| [k.downcase, v] } }
  end

  # One line without its CRLF.
  def read_line
    fill until (index = @buffer.index("\r\n"))
    @buffer.slice!(0, index + 2).chomp("\r\n")
  end

  def read_exactly(count)
    fill while @buffer.bytesize < count
    @buffer.slice!(0, count)
  end

  def fill
    raise "stream stalled for #{TIMEOUT} s" unless @socket.wait_readable(TIMEOUT)

    @buffer << @socket.readpartial(65_536)
  end
end

# frozen_string_literal: true

require "socket"
require "timeout"

module Bench
  # A tiny HTTP/1.1 client over a raw socket, for readiness and validation:
  # it shows the response exactly as sent (headers, framing), which
  # Net::HTTP would partly hide.
  module HttpProbe
    Response = Struct.new(:status, :headers, :body, keyword_init: true)

    # Is something accepting TCP connections on 127.0.0.1:+port+?
    def self.port_open?(port)
      Socket.tcp("127.0.0.1", port, connect_timeout: 1) { true }
    rescue SystemCallError, IOError
      false
    end

    # True only when a connection to the port is refused: nothing listens.
    def self.port_free?(port)
      Socket.tcp("127.0.0.1", port, connect_timeout: 1) { false }
    rescue Errno::ECONNREFUSED
      true
    rescue SystemCallError, IOError
      false
    end

    # Does GET +path+ answer 200? Never raises.
    def self.ok?(port, path)
      exchange(port, [request("GET", path)], timeout: 2).first.status == 200
    rescue StandardError, Timeout::Error
      false
    end

    # Send +requests+ (raw request strings) at once on one connection and
    # read one response per request. Raises on errors and timeouts.
    def self.exchange(port, requests, timeout: 10)
      Timeout.timeout(timeout) do
        Socket.tcp("127.0.0.1", port, connect_timeout: 2) do |socket|
          socket.write(requests.join)
          requests.map { read_response(socket) }
        end
      end
    end

    # The text of one request; +body+ adds Content-Type and Content-Length.
    def self.request(method, path, body = nil)
      lines = ["#{method} #{path} HTTP/1.1", "Host: 127.0.0.1", "User-Agent: kino-bench"]
      lines << "Content-Type: application/octet-stream" << "Content-Length: #{body.bytesize}" if body
      "#{lines.join("\r\n")}\r\n\r\n#{body}"
    end

    # Read one response: status line, headers, then a body framed by
    # Content-Length or chunked encoding (nil when the response has
    # neither: the caller reports that).
    def self.read_response(io)
      line = io.gets("\r\n") or raise EOFError, "connection closed before a response"
      status = line[%r{\AHTTP/1\.[01] (\d{3})}, 1] or raise "bad status line #{line.strip.inspect}"
      headers = read_headers(io)
      Response.new(status: Integer(status), headers: headers, body: read_body(io, headers))
    end

    # Header fields as a hash of lower-case name => value (repeats joined).
    def self.read_headers(io)
      headers = {}
      while (line = io.gets("\r\n")) && line != "\r\n"
        name, value = line.split(":", 2)
        raise "bad header line #{line.strip.inspect}" unless value

        key = name.strip.downcase
        headers[key] = headers.key?(key) ? "#{headers[key]}, #{value.strip}" : value.strip
      end
      headers
    end

    # The body, by the response's framing.
    def self.read_body(io, headers)
      if headers["transfer-encoding"].to_s.downcase.include?("chunked")
        read_chunked(io)
      elsif headers["content-length"]
        io.read(Integer(headers["content-length"])).to_s
      end
    end

    # Decode a chunked body (trailers are read and dropped).
    def self.read_chunked(io)
      body = +""
      loop do
        size = Integer(io.gets("\r\n").to_s.split(";").first.to_s.strip, 16)
        break if size.zero?

        body << io.read(size).to_s
        io.read(2)
      end
      nil while (line = io.gets("\r\n")) && line != "\r\n"
      body
    end
  end
end

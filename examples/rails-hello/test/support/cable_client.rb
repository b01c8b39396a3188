# frozen_string_literal: true

require "json"
require "socket"
require "websocket/driver"

# An ActionCable client: the websocket-driver gem speaking RFC 6455 over a
# plain TCP socket, as a browser would over its connection.
class CableClient
  TIMEOUT = 30

  attr_reader :url

  def initialize(port, path: "/cable", origin: "http://127.0.0.1:#{port}")
    @socket = TCPSocket.new("127.0.0.1", port)
    @url = "ws://127.0.0.1:#{port}#{path}"
    @messages = []
    @closed = nil
    @driver = WebSocket::Driver.client(self, protocols: ["actioncable-v1-json"])
    @driver.set_header("Origin", origin)
    @driver.on(:message) { |event| @messages << JSON.parse(event.data) }
    @driver.on(:close) { |event| @closed = "closed by the server (#{event.code} #{event.reason})" }
    @driver.on(:error) { |event| @closed = "protocol error: #{event.message}" }
    @driver.start
  end

  # websocket-driver writes the handshake and frames through this.
  def write(data)
    @socket.write(data)
  end

  # The handshake's HTTP status (101 once open).
  def status
    @driver.status
  end

  # Sends +payload+ (a Hash) as one JSON text frame.
  def send_json(payload)
    @driver.text(JSON.generate(payload))
  end

  # The next message that is not a ping; raises after TIMEOUT or when the
  # connection closes first.
  def next_message
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + TIMEOUT
    loop do
      while (message = @messages.shift)
        return message unless message["type"] == "ping"
      end
      raise @closed if @closed

      left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
      raise "no ActionCable message within #{TIMEOUT} s" if left <= 0
      next unless @socket.wait_readable(left)

      data = @socket.read_nonblock(65_536, exception: false)
      raise "connection closed by the server (handshake status #{@driver.status.inspect})" if data.nil?

      @driver.parse(data) unless data == :wait_readable
    end
  end

  def close
    @driver.close
    @socket.close
  end
end

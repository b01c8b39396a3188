# frozen_string_literal: true

require "websocket/driver"

# websocket-driver's server side over a fully hijacked socket, as a Rack
# app: each text message comes back as "<label>: <message>" (+label+ is
# called per message). A request that is not a WebSocket upgrade gets 200
# with the label. hijack_test uses it in process, and its :cluster test
# from a config.ru in each worker process (label: the worker's pid).
class WebSocketEcho
  def initialize(&label)
    @label = label
  end

  def call(env)
    return [200, {}, [@label.call]] unless WebSocket::Driver.websocket?(env)

    io = env["rack.hijack"].call
    socket = Struct.new(:env, :url, :io) { def write(data) = io.write(data) }
                   .new(env, "ws://#{env['HTTP_HOST']}#{env['PATH_INFO']}", io)
    driver = WebSocket::Driver.rack(socket)
    driver.on(:message) { |e| driver.text("#{@label.call}: #{e.data}") }
    driver.on(:close) { io.close unless io.closed? }
    driver.start
    Thread.new do
      loop { driver.parse(io.readpartial(4096)) }
    rescue EOFError, IOError, SystemCallError
      io.close unless io.closed?
    end
    [-1, {}, []]
  end
end

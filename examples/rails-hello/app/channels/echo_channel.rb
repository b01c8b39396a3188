# frozen_string_literal: true

# Sends every message back to the connection it came from.
class EchoChannel < ApplicationCable::Channel
  def receive(data)
    transmit(data.merge("pid" => Process.pid))
  end
end

# frozen_string_literal: true

require_relative "../../kino/rack_handler"

module Rack
  module Handler
    # Kino as a Rack 2 handler (`rackup -s kino` with rack 2, Rails before
    # 7.1). Rack 3 moved handlers to the rackup gem: see
    # lib/rackup/handler/kino.rb. Options: Kino::RackHandler.
    module Kino
      extend ::Kino::RackHandler::Handler # run, valid_options
    end

    register "kino", "Rack::Handler::Kino" if respond_to?(:register)
  end
end

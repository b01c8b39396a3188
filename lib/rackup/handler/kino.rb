# frozen_string_literal: true

require "rackup/handler" unless defined?(Rackup::Handler)
require_relative "../../kino/rack_handler"

module Rackup
  module Handler
    # Kino as a rackup handler: `rackup -s kino`, and so `rails server -u
    # kino` (Rails 7.1+ with the rackup gem). Options and their precedence:
    # Kino::RackHandler.
    module Kino
      extend ::Kino::RackHandler::Handler # run, valid_options
    end

    register :kino, Kino
  end
end

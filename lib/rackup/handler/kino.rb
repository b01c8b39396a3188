# frozen_string_literal: true

require "rackup/handler" unless defined?(Rackup::Handler)
require_relative "../../kino/rack_handler"

module Rackup
  module Handler
    # Kino as a rackup handler: `rackup -s kino`, and so `rails server -u
    # kino` (Rails 7.1+ with the rackup gem). Options and their precedence:
    # Kino::RackHandler.
    module Kino
      # Serve +app+ until INT or TERM; yields the built server first.
      def self.run(app, options = {}, **more, &block)
        ::Kino::RackHandler.run(app, options.merge(more), &block)
      end

      # The -O options, for `rackup -s kino -h`.
      def self.valid_options
        ::Kino::RackHandler::VALID_OPTIONS
      end
    end

    register :kino, Kino
  end
end

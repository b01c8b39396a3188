# frozen_string_literal: true

module Kino
  # An app Kino loads itself, when it is needed: what `preload false`
  # (mode :cluster) loads in each worker process after the fork, instead of
  # once in the master before it.
  #
  #   Kino::Server.new(Kino::Loader.rackup("config.ru"), mode: :cluster, preload: false)
  #   Kino::Server.new(Kino::Loader.new("my app") { MyApp.new }, mode: :cluster, preload: false)
  #
  # Kino::Server takes a Loader wherever it takes an app; in every other
  # case (any other mode, or preload true) it loads it once, at once.
  class Loader
    # The app the rackup file at +path+ describes (Kino::Builder.load_file).
    def self.rackup(path)
      path = File.expand_path(path)
      new(path) { Builder.load_file(path) }
    end

    # What error messages call the app.
    attr_reader :name

    # +block+ returns the app.
    def initialize(name = "the app", &block)
      raise ArgumentError, "Kino::Loader needs a block that returns the app" unless block

      @name = name
      @block = block
    end

    # Runs the block; returns the app, or raises Kino::Error when the
    # block returns something that does not respond to call.
    def load
      app = @block.call
      raise Error, "#{@name} did not build a Rack app (got #{app.inspect[0, 60]})" unless app.respond_to?(:call)

      app
    end
  end
end

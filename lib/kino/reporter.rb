# frozen_string_literal: true

require "rbconfig"

module Kino
  # Reports an error raised while serving a request: one headline naming
  # the request and where in the app it failed, then the app's frames and
  # a count of the library frames folded away:
  #
  #   500 GET /orders · RuntimeError: boom (app/orders.rb:12)
  #       app/orders.rb:12:in `show'
  #       config.ru:3:in `block in <main>'
  #       (+24 frames in gems, Ruby and Kino)
  #
  # A module with no state, so it is shareable and serves every ractor.
  module Reporter
    MAX_FRAMES = 8
    LIBRARY_DIRS = [RbConfig::CONFIG["rubylibdir"], File.expand_path("..", __dir__)].compact.map(&:freeze).freeze

    def self.report(error, env, status = 500)
      Log.error(Log.source, format(error, env, status))
    rescue StandardError
      nil # a report must never take the worker down
    end

    def self.format(error, env, status = 500)
      frames = error.backtrace || []
      app, library = frames.partition { |frame| app_frame?(frame) }
      where = app.first || frames.first
      location = where ? " (#{short(where[/\A[^:]+:\d+/] || where)})" : ""
      lines = ["#{status} #{env['REQUEST_METHOD']} #{env['PATH_INFO']} · #{error.class}: #{error.message}#{location}"]
      shown = (app.empty? ? library : app).first(MAX_FRAMES)
      lines.concat(shown.map { |frame| "    #{short(frame)}" })
      folded = frames.size - shown.size
      lines << "    (+#{folded} frames in gems, Ruby and Kino)" if folded.positive?
      lines.join("\n") << "\n"
    end

    def self.app_frame?(frame)
      !(frame.start_with?("<internal:") || frame.include?("/gems/") ||
        LIBRARY_DIRS.any? { |dir| frame.start_with?(dir) })
    end

    def self.short(frame)
      dir = Dir.pwd
      frame.start_with?("#{dir}/") ? frame[(dir.size + 1)..] : frame
    end

    private_class_method :app_frame?, :short
  end

  # What a worker calls when serving a request fails: log the error, then
  # call the on_error hook, if any. A hook that raises is logged, never
  # propagated. Frozen; shareable when the hook is.
  class ErrorHandler
    def initialize(hook = nil)
      @hook = hook
      freeze
    end

    def report(error, env)
      Reporter.report(error, env)
      explain_isolation(error)
      @hook&.call(error, env)
    rescue StandardError => e
      Log.error(Log.source, "on_error hook raised #{e.class}: #{e.message}")
    end

    # What Ruby raises when a worker ractor touches state only the main
    # ractor may use: Ractor::IsolationError, or this RuntimeError for a
    # method defined with define_method and an unshareable block.
    ISOLATION = /un-shareable Proc in a different Ractor|non-shareable objects? .* by non-main Ractor/

    private

    # The first isolation error of each worker ractor gets one line saying
    # what it means and where to look (the reports of the ones after it
    # are enough). Ractor-local, as nothing else can be written from a
    # worker ractor.
    def explain_isolation(error)
      return unless error.is_a?(Ractor::IsolationError) || (error.is_a?(RuntimeError) && ISOLATION.match?(error.message))
      return if Ractor.current[:kino_isolation_explained]

      Ractor.current[:kino_isolation_explained] = true
      Log.error(Log.source, "#{error.class} in a worker ractor: the app uses state that only the main ractor may " \
                            "touch, so requests that reach it fail in mode :ractor. Run `kino --check` " \
                            "(Kino::Check) to see what, or serve it in mode :threaded or :cluster.")
    end
  end
end

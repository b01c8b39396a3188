# frozen_string_literal: true

module Kino
  # Loads a rackup file (config.ru). With the rack gem installed this is
  # Rack::Builder; without it, this small builder, which understands the
  # same core directives: run, use, map and warmup.
  class Builder
    # The app a rackup file describes.
    def self.load_file(path)
      path = File.expand_path(path)
      raise Error, "rackup file not found: #{path}" unless File.file?(path)

      if rack_builder?
        app = ::Rack::Builder.parse_file(path)
        app.is_a?(Array) ? app.first : app # Rack 2 returns [app, options]
      else
        parse(File.read(path), path)
      end
    end

    def self.parse(source, path = "(rackup)")
      builder = new
      builder.instance_eval(source, path, 1)
      builder.to_app
    end

    def self.rack_builder?
      require "rack"
      defined?(::Rack::Builder) ? true : false
    rescue LoadError
      false
    end

    def initialize(&block)
      @use = []
      @map = {}
      @run = nil
      @warmup = nil
      instance_eval(&block) if block
    end

    # Wrap the app in a middleware: middleware.new(app, *args, &block).
    def use(middleware, *args, **kwargs, &block)
      @use << ->(app) { middleware.new(app, *args, **kwargs, &block) }
    end

    # The app at the bottom of the stack.
    def run(app = nil, &block)
      raise ArgumentError, "run needs an app or a block" unless app || block

      @run = app || block
    end

    # Serve requests under +path+ with the app the block builds.
    def map(path, &block)
      @map[path] = Builder.new(&block).to_app
    end

    # Called once with the built app before serving.
    def warmup(&block)
      @warmup = block
    end

    def to_app
      app = @map.empty? ? @run : URLMap.new(@run ? @map.merge("/" => @run) : @map)
      raise Error, "rackup file has no run or map" unless app

      app = @use.reverse.inject(app) { |inner, wrap| wrap.call(inner) }
      @warmup&.call(app)
      app
    end

    # Dispatch by path prefix, longest first, moving the prefix from
    # PATH_INFO to SCRIPT_NAME as Rack::URLMap does.
    class URLMap
      def initialize(map)
        @map = map.sort_by { |prefix, _| -prefix.size }.map { |prefix, app| [prefix.chomp("/"), app] }
      end

      def call(env)
        path = env["PATH_INFO"]
        @map.each do |prefix, app|
          next unless path == prefix || path.start_with?("#{prefix}/") || prefix.empty?

          script = env["SCRIPT_NAME"]
          env["SCRIPT_NAME"] = script + prefix
          env["PATH_INFO"] = path[prefix.size..]
          env["PATH_INFO"] = "/" if env["PATH_INFO"].empty?
          begin
            return app.call(env)
          ensure
            env["SCRIPT_NAME"] = script
            env["PATH_INFO"] = path
          end
        end
        [404, { "content-type" => "text/plain" }, ["Not Found: #{path}"]]
      end
    end
  end
end

# frozen_string_literal: true

require_relative "errors"
require_relative "directives"

module Kino
  # A config file that cannot be used: an unknown directive, a bad value,
  # or Ruby that raised. The message starts with "file:line:".
  class ConfigError < Error; end

  # A config file (kino.rb), evaluated: the server options it sets and the
  # CLI's +environment+ and +rackup+.
  #
  #   config = Kino::Configuration.load("kino.rb")
  #   config.server_options   # => {port: 3000, workers: 2} (only what the file set)
  #   config.environment      # => "production" or nil
  #
  # The file is Ruby, one directive per line (`port 3000`); Directives
  # lists them. It runs in a DSL object that has the directives and
  # Kernel's functions (puts, require, Integer) but none of Kino's
  # internals; top-level constants (ENV, File, your app's) resolve as usual.
  class Configuration
    # Where `kino` and the Rack handler look when no file is named, in order.
    DEFAULT_PATHS = %w[kino.rb config/kino.rb].freeze

    # The first of DEFAULT_PATHS that exists in the working directory, or nil.
    def self.default_path
      DEFAULT_PATHS.find { |path| File.file?(path) }
    end

    # The file at +path+, evaluated. Raises ConfigError when it is missing
    # or wrong.
    def self.load(path)
      raise ConfigError, "config file not found: #{path}" unless File.file?(path)

      new.evaluate(File.read(path), path)
    end

    # The file's path, once evaluated.
    attr_reader :path

    # An empty configuration: it sets nothing until #evaluate.
    def initialize
      @values = {}
      @set_at = {}
    end

    # Evaluates +source+ as the file +path+ and returns self. Any error is
    # a ConfigError whose message names the file and the line.
    def evaluate(source, path = "(config)")
      @path = path
      DSL.new(self).instance_eval(source, path, 1)
      self
    rescue ConfigError
      raise
    rescue SyntaxError => e
      raise ConfigError, e.message # already "file:line: ..."
    rescue ScriptError, StandardError => e
      raise ConfigError, "#{location(e.backtrace_locations)}: #{e.message.lines.first.chomp} (#{e.class})"
    end

    # The server options the file set, and only those (a frozen Hash for
    # Kino::Server.new).
    def server_options
      @values.slice(*Options::DEFAULTS.keys).freeze
    end

    # The environment the file asks for, or nil.
    def environment
      @values[:environment]
    end

    # The rackup file the file names, or nil.
    def rackup
      @values[:rackup]
    end

    # Records directive +name+ called with +args+ and +block+ (the DSL's
    # only way in). Raises ConfigError naming the file, line and directive
    # when the call or the value is wrong.
    def directive(name, args, block)
      line = location(caller_locations)
      if Options::HOOKS.include?(name) && @set_at.key?(name)
        raise ConfigError, "#{line}: #{name} is already set at #{@set_at[name]}; " \
                           "Kino takes one #{name} hook: do both things in one block"
      end
      value = Directives.coerce(name, value_of(name, args, block))
      value = [*@values[name], *value] if name == :bind && @values.key?(:bind) # bind may repeat
      @values[name] = validate(name, value)
      @set_at[name] = line
      nil
    rescue ArgumentError => e
      raise ConfigError, "#{line}: #{e.message}"
    end

    # Raises the ConfigError for an unknown directive +name+.
    def unknown(name)
      hint = suggestion(name)
      hint = hint ? "did you mean `#{hint}`?" : "known: #{Directives.names.join(', ')}"
      raise ConfigError, "#{location(caller_locations)}: unknown directive `#{name}` (#{hint})"
    end

    private

    # The one value of a call: a block or a callable for a hook, MIN, MAX
    # (MAX is used) or N for threads, exactly one argument otherwise.
    def value_of(name, args, block)
      if Options::HOOKS.include?(name)
        raise ArgumentError, "#{name} takes a block or a callable, not both" if block && !args.empty?
        raise ArgumentError, "#{name} takes a block or one callable" if args.size > 1 || (args.empty? && !block)

        return block || args.first
      end
      raise ArgumentError, "#{name} takes no block" if block

      arity = name == :threads ? 1..2 : 1..1
      unless arity.cover?(args.size)
        raise ArgumentError, "#{name} takes #{name == :threads ? 'N or MIN, MAX' : 'one value'} (got #{args.size})"
      end

      args.last
    end

    # +value+, checked with Kino::Options' rules (or the CLI's, for
    # environment and rackup). Raises ArgumentError naming the directive.
    def validate(name, value)
      case name
      when :environment
        raise ArgumentError, "invalid environment: #{value.inspect} (expected a name like \"production\")" \
          unless (value.is_a?(String) || value.is_a?(Symbol)) && !value.empty?

        value.to_s
      when :rackup
        raise ArgumentError, "invalid rackup: #{value.inspect} (expected a path)" unless value.is_a?(String) && !value.empty?

        value
      else
        Options.resolve(name => value)[name]
      end
    end

    # "file:line" of the innermost frame in the config file, else the file.
    def location(locations)
      frame = (locations || []).find { |l| l.path == @path }
      frame ? "#{@path}:#{frame.lineno}" : @path.to_s
    end

    # The directive +name+ is probably a typo of, or nil.
    def suggestion(name)
      return nil unless defined?(::DidYouMean::SpellChecker)

      ::DidYouMean::SpellChecker.new(dictionary: Directives.names).correct(name).first
    end

    # The receiver of a config file: the directives, Kernel's functions and
    # nothing else, so config code cannot reach Kino's internals by accident.
    # A call to anything else is an "unknown directive" ConfigError.
    class DSL < BasicObject
      include ::Kernel

      # Top-level constants (ENV, File, your app's classes) resolve as they
      # would in any Ruby file.
      def self.const_missing(name)
        ::Object.const_get(name)
      end

      # A receiver that records into +config+.
      def initialize(config)
        @__kino_config = config
      end

      # One method per directive, derived from Options::DEFAULTS (see
      # Directives.names), so a new option is a directive at once.
      Directives.names.each do |name|
        define_method(name) { |*args, &block| @__kino_config.directive(name, args, block) }
      end

      # Anything else is an unknown directive.
      def method_missing(name, *_args)
        @__kino_config.unknown(name)
      end

      # Nothing but the directives and Kernel's functions responds.
      def respond_to_missing?(_name, _include_private = false)
        false
      end
    end
    private_constant :DSL
  end
end

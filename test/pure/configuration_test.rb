# frozen_string_literal: true

require_relative "helper"

# The config file DSL: directives become server options; mistakes are a
# ConfigError naming the file and the line.
class PureConfigurationTest < Minitest::Test
  def evaluate(source)
    Kino::Configuration.new.evaluate(source, "kino.rb")
  end

  def test_directives_set_only_what_the_file_names
    config = evaluate(<<~RUBY)
      port 3000
      workers 2
      threads 1, 4
      mode :threaded
      environment "production"
      on_error { |error, env| }
    RUBY
    options = config.server_options
    assert_equal({ port: 3000, workers: 2, threads: 4, mode: :threaded }, options.except(:on_error))
    assert_respond_to options[:on_error], :call
    assert_equal "production", config.environment
    assert_nil config.rackup
  end

  def test_an_unknown_directive_names_the_line_and_a_suggestion
    error = assert_raises(Kino::ConfigError) { evaluate("port 3000\nwokers 2\n") }
    assert_match(/\Akino\.rb:2: unknown directive `wokers`/, error.message)
    assert_match(/workers/, error.message)
  end

  def test_a_bad_value_names_the_line_and_the_option
    error = assert_raises(Kino::ConfigError) { evaluate("\nport 99999\n") }
    assert_match(/\Akino\.rb:2: invalid port: 99999/, error.message)
  end

  def test_ruby_that_raises_is_reported_with_its_line
    error = assert_raises(Kino::ConfigError) { evaluate("port 1\nraise 'boom'\n") }
    assert_match(/\Akino\.rb:2: boom \(RuntimeError\)/, error.message)
  end
end
